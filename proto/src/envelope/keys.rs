//! Keys of the age v1 X25519 recipient type and the key schedule.
//!
//! - Sender side (wrap): one ring ephemeral X25519 key per stanza;
//!   wrap key = HKDF-SHA256(ikm = shared secret, salt = share || recipient,
//!   info = "age-encryption.org/v1/X25519"); body = ChaCha20-Poly1305(wrap key,
//!   zero nonce, file key).
//! - Recipient side (unwrap): x25519-dalek `StaticSecret`, because ring only
//!   does X25519 with ephemeral keys.
//! - Header MAC key = HKDF(ikm = file key, salt = empty, info = "header");
//!   payload key = HKDF(ikm = file key, salt = 16-byte nonce, info = "payload").
//!
//! An all-zero shared secret (the peer key is a low-order point) is refused
//! on both sides with [`ProtoError::ZeroSharedSecret`]. Secrets are zeroized
//! on drop where we hold the bytes (file key, static secrets, shared secrets);
//! ring's expanded AEAD/HMAC keys are opaque and not zeroized by ring.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::rand::SecureRandom;
use ring::{aead, agreement, hkdf, hmac};
use zeroize::Zeroizing;

use super::age_header::Stanza;
use crate::error::{ProtoError, Result};

/// Tag of the X25519 recipient stanza.
pub(crate) const X25519_TAG: &str = "X25519";
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const FILE_KEY_LEN: usize = 16;
const WRAPPED_KEY_LEN: usize = FILE_KEY_LEN + 16;

/// An X25519 recipient public key (age recipient).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecipientPublicKey(pub [u8; 32]);

impl RecipientPublicKey {
    /// The raw 32 bytes (an X25519 u-coordinate).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// An X25519 recipient secret key (x25519-dalek `StaticSecret`, zeroized on drop).
#[derive(Clone)]
pub struct RecipientSecretKey(pub(crate) x25519_dalek::StaticSecret);

impl RecipientSecretKey {
    /// A fresh key from the system RNG.
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(bytes.as_mut())
            .expect("the system random number generator failed");
        RecipientSecretKey(x25519_dalek::StaticSecret::from(*bytes))
    }

    /// A key from its 32 raw bytes (clamping happens when it is used, as
    /// X25519 specifies). The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RecipientSecretKey(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The 32 raw bytes, zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> RecipientPublicKey {
        RecipientPublicKey(*x25519_dalek::PublicKey::from(&self.0).as_bytes())
    }
}

impl fmt::Debug for RecipientSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientSecretKey(public {})", hex::encode(self.public_key().0))
    }
}

/// The 16-byte age file key, zeroized on drop.
pub(crate) struct FileKey(Zeroizing<[u8; FILE_KEY_LEN]>);

impl FileKey {
    pub(crate) fn random(rng: &dyn SecureRandom) -> Result<Self> {
        let mut k = Zeroizing::new([0u8; FILE_KEY_LEN]);
        rng.fill(k.as_mut()).map_err(|_| ProtoError::Rng)?;
        Ok(FileKey(k))
    }
}

/// HKDF-SHA256 straight into a ChaCha20-Poly1305 key (the key bytes never
/// leave ring).
fn aead_key(salt: &[u8], ikm: &[u8], info: &[u8]) -> aead::LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm =
        prk.expand(&info, &aead::CHACHA20_POLY1305).expect("32 bytes is a valid HKDF-SHA256 output length");
    aead::LessSafeKey::new(aead::UnboundKey::from(okm))
}

/// The header MAC key: HKDF(ikm = file key, salt = empty, info = "header").
pub(crate) fn header_mac_key(file_key: &FileKey) -> hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(file_key.0.as_ref());
    let info: [&[u8]; 1] = [b"header"];
    let okm = prk.expand(&info, hmac::HMAC_SHA256).expect("32 bytes is a valid HKDF-SHA256 output length");
    hmac::Key::from(okm)
}

/// The payload key: HKDF(ikm = file key, salt = nonce, info = "payload").
pub(crate) fn payload_key(file_key: &FileKey, nonce: &[u8; 16]) -> aead::LessSafeKey {
    aead_key(nonce, file_key.0.as_ref(), b"payload")
}

