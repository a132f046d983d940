//! Streaming seal and open of the age v1 payload.
//!
//! After the header comes a 16-byte nonce, then the STREAM: plaintext in
//! 64 KiB chunks, each sealed with ChaCha20-Poly1305 under the payload key
//! with nonce = 11-byte big-endian chunk counter || last flag (0x01 on the
//! final chunk). Every chunk but the last is full; the last may be empty only
//! if it is the only one (age rules).
//!
//! Memory: the [`Sealer`] holds at most one plaintext chunk; the [`Opener`]
//! holds at most one ciphertext chunk (it must see one byte past a full chunk
//! to know the chunk is not the last), or the header while reading it (at
//! most [`MAX_HEADER_SIZE`]). Output is appended to the caller's buffer chunk
//! by chunk.
//!
//! The plaintext starts with SHA-256(context): the sealer inserts it, the
//! opener checks and strips it before releasing any plaintext.

use std::fmt;

use ring::aead;
use ring::rand::SecureRandom;

use super::context::{MAX_RECIPIENTS, context_hash, parse_context};
use super::keys::{self, FileKey, RecipientPublicKey, RecipientSecretKey};
use super::{CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, MAX_HEADER_SIZE, age_header};
use crate::error::{ProtoError, Result};

const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 16;
const PREFIX_LEN: usize = 32;

fn chunk_nonce(index: u64, last: bool) -> aead::Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    aead::Nonce::assume_unique_for_key(n)
}

/// Streaming sealer. `new` returns the sealer and the bytes that start the
/// ciphertext (age header + 16-byte nonce); the plaintext prefix
/// SHA-256(context) is inserted by the sealer itself.
pub struct Sealer {
    key: aead::LessSafeKey,
    /// Pending plaintext, at most one chunk.
    buf: Vec<u8>,
    index: u64,
}

impl Sealer {
    /// Starts a payload for `recipients` bound to `context_bytes` (which must
    /// pass [`parse_context`]). Fails on an empty or oversized recipient list
    /// and on a low-order recipient key ([`ProtoError::ZeroSharedSecret`]).
    pub fn new(context_bytes: &[u8], recipients: &[RecipientPublicKey]) -> Result<(Self, Vec<u8>)> {
        parse_context(context_bytes)?;
        if recipients.is_empty() {
            return Err(ProtoError::InvalidRecipients("no recipient keys".into()));
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(ProtoError::InvalidRecipients(format!(
                "{} recipient keys, at most {MAX_RECIPIENTS} allowed",
                recipients.len()
            )));
        }
        let rng = ring::rand::SystemRandom::new();
        let file_key = FileKey::random(&rng)?;
        let stanzas =
            recipients.iter().map(|r| keys::wrap(&file_key, r, &rng)).collect::<Result<Vec<_>>>()?;
        let mut head = age_header::encode(&stanzas, &keys::header_mac_key(&file_key));
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| ProtoError::Rng)?;
        head.extend_from_slice(&nonce);
        let key = keys::payload_key(&file_key, &nonce);
        let mut buf = Vec::with_capacity(CHUNK_SIZE);
        buf.extend_from_slice(&context_hash(context_bytes));
        Ok((Sealer { key, buf, index: 0 }, head))
    }

    /// Appends ciphertext of every chunk completed by `plaintext` to `out`.
    pub fn update(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        while !plaintext.is_empty() {
            if self.buf.len() == CHUNK_SIZE {
                // More plaintext follows, so this full chunk is not the last.
                self.seal_chunk(false, out)?;
            }
            let take = (CHUNK_SIZE - self.buf.len()).min(plaintext.len());
            self.buf.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
        }
        Ok(())
    }

    /// Appends the final chunk to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        self.seal_chunk(true, out)
    }

    /// Plaintext bytes held back (at most [`CHUNK_SIZE`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn seal_chunk(&mut self, last: bool, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(&self.buf);
        let tag = self
            .key
            .seal_in_place_separate_tag(chunk_nonce(self.index, last), aead::Aad::empty(), &mut out[start..])
            .map_err(|_| ProtoError::InvalidStream("chunk encryption failed"))?;
        out.extend_from_slice(tag.as_ref());
        self.buf.clear();
        self.index = self.index.checked_add(1).ok_or(ProtoError::InvalidStream("too many chunks"))?;
        Ok(())
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("chunk", &self.index).field("buffered", &self.buf.len()).finish()
    }
}

