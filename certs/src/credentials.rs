//! A holder's certificate chain and private key, as loaded by relays and
//! clients. The key must be the Ed25519 key of the first certificate: the
//! certificate key is also the identity (signing) key of envelopes, receipts
//! and directory entries.

use std::path::Path;

use focal_proto::Identity;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{CertsError, Result};
use crate::verify::{ed25519_key, identity_from_x509, parse};

/// A holder's certificate chain and private key.
pub struct Credentials {
    /// Leaf first, then any intermediates (Focal CAs issue leaves directly).
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 Ed25519 private key of the leaf.
    pub key: PrivateKeyDer<'static>,
    /// The identity named by the leaf's SAN URI.
    pub identity: Identity,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials { chain: self.chain.clone(), key: self.key.clone_key(), identity: self.identity.clone() }
    }
}

impl Credentials {
    /// Loads a PEM certificate (chain) file and a PEM PKCS#8 key file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let cert = std::fs::read_to_string(cert_path).map_err(|e| CertsError::io(cert_path, e))?;
        let key = zeroize::Zeroizing::new(
            std::fs::read_to_string(key_path).map_err(|e| CertsError::io(key_path, e))?,
        );
        Credentials::parse(&cert, &key, &cert_path.display().to_string(), &key_path.display().to_string())
    }

    /// Parses PEM certificate (chain) and PEM PKCS#8 key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        Credentials::parse(cert_pem, key_pem, "certificate", "private key")
    }

    fn parse(cert_pem: &str, key_pem: &str, cert_what: &str, key_what: &str) -> Result<Self> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertsError::pem(cert_what, e))?;
        let Some(leaf) = chain.first() else {
            return Err(CertsError::pem(cert_what, "no PEM CERTIFICATE block"));
        };
        let (_, cert) = parse(leaf)?;
        let identity = identity_from_x509(&cert)?;
        let cert_key =
            ed25519_key(&cert).ok_or_else(|| CertsError::NotEd25519 { identity: identity.uri() })?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| CertsError::pem(key_what, e))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &key else {
            return Err(CertsError::pem(key_what, "not a PKCS#8 (BEGIN PRIVATE KEY) key"));
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der())
            .map_err(|e| CertsError::pem(key_what, format!("not an Ed25519 PKCS#8 key: {e}")))?;
        if pair.public_key().as_ref() != cert_key {
            return Err(CertsError::KeyMismatch { what: format!("credentials of {identity}") });
        }
        Ok(Credentials { chain, key, identity })
    }

    /// The Ed25519 identity key (signs envelopes, receipts, directory entries).
    pub fn signing_key(&self) -> Result<Ed25519KeyPair> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(self.key.secret_der())
            .map_err(|e| CertsError::pem("private key", format!("not an Ed25519 PKCS#8 key: {e}")))
    }

    /// The leaf certificate.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}
