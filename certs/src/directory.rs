//! Focal-point key material and directory entries.
//!
//! A focal point has two keys: its Ed25519 identity key (the key of its `fp`
//! certificate, which signs) and an X25519 encryption key (the age recipient
//! key others seal to). The X25519 public key is published in the network's
//! directory as a [`pb::DirectoryEntryBody`] signed with the identity key
//! (`SignedBlob`, tag `focal/v1/directory\0`), carrying the signer's
//! certificate so anyone holding the trust bundle can verify it.

use std::time::{SystemTime, UNIX_EPOCH};

use focal_proto::signed::TAG_DIRECTORY;
use focal_proto::{Address, Role, pb};
use prost::Message as _;
use ring::rand::SecureRandom as _;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::bundle::TrustStore;
use crate::credentials::Credentials;
use crate::error::{CertsError, Result};
use crate::verify::verify_peer;

/// Version of [`pb::DirectoryEntryBody`] this crate writes and accepts.
pub const DIRECTORY_ENTRY_VERSION: u32 = 1;

/// A focal point's X25519 encryption key (the age recipient key).
pub struct EncryptionKey {
    secret: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey").field("public", &hex::encode(self.public())).finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// A fresh key from the system random number generator.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(&mut *bytes)
            .map_err(|_| CertsError::request("system random number generator failed"))?;
        Ok(EncryptionKey::from_secret_bytes(*bytes))
    }

    /// Restores a key from its 32 secret bytes.
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        EncryptionKey { secret: x25519_dalek::StaticSecret::from(bytes) }
    }

    /// The 32 secret bytes (for storage; keep them 0600).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public key published in the directory.
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.secret).to_bytes()
    }

    /// The underlying x25519-dalek secret.
    pub fn static_secret(&self) -> &x25519_dalek::StaticSecret {
        &self.secret
    }
}

/// A verified directory entry.
#[derive(Clone, Debug)]
pub struct VerifiedEntry {
    /// The focal point's address (that of the signer's certificate).
    pub address: Address,
    /// Its X25519 encryption key.
    pub x25519_public: [u8; 32],
    /// The whole signed body.
    pub body: pb::DirectoryEntryBody,
}

/// Signs a directory entry for `creds` (must be an `fp` identity).
pub fn make_directory_entry(
    creds: &Credentials,
    x25519_public: [u8; 32],
    key_serial: u32,
    not_before_ms: i64,
    not_after_ms: i64,
    law_enforcement: bool,
    display_name: &str,
) -> Result<pb::DirectoryEntry> {
    if creds.identity.role != Role::Fp {
        return Err(CertsError::Directory(format!(
            "only focal points publish directory entries, not {}",
            creds.identity
        )));
    }
    if not_after_ms <= not_before_ms {
        return Err(CertsError::Directory("not_after_ms must be after not_before_ms".into()));
    }
    let body = pb::DirectoryEntryBody {
        version: DIRECTORY_ENTRY_VERSION,
        address: creds.identity.address().to_string(),
        x25519_public: x25519_public.to_vec(),
        not_before_ms,
        not_after_ms,
        key_serial,
        law_enforcement,
        display_name: display_name.to_owned(),
    };
    let key = creds.signing_key()?;
    let signed = focal_proto::signed::sign_blob(TAG_DIRECTORY, body.encode_to_vec(), &key, creds.cert_der());
    Ok(pb::DirectoryEntry { signed: Some(signed), escalation: None })
}

/// Checks signature, signer certificate (fp role, chain, CRL), that the
/// address is the certificate's, and the validity window at `now`.
pub fn verify_directory_entry(
    store: &TrustStore,
    entry: &pb::DirectoryEntry,
    now: SystemTime,
) -> Result<VerifiedEntry> {
    let bad = |reason: String| CertsError::Directory(reason);
    let blob = entry.signed.as_ref().ok_or_else(|| bad("missing signed blob".into()))?;
    focal_proto::signed::verify_blob(TAG_DIRECTORY, blob).map_err(|e| bad(e.to_string()))?;
    let signer = verify_peer(store, &CertificateDer::from(blob.signer_cert.as_slice()), &[], now)?;
    if signer.identity.role != Role::Fp {
        return Err(bad(format!("signed by {}, which is not a focal point", signer.identity)));
    }
    let body = pb::DirectoryEntryBody::decode(blob.body.as_slice())
        .map_err(|e| bad(format!("malformed body: {e}")))?;
    if body.version != DIRECTORY_ENTRY_VERSION {
        return Err(bad(format!("unsupported version {}", body.version)));
    }
    let address = Address::parse_member(&body.address)?;
    if address != signer.identity.address() {
        return Err(bad(format!("entry for {address} is signed by {}", signer.identity)));
    }
    let x25519_public = <[u8; 32]>::try_from(body.x25519_public.as_slice())
        .map_err(|_| bad(format!("x25519_public is {} bytes, expected 32", body.x25519_public.len())))?;
    if x25519_public == [0u8; 32] {
        return Err(bad(format!("{address}: x25519_public is all zero")));
    }
    let now_ms =
        now.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0);
    if now_ms < body.not_before_ms {
        return Err(bad(format!("{address}: not valid before {} ms (now {now_ms})", body.not_before_ms)));
    }
    if now_ms >= body.not_after_ms {
        return Err(bad(format!("{address}: expired at {} ms (now {now_ms})", body.not_after_ms)));
    }
    Ok(VerifiedEntry { address, x25519_public, body })
}