enum State {
    /// Reading the age header line by line.
    Header { buf: Vec<u8>, line_start: usize, secrets: Vec<x25519_dalek::StaticSecret> },
    /// Header verified; reading the payload nonce.
    Nonce { file_key: FileKey, nonce: [u8; NONCE_LEN], have: usize },
    /// Reading chunks; `buf` holds at most one encrypted chunk. (The key is
    /// boxed: ring's ChaCha20-Poly1305 key is several hundred bytes.)
    Payload { key: Box<aead::LessSafeKey>, buf: Vec<u8>, index: u64 },
    /// A previous call failed; every later call returns the same error.
    Failed(ProtoError),
}

/// Streaming opener: push ciphertext in any slices; authenticated plaintext
/// (after the checked SHA-256(context) prefix) is appended to `out` chunk by
/// chunk. Only `finish` proves the payload was not truncated. Several secret
/// keys may be given (key rotation overlap).
///
/// Errors: [`ProtoError::MalformedHeader`], [`ProtoError::NoMatchingRecipient`],
/// [`ProtoError::ZeroSharedSecret`], [`ProtoError::HeaderMac`],
/// [`ProtoError::ChunkAuth`], [`ProtoError::ContextBinding`],
/// [`ProtoError::Truncated`], [`ProtoError::TrailingData`],
/// [`ProtoError::InvalidStream`]. After an error the opener stays failed.
pub struct Opener {
    ctx_hash: [u8; 32],
    state: State,
}

impl Opener {
    /// An opener for a payload bound to `context_bytes`.
    pub fn new(context_bytes: &[u8], secrets: &[&RecipientSecretKey]) -> Self {
        Opener {
            ctx_hash: context_hash(context_bytes),
            state: State::Header {
                buf: Vec::new(),
                line_start: 0,
                secrets: secrets.iter().map(|s| s.0.clone()).collect(),
            },
        }
    }

    /// Feeds ciphertext; appends the plaintext of every chunk that is now
    /// known not to be the last one.
    pub fn push(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let r = self.push_inner(ciphertext, out);
        if let Err(e) = &r {
            self.state = State::Failed(e.clone());
        }
        r
    }

    /// Opens the final chunk and appends its plaintext. Fails with
    /// [`ProtoError::Truncated`] if the input ended before a final chunk.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        match self.state {
            State::Failed(e) => Err(e),
            State::Header { .. } | State::Nonce { .. } => Err(ProtoError::Truncated),
            State::Payload { key, buf, index } => {
                if buf.len() < TAG_LEN {
                    return Err(ProtoError::Truncated);
                }
                open_chunk(&key, &buf, index, true, &self.ctx_hash, out)
            }
        }
    }

    /// Ciphertext bytes held back (the header while reading it, then at most
    /// one encrypted chunk).
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Header { buf, .. } | State::Payload { buf, .. } => buf.len(),
            State::Nonce { have, .. } => *have,
            State::Failed(_) => 0,
        }
    }

    fn push_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Header { buf, line_start, secrets } => {
                    let (take, line_done) = match input.iter().position(|b| *b == b'\n') {
                        Some(i) => (i + 1, true),
                        None => (input.len(), false),
                    };
                    let text = &input[..if line_done { take - 1 } else { take }];
                    if !text.iter().all(|b| (0x20..=0x7e).contains(b)) {
                        // Header lines are printable ASCII: this is not a header
                        // (or its MAC line lost its newline).
                        return Err(ProtoError::MalformedHeader(
                            "byte outside printable ASCII in header".into(),
                        ));
                    }
                    if *line_start == 0 && buf.len() + take > age_header::VERSION_LINE.len() + 1 {
                        return Err(first_line_error());
                    }
                    if buf.len() + take > MAX_HEADER_SIZE {
                        return Err(ProtoError::MalformedHeader(format!(
                            "header longer than {MAX_HEADER_SIZE} bytes"
                        )));
                    }
                    buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if !line_done {
                        return Ok(());
                    }
                    let line = &buf[*line_start..];
                    if *line_start == 0 && &line[..line.len() - 1] != age_header::VERSION_LINE {
                        return Err(first_line_error());
                    }
                    if line.starts_with(b"---") {
                        let file_key = open_header(buf, secrets)?;
                        self.state = State::Nonce { file_key, nonce: [0; NONCE_LEN], have: 0 };
                    } else if *line_start > 0 && !age_header::plausible_line(&line[..line.len() - 1]) {
                        // Fail fast on garbage instead of buffering it.
                        return Err(ProtoError::MalformedHeader(
                            "header line is neither a stanza, a base64 body line nor the MAC line".into(),
                        ));
                    } else {
                        *line_start = buf.len();
                    }
                }
                State::Nonce { file_key, nonce, have } => {
                    let take = (NONCE_LEN - *have).min(input.len());
                    nonce[*have..*have + take].copy_from_slice(&input[..take]);
                    *have += take;
                    input = &input[take..];
                    if *have < NONCE_LEN {
                        return Ok(());
                    }
                    let key = Box::new(keys::payload_key(file_key, nonce));
                    self.state =
                        State::Payload { key, buf: Vec::with_capacity(ENCRYPTED_CHUNK_SIZE), index: 0 };
                }
                State::Payload { key, buf, index } => {
                    while !input.is_empty() {
                        if buf.len() == ENCRYPTED_CHUNK_SIZE {
                            // More ciphertext follows: this chunk is not the last.
                            open_chunk(key, buf, *index, false, &self.ctx_hash, out)?;
                            buf.clear();
                            *index =
                                index.checked_add(1).ok_or(ProtoError::InvalidStream("too many chunks"))?;
                        }
                        let take = (ENCRYPTED_CHUNK_SIZE - buf.len()).min(input.len());
                        buf.extend_from_slice(&input[..take]);
                        input = &input[take..];
                    }
                    return Ok(());
                }
            }
        }
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Header { .. } => "header",
            State::Nonce { .. } => "nonce",
            State::Payload { .. } => "payload",
            State::Failed(_) => "failed",
        };
        f.debug_struct("Opener").field("state", &state).field("buffered", &self.buffered()).finish()
    }
}