fn zero_nonce() -> aead::Nonce {
    aead::Nonce::assume_unique_for_key([0u8; 12])
}

/// Wraps `file_key` to `recipient` with a fresh ephemeral key: one stanza.
pub(crate) fn wrap(
    file_key: &FileKey,
    recipient: &RecipientPublicKey,
    rng: &dyn SecureRandom,
) -> Result<Stanza> {
    let ephemeral =
        agreement::EphemeralPrivateKey::generate(&agreement::X25519, rng).map_err(|_| ProtoError::Rng)?;
    let share_pub = ephemeral.compute_public_key().map_err(|_| ProtoError::Rng)?;
    let mut share = [0u8; 32];
    share.copy_from_slice(share_pub.as_ref());
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, &recipient.0);
    // ring refuses an all-zero X25519 output itself (RFC 7748 §6.1); the
    // algorithm and key length are fixed here, so that is its only error.
    let body = agreement::agree_ephemeral(ephemeral, &peer, |shared| -> Result<Vec<u8>> {
        if shared.iter().all(|b| *b == 0) {
            return Err(ProtoError::ZeroSharedSecret);
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&share);
        salt[32..].copy_from_slice(&recipient.0);
        let key = aead_key(&salt, shared, X25519_LABEL);
        let mut body = Vec::with_capacity(WRAPPED_KEY_LEN);
        body.extend_from_slice(file_key.0.as_ref());
        key.seal_in_place_append_tag(zero_nonce(), aead::Aad::empty(), &mut body)
            .map_err(|_| ProtoError::BadKey("file key wrapping failed".into()))?;
        Ok(body)
    })
    .map_err(|_| ProtoError::ZeroSharedSecret)??;
    Ok(Stanza { tag: X25519_TAG.to_owned(), args: vec![STANDARD_NO_PAD.encode(share)], body })
}

/// The ephemeral share and wrapped key of an X25519 stanza, `None` for any
/// other stanza type (age grease, other recipient types), an error if an
/// X25519 stanza is not exactly one canonical 32-byte share and a 32-byte body.
pub(crate) fn x25519_parts(stanza: &Stanza) -> Result<Option<([u8; 32], [u8; WRAPPED_KEY_LEN])>> {
    if stanza.tag != X25519_TAG {
        return Ok(None);
    }
    let [arg] = stanza.args.as_slice() else {
        return Err(ProtoError::MalformedHeader(format!(
            "X25519 stanza has {} arguments, expected 1",
            stanza.args.len()
        )));
    };
    let share: [u8; 32] =
        STANDARD_NO_PAD.decode(arg).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| {
            ProtoError::MalformedHeader("X25519 share is not 32 bytes of canonical base64".into())
        })?;
    let body: [u8; WRAPPED_KEY_LEN] = stanza.body.as_slice().try_into().map_err(|_| {
        ProtoError::MalformedHeader(format!(
            "X25519 stanza body is {} bytes, expected {WRAPPED_KEY_LEN}",
            stanza.body.len()
        ))
    })?;
    Ok(Some((share, body)))
}

/// Tries to unwrap a stanza with `secret`: `Ok(None)` if it is for another
/// key, [`ProtoError::ZeroSharedSecret`] if the share is a low-order point.
pub(crate) fn unwrap(
    share: &[u8; 32],
    body: &[u8; WRAPPED_KEY_LEN],
    secret: &x25519_dalek::StaticSecret,
) -> Result<Option<FileKey>> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*share));
    if !shared.was_contributory() {
        return Err(ProtoError::ZeroSharedSecret);
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(share);
    salt[32..].copy_from_slice(x25519_dalek::PublicKey::from(secret).as_bytes());
    let key = aead_key(&salt, shared.as_bytes(), X25519_LABEL);
    let mut buf = Zeroizing::new(*body);
    match key.open_in_place(zero_nonce(), aead::Aad::empty(), buf.as_mut()) {
        Ok(plain) => {
            let mut k = Zeroizing::new([0u8; FILE_KEY_LEN]);
            k.copy_from_slice(plain);
            Ok(Some(FileKey(k)))
        }
        Err(_) => Ok(None),
    }
}
