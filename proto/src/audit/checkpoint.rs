//! Checkpoints: the C2SP tlog-checkpoint body (origin line, tree size,
//! base64 root hash) in a C2SP signed note, signed with the log's Ed25519
//! key. Signing uses `ring` (the key is PKCS#8, as the relay stores it);
//! verification uses `signed_note`'s verifier (ed25519-dalek), so the two
//! implementations check each other in every test.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{Ed25519KeyPair, KeyPair};
use signed_note::{Note, NoteError, Signature, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use super::merkle::TreeHead;
use crate::error::{ProtoError, Result};

/// Signature type byte of Ed25519 signed-note keys.
const ALG_ED25519: u8 = 0x01;

/// The three lines of a checkpoint body.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointBody {
    /// Origin line: names the log (and is the log key's name).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

impl CheckpointBody {
    /// The body text, newline-terminated.
    pub fn to_text(&self) -> Result<String> {
        let cp = Checkpoint::new(&self.origin, self.size, self.root, "")
            .map_err(|_| ProtoError::CheckpointMalformed(format!("invalid origin {:?}", self.origin)))?;
        String::from_utf8(cp.to_bytes()).map_err(|_| ProtoError::CheckpointMalformed("not UTF-8".into()))
    }

    /// Parses a body (extension lines are allowed and ignored).
    pub fn parse(text: &[u8]) -> Result<Self> {
        let cp = Checkpoint::from_bytes(text).map_err(|_| {
            ProtoError::CheckpointMalformed(
                "the note text is not an origin line, a decimal size and a base64 root hash".into(),
            )
        })?;
        Ok(CheckpointBody { origin: cp.origin().to_owned(), size: cp.size(), root: *cp.hash() })
    }

    /// Size and root.
    pub fn head(&self) -> TreeHead {
        TreeHead { size: self.size, root: self.root }
    }
}

/// Splits a signed note into its text (with final newline) and signature lines.
pub(crate) fn split_note(note: &str) -> Result<(&str, Vec<&str>)> {
    let (text, sigs) = note
        .rsplit_once("\n\n")
        .ok_or_else(|| ProtoError::CheckpointMalformed("no blank line before the signatures".into()))?;
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or_else(|| ProtoError::CheckpointMalformed("the last signature line lacks its newline".into()))?;
    Ok((&note[..text.len() + 1], sigs.split('\n').collect()))
}

/// Largest signed note accepted, in bytes (the limit of the signed-note spec's
/// reference implementation).
pub const MAX_NOTE_BYTES: usize = 1_000_000;

/// Most signature lines a signed note may carry.
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// Refuses a note beyond [`MAX_NOTE_BYTES`] or [`MAX_NOTE_SIGNATURES`], naming the limit.
fn check_limits(note: &str) -> Result<()> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(ProtoError::CheckpointMalformed(format!(
            "note of {} bytes exceeds the limit of {MAX_NOTE_BYTES} bytes",
            note.len()
        )));
    }
    if let Ok((_, lines)) = split_note(note)
        && lines.len() > MAX_NOTE_SIGNATURES
    {
        return Err(ProtoError::CheckpointMalformed(format!(
            "note with {} signature lines exceeds the limit of {MAX_NOTE_SIGNATURES}",
            lines.len()
        )));
    }
    Ok(())
}

/// Parses one signature line (`— name base64(key id || signature)`, without
/// its newline), refusing anything that does not encode back to the same line.
pub(crate) fn parse_signature_line(line: &str) -> Option<Signature> {
    let sig = Signature::from_bytes(line.as_bytes()).ok()?;
    let canonical = sig.to_bytes();
    (canonical.strip_suffix(b"\n") == Some(line.as_bytes()) && !line.chars().any(char::is_control))
        .then_some(sig)
}

/// Names and key ids of every signature line of a note (not verified).
pub fn note_signatures(note: &str) -> Result<Vec<(String, u32)>> {
    check_limits(note)?;
    let (_, lines) = split_note(note)?;
    lines
        .into_iter()
        .map(|l| {
            Signature::from_bytes(l.as_bytes())
                .map(|s| (s.name().to_owned(), s.id()))
                .map_err(|_| ProtoError::CheckpointMalformed(format!("bad signature line {l:?}")))
        })
        .collect()
}

/// Parses a signed note, within [`MAX_NOTE_BYTES`] and [`MAX_NOTE_SIGNATURES`].
pub(crate) fn parse_note(note: &str) -> Result<Note> {
    check_limits(note)?;
    Note::from_bytes(note.as_bytes())
        .map_err(|e| ProtoError::CheckpointMalformed(format!("not a signed note: {e}")))
}

/// The signature lines of a note that [`parse_note`] accepted, parsed.
pub(crate) fn signature_lines(note: &str) -> Result<Vec<Signature>> {
    let (_, lines) = split_note(note)?;
    lines
        .into_iter()
        .map(|l| {
            Signature::from_bytes(l.as_bytes())
                .map_err(|_| ProtoError::CheckpointMalformed(format!("bad signature line {l:?}")))
        })
        .collect()
}

/// Signs notes with an Ed25519 key (the relay's log key).
pub struct NoteSigner {
    name: String,
    id: u32,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish()
    }
}