fn first_line_error() -> ProtoError {
    ProtoError::MalformedHeader("first line is not \"age-encryption.org/v1\"".into())
}

/// Parses the complete header, unwraps the file key with the first matching
/// secret and checks the MAC.
fn open_header(bytes: &[u8], secrets: &[x25519_dalek::StaticSecret]) -> Result<FileKey> {
    let header = age_header::parse(bytes)?;
    let mut x25519 = Vec::new();
    for stanza in &header.stanzas {
        if let Some(parts) = keys::x25519_parts(stanza)? {
            x25519.push(parts);
        }
    }
    let mut found = None;
    'stanzas: for (share, body) in &x25519 {
        for secret in secrets {
            if let Some(k) = keys::unwrap(share, body, secret)? {
                found = Some(k);
                break 'stanzas;
            }
        }
    }
    let file_key = found.ok_or(ProtoError::NoMatchingRecipient)?;
    age_header::verify_mac(bytes, &header, &keys::header_mac_key(&file_key))?;
    Ok(file_key)
}

/// Opens chunk `index` into `out` (stripping and checking the context prefix
/// on chunk 0). On failure `out` is left as it was and the error says what
/// the chunk would have been under the other last-flag, when that tells more.
fn open_chunk(
    key: &aead::LessSafeKey,
    ciphertext: &[u8],
    index: u64,
    last: bool,
    ctx_hash: &[u8; 32],
    out: &mut Vec<u8>,
) -> Result<()> {
    if last && index > 0 && ciphertext.len() == TAG_LEN {
        return Err(ProtoError::InvalidStream("empty final chunk after a full chunk"));
    }
    let start = out.len();
    out.extend_from_slice(ciphertext);
    let opened =
        key.open_in_place(chunk_nonce(index, last), aead::Aad::empty(), &mut out[start..]).map(|p| p.len());
    let Ok(len) = opened else {
        out.truncate(start);
        // A full-size chunk may be a real chunk with the other flag: a final
        // chunk followed by more data, or a non-final chunk with nothing after.
        if ciphertext.len() == ENCRYPTED_CHUNK_SIZE {
            let mut scratch = ciphertext.to_vec();
            if key.open_in_place(chunk_nonce(index, !last), aead::Aad::empty(), &mut scratch).is_ok() {
                return Err(if last { ProtoError::Truncated } else { ProtoError::TrailingData });
            }
        }
        return Err(ProtoError::ChunkAuth { index });
    };
    out.truncate(start + len);
    if index == 0 {
        if len < PREFIX_LEN || out[start..start + PREFIX_LEN] != ctx_hash[..] {
            out.truncate(start);
            return Err(ProtoError::ContextBinding);
        }
        out.drain(start..start + PREFIX_LEN);
    }
    Ok(())
}
