//! The end-to-end envelope: canonical context, age v1 X25519 payload sealed
//! and opened in 64 KiB STREAM chunks (incrementally, never holding a whole
//! payload), and the sender's Ed25519 signature over context and ciphertext.
//!
//! CONTRACT (implemented by the envelope work; signatures are fixed):
#![allow(clippy::todo, unused_variables, missing_docs)]

use crate::address::{Address, NetworkId};
use crate::error::Result;
use crate::pb;

/// Plaintext bytes per STREAM chunk (age v1).
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Ciphertext bytes per full chunk (plaintext + Poly1305 tag).
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + 16;
/// Domain-separation prefix of the sender signature.
pub const SIG_DOMAIN: &[u8] = b"focal/v1/sig\0";

/// An X25519 recipient public key (age recipient).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecipientPublicKey(pub [u8; 32]);

/// An X25519 recipient secret key (x25519-dalek `StaticSecret`).
pub struct RecipientSecretKey(pub(crate) x25519_dalek::StaticSecret);

impl RecipientSecretKey {
    pub fn generate() -> Self {
        todo!()
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        todo!()
    }
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        todo!()
    }
    pub fn public_key(&self) -> RecipientPublicKey {
        todo!()
    }
}

/// Inputs of a context; `build_context` validates, sorts and dedups.
#[derive(Clone, Debug)]
pub struct ContextParams {
    pub msg_id: [u8; 16],
    pub sender: Address,
    pub recipients: Vec<Address>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub handling: pb::HandlingCode,
    pub priority: pb::Priority,
    pub forward_of: Option<pb::ForwardOf>,
    pub broadcast_network: Option<NetworkId>,
}

/// A structurally valid, canonically encoded context.
#[derive(Clone, Debug)]
pub struct ValidContext {
    pub ctx: pb::Context,
    pub msg_id: [u8; 16],
    pub sender: Address,
    pub recipients: Vec<Address>,
    /// The bytes as received/encoded (canonical).
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`.
    pub hash: [u8; 32],
}

/// 16 random bytes from the system RNG.
pub fn new_msg_id() -> [u8; 16] {
    todo!()
}

/// Canonical context bytes for `params`.
pub fn build_context(params: &ContextParams) -> Result<Vec<u8>> {
    todo!()
}

/// Decodes and checks a context (canonical encoding, version, 16-byte id,
/// addresses, sorted unique recipients, created < expires). No clock policy.
pub fn parse_context(bytes: &[u8]) -> Result<ValidContext> {
    todo!()
}

/// Streaming sealer. `new` returns the sealer and the bytes that start the
/// ciphertext (age header + 16-byte nonce); the plaintext prefix
/// SHA-256(context) is inserted by the sealer itself.
pub struct Sealer {
    _p: (),
}

impl Sealer {
    pub fn new(context_bytes: &[u8], recipients: &[RecipientPublicKey]) -> Result<(Self, Vec<u8>)> {
        todo!()
    }
    /// Appends ciphertext of every chunk completed by `plaintext` to `out`.
    pub fn update(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        todo!()
    }
    /// Appends the final chunk to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        todo!()
    }
}

/// Streaming opener: push ciphertext in any slices; authenticated plaintext
/// (after the checked SHA-256(context) prefix) is appended to `out` chunk by
/// chunk. Only `finish` proves the payload was not truncated. Several secret
/// keys may be given (key rotation overlap).
pub struct Opener {
    _p: (),
}

impl Opener {
    pub fn new(context_bytes: &[u8], secrets: &[&RecipientSecretKey]) -> Self {
        todo!()
    }
    pub fn push(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        todo!()
    }
    pub fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        todo!()
    }
}

/// `SIG_DOMAIN || SHA-256(context) || payload_sha256`.
pub fn signed_message(context_bytes: &[u8], payload_sha256: &[u8; 32]) -> Vec<u8> {
    todo!()
}

/// Ed25519 signature of the sender.
pub fn sign(key: &ring::signature::Ed25519KeyPair, context_bytes: &[u8], payload_sha256: &[u8; 32]) -> Vec<u8> {
    todo!()
}

/// Verifies `header.signature` with the Ed25519 key of `header.sender_cert`
/// (no decryption key needed; the certificate chain is checked elsewhere).
pub fn verify_signature(header: &pb::EnvelopeHeader) -> Result<()> {
    todo!()
}

/// Whole-message convenience for small payloads: seal `plaintext`, sign,
/// and return the envelope with its payload inline.
pub fn seal_envelope(
    context_bytes: &[u8],
    recipients: &[RecipientPublicKey],
    plaintext: &[u8],
    signing_key: &ring::signature::Ed25519KeyPair,
    sender_cert_der: &[u8],
) -> Result<pb::Envelope> {
    todo!()
}

/// Whole-message convenience: checks payload size/digest against the header,
/// the signature, the context, then opens. Returns the plaintext after the
/// context-hash prefix.
pub fn open_envelope(envelope: &pb::Envelope, secrets: &[&RecipientSecretKey]) -> Result<Vec<u8>> {
    todo!()
}