pub(crate) fn key_from_pkcs8(der: &[u8]) -> Result<Ed25519KeyPair> {
    Ed25519KeyPair::from_pkcs8(der)
        .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(der))
        .map_err(|e| ProtoError::BadKey(format!("not a PKCS#8 Ed25519 key: {e}")))
}

pub(crate) fn check_key_name(name: &str) -> Result<()> {
    if !signed_note::is_key_name_valid(name) || name.contains('\n') {
        return Err(ProtoError::BadKey(format!(
            "key name {name:?} must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

impl NoteSigner {
    /// A new random PKCS#8 (v2) Ed25519 key.
    pub fn generate_pkcs8() -> Result<Vec<u8>> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| ProtoError::BadKey("could not generate an Ed25519 key".into()))
    }

    /// A signer named `name` (the checkpoint origin) with a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, der: &[u8]) -> Result<Self> {
        check_key_name(name)?;
        let key = key_from_pkcs8(der)?;
        let id = signed_note::key_id(name, &Self::key_material(&key));
        Ok(NoteSigner { name: name.to_owned(), id, key })
    }

    fn key_material(key: &Ed25519KeyPair) -> Vec<u8> {
        [&[ALG_ED25519], key.public_key().as_ref()].concat()
    }

    /// Key name (the origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed-note verifier key `name+id+base64(0x01||pubkey)`.
    pub fn verifier_key(&self) -> String {
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(Self::key_material(&self.key)))
    }

    /// Signs `text` (newline-terminated note text) and returns the signed note.
    pub fn sign_note(&self, text: &str) -> Result<String> {
        let sig = self.key.sign(text.as_bytes());
        let sig = Signature::new(self.name.clone(), self.id, sig.as_ref().to_vec())
            .map_err(|e| ProtoError::BadKey(e.to_string()))?;
        let note = Note::new(text.as_bytes(), &[sig])
            .map_err(|e| ProtoError::CheckpointMalformed(format!("note text: {e}")))?;
        String::from_utf8(note.to_bytes()).map_err(|_| ProtoError::CheckpointMalformed("not UTF-8".into()))
    }

    /// Signs a checkpoint of `head` with origin = this key's name.
    pub fn sign_checkpoint(&self, head: &TreeHead) -> Result<String> {
        let body = CheckpointBody { origin: self.name.clone(), size: head.size, root: head.root };
        self.sign_note(&body.to_text()?)
    }
}

/// A checkpoint whose log signature has been verified.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedCheckpoint {
    /// Parsed body.
    pub body: CheckpointBody,
    /// The full signed note as received.
    pub note: String,
}

impl SignedCheckpoint {
    /// Size and root.
    pub fn head(&self) -> TreeHead {
        self.body.head()
    }

    /// The note text (body) that cosignatures sign.
    pub fn text(&self) -> &str {
        split_note(&self.note).map(|(t, _)| t).unwrap_or_default()
    }
}

/// A log's verifier key (signed-note `name+id+base64` string).
#[derive(Clone)]
pub struct LogKey {
    text: String,
    verifier: StandardVerifier,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl LogKey {
    /// Parses a verifier key string.
    pub fn parse(vkey: &str) -> Result<Self> {
        let verifier = StandardVerifier::new(vkey.trim())
            .map_err(|e| ProtoError::BadKey(format!("log verifier key {vkey:?}: {e}")))?;
        Ok(LogKey { text: vkey.trim().to_owned(), verifier })
    }

    /// The key's name, which must be the checkpoints' origin.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// The key string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Parses `note` and checks the log's signature on it.
    pub fn verify_checkpoint(&self, note: &str) -> Result<SignedCheckpoint> {
        let parsed = parse_note(note)?;
        let body = CheckpointBody::parse(parsed.text())?;
        let (name, id) = (self.verifier.name(), self.verifier.key_id());
        if body.origin != name {
            return Err(ProtoError::CheckpointSignature(format!(
                "checkpoint origin {:?} is not the log key's name {name:?}",
                body.origin
            )));
        }
        let known = VerifierList::new(vec![Box::new(self.verifier.clone())]);
        match parsed.verify(&known) {
            Ok(_) => {
                // signed_note checks only the first line by a key: a second
                // line by the log key must verify too (no smuggled lines).
                for sig in signature_lines(note)? {
                    if sig.name() == name
                        && sig.id() == id
                        && !self.verifier.verify(parsed.text(), sig.signature())
                    {
                        return Err(ProtoError::CheckpointSignature(format!(
                            "a second signature line by the log key {name}+{id:08x} does not verify"
                        )));
                    }
                }
                Ok(SignedCheckpoint { body, note: note.to_owned() })
            }
            Err(NoteError::InvalidSignature { .. }) => Err(ProtoError::CheckpointSignature(format!(
                "the signature by the log key {name}+{id:08x} does not verify"
            ))),
            Err(NoteError::UnverifiedNote) => {
                let present: Vec<String> = note_signatures(note)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, i)| format!("{n}+{i:08x}"))
                    .collect();
                Err(ProtoError::CheckpointSignature(format!(
                    "no signature by the log key {name}+{id:08x} (signatures present: {})",
                    if present.is_empty() { "none".into() } else { present.join(", ") }
                )))
            }
            Err(e) => Err(ProtoError::CheckpointSignature(e.to_string())),
        }
    }
}
