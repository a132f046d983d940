//! The end-to-end envelope: canonical context, age v1 X25519 payload sealed
//! and opened in 64 KiB STREAM chunks (incrementally, never holding a whole
//! payload), and the sender's Ed25519 signature over context and ciphertext.
//!
//! Layers, from the outside in:
//! 1. **Signature** (encrypt-then-sign): Ed25519 by the sender over
//!    `SIG_DOMAIN || SHA-256(context) || SHA-256(payload ciphertext)`. Relays
//!    check it with [`verify_signature`] and no decryption key.
//! 2. **Context** (`context.rs`): canonical prost bytes relays route on.
//! 3. **Payload**: the age v1 X25519 format (c2sp.org/age), interoperable with
//!    the `age` tool (`age_header.rs`, `keys.rs`, `stream.rs`).
//! 4. **Binding**: the plaintext starts with SHA-256(context), so a recipient
//!    who re-wraps the file key for someone else under a new context (and
//!    signs that itself) is caught by the new recipient with
//!    [`ProtoError::ContextBinding`]: the payload still names the old context.
//!
//! What is not checked here: the sender certificate's chain and that its
//! identity is the context's sender (focal-certs does that), and clock policy
//! (relays). A client must show plaintext only after [`Opener::finish`]
//! succeeded.

mod age_header;
mod context;
mod keys;
mod stream;

pub use context::{
    CONTEXT_VERSION, ContextParams, MAX_RECIPIENTS, ValidContext, build_context, context_hash, new_msg_id,
    parse_context,
};
pub use keys::{RecipientPublicKey, RecipientSecretKey};
pub use stream::{Opener, Sealer};

use crate::error::{ProtoError, Result};
use crate::pb;

/// Plaintext bytes per STREAM chunk (age v1).
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Ciphertext bytes per full chunk (plaintext + Poly1305 tag).
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + 16;
/// Domain-separation prefix of the sender signature.
pub const SIG_DOMAIN: &[u8] = b"focal/v1/sig\0";
/// Longest age header an [`Opener`] buffers (room for [`MAX_RECIPIENTS`]
/// stanzas of about 100 bytes and a grease stanza).
pub const MAX_HEADER_SIZE: usize = 256 * 1024;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    context_hash(bytes)
}

/// `SIG_DOMAIN || SHA-256(context) || payload_sha256`.
pub fn signed_message(context_bytes: &[u8], payload_sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIG_DOMAIN.len() + 64);
    m.extend_from_slice(SIG_DOMAIN);
    m.extend_from_slice(&context_hash(context_bytes));
    m.extend_from_slice(payload_sha256);
    m
}

/// Ed25519 signature of the sender.
pub fn sign(
    key: &ring::signature::Ed25519KeyPair,
    context_bytes: &[u8],
    payload_sha256: &[u8; 32],
) -> Vec<u8> {
    key.sign(&signed_message(context_bytes, payload_sha256)).as_ref().to_vec()
}

/// Verifies `header.signature` with the Ed25519 key of `header.sender_cert`
/// (no decryption key needed; the certificate chain is checked elsewhere).
///
/// Errors: [`ProtoError::BadKey`] if the certificate does not parse or holds
/// no Ed25519 key, [`ProtoError::PayloadMismatch`] if `payload_sha256` is not
/// 32 bytes, [`ProtoError::BadSignature`] otherwise.
pub fn verify_signature(header: &pb::EnvelopeHeader) -> Result<()> {
    let key = crate::signed::ed25519_key_from_cert(&header.sender_cert)?;
    verify_signature_with_key(header, &key)
}

/// As [`verify_signature`], with the Ed25519 key of `header.sender_cert`
/// already taken from the certificate (a relay has it from checking the
/// certificate chain, so it need not parse the certificate twice). The
/// caller must have taken `key` from that very certificate.
pub fn verify_signature_with_key(header: &pb::EnvelopeHeader, key: &[u8; 32]) -> Result<()> {
    let digest: [u8; 32] = header.payload_sha256.as_slice().try_into().map_err(|_| {
        ProtoError::PayloadMismatch(format!(
            "payload_sha256 is {} bytes, expected 32",
            header.payload_sha256.len()
        ))
    })?;
    if header.signature.len() != 64 {
        return Err(ProtoError::BadSignature("signature is not 64 bytes"));
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(&signed_message(&header.context, &digest), &header.signature)
        .map_err(|_| ProtoError::BadSignature("sender signature does not verify"))
}

/// Whole-message convenience for small payloads: seal `plaintext`, sign,
/// and return the envelope with its payload inline.
///
/// Refuses an invalid context and a signing key that is not the key of
/// `sender_cert_der` ([`ProtoError::BadKey`]).
pub fn seal_envelope(
    context_bytes: &[u8],
    recipients: &[RecipientPublicKey],
    plaintext: &[u8],
    signing_key: &ring::signature::Ed25519KeyPair,
    sender_cert_der: &[u8],
) -> Result<pb::Envelope> {
    use ring::signature::KeyPair as _;
    let cert_key = crate::signed::ed25519_key_from_cert(sender_cert_der)?;
    if signing_key.public_key().as_ref() != cert_key {
        return Err(ProtoError::BadKey("signing key is not the key of the sender certificate".into()));
    }
    let (mut sealer, mut payload) = Sealer::new(context_bytes, recipients)?;
    payload.reserve(plaintext.len() + (plaintext.len() / CHUNK_SIZE + 1) * 16 + 32);
    sealer.update(plaintext, &mut payload)?;
    sealer.finish(&mut payload)?;
    let payload_sha256 = sha256(&payload);
    let header = pb::EnvelopeHeader {
        context: context_bytes.to_vec(),
        signature: sign(signing_key, context_bytes, &payload_sha256),
        sender_cert: sender_cert_der.to_vec(),
        payload_sha256: payload_sha256.to_vec(),
        payload_size: payload.len() as u64,
        hops: Vec::new(),
        deliver_to: Vec::new(),
    };
    Ok(pb::Envelope { header: Some(header), payload })
}

/// Whole-message convenience: checks payload size/digest against the header,
/// the signature, the context, then opens. Returns the plaintext after the
/// context-hash prefix.
pub fn open_envelope(envelope: &pb::Envelope, secrets: &[&RecipientSecretKey]) -> Result<Vec<u8>> {
    let header = envelope.header.as_ref().ok_or_else(|| ProtoError::malformed("envelope", "no header"))?;
    if header.payload_size != envelope.payload.len() as u64 {
        return Err(ProtoError::PayloadMismatch(format!(
            "payload is {} bytes, header says {}",
            envelope.payload.len(),
            header.payload_size
        )));
    }
    if sha256(&envelope.payload)[..] != header.payload_sha256[..] {
        return Err(ProtoError::PayloadMismatch("payload SHA-256 differs from the header".into()));
    }
    verify_signature(header)?;
    parse_context(&header.context)?;
    let mut opener = Opener::new(&header.context, secrets);
    let mut out = Vec::with_capacity(envelope.payload.len());
    opener.push(&envelope.payload, &mut out)?;
    opener.finish(&mut out)?;
    Ok(out)
}
