//! Focal PKI: per-network certificate authorities, role certificates, CRLs,
//! the federation trust bundle, identity extraction, and the rustls
//! configurations shared by the gRPC and QUIC listeners.
//!
//! Every certificate carries a SAN URI `focal://<network>/<role>/<name>` and
//! an Ed25519 key. An identity is accepted only if its chain ends at the CA of
//! **the network it names** in the trust bundle, it is within validity, and it
//! is not on that network's CRL. This crate does no network I/O; it reads and
//! writes PEM/TOML files only where a function says so.
//!
//! CONTRACT (implemented by the PKI work; signatures are fixed):
#![allow(clippy::todo, unused_variables, missing_docs, dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use focal_proto::{Address, Identity, NetworkId, Role, pb};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// The one error type of `focal-certs`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = CertsError> = std::result::Result<T, E>;

/// ALPN of the gRPC client API.
pub const ALPN_GRPC: &[u8] = b"h2";
/// ALPN of relay-to-relay federation links.
pub const ALPN_FEDERATION: &[u8] = b"focal-fed/1";

/// A network's certificate authority (Ed25519 key).
pub struct NetworkCa {
    _p: (),
}

/// What to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    pub role: Role,
    pub name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl IssueRequest {
    /// Valid from one hour ago for 365 days.
    pub fn new(role: Role, name: &str) -> Self {
        todo!()
    }
}

/// An issued certificate and its private key (PEM).
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: zeroize::Zeroizing<String>,
    pub serial_hex: String,
    pub identity: Identity,
}

/// One revoked certificate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    pub serial_hex: String,
    pub revoked_at: u64, // unix seconds
}

impl NetworkCa {
    pub fn generate(network: &NetworkId, validity_days: u32) -> Result<Self> {
        todo!()
    }
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        todo!()
    }
    pub fn network(&self) -> &NetworkId {
        todo!()
    }
    pub fn cert_pem(&self) -> String {
        todo!()
    }
    pub fn key_pem(&self) -> zeroize::Zeroizing<String> {
        todo!()
    }
    pub fn cert_der(&self) -> CertificateDer<'static> {
        todo!()
    }
    pub fn issue(&self, req: &IssueRequest) -> Result<IssuedCert> {
        todo!()
    }
    /// A CRL (PEM) listing `revoked`, valid for `next_update_days`.
    pub fn crl(&self, revoked: &[Revoked], crl_number: u64, next_update_days: u32) -> Result<String> {
        todo!()
    }
}

/// Network id -> CA certificates: what every relay and client trusts.
#[derive(Clone, Debug, Default)]
pub struct TrustBundle {
    pub networks: BTreeMap<NetworkId, Vec<CertificateDer<'static>>>,
}

impl TrustBundle {
    pub fn load(path: &Path) -> Result<Self> {
        todo!()
    }
    pub fn parse(toml_text: &str) -> Result<Self> {
        todo!()
    }
    pub fn to_toml(&self) -> String {
        todo!()
    }
    pub fn insert(&mut self, network: NetworkId, ca_cert: CertificateDer<'static>) {
        todo!()
    }
}

/// Trust bundle plus per-network CRLs, immutable once built.
pub struct TrustStore {
    _p: (),
}

impl TrustStore {
    pub fn new(bundle: TrustBundle, crls: Vec<CertificateRevocationListDer<'static>>) -> Result<Self> {
        todo!()
    }
    /// Loads the bundle file and CRL PEM files.
    pub fn load(bundle_path: &Path, crl_paths: &[&Path]) -> Result<Self> {
        todo!()
    }
    pub fn bundle(&self) -> &TrustBundle {
        todo!()
    }
}

/// A certificate the TLS layer refused (for the audit log).
#[derive(Clone, Debug)]
pub struct CertRefusal {
    pub claimed: Option<String>,
    pub reason: String,
}

/// Reloadable trust (CRL and bundle reload without restart), shared by all
/// TLS configs built from it; each handshake consults the current store.
#[derive(Clone)]
pub struct SharedTrust {
    inner: Arc<RwLock<Arc<TrustStore>>>,
}

impl SharedTrust {
    pub fn new(store: TrustStore) -> Self {
        todo!()
    }
    pub fn current(&self) -> Arc<TrustStore> {
        todo!()
    }
    pub fn replace(&self, store: TrustStore) {
        todo!()
    }
    /// Called for every certificate the verifiers refuse.
    pub fn set_refusal_hook(&self, hook: Arc<dyn Fn(&CertRefusal) + Send + Sync>) {
        todo!()
    }
}

/// Who a verified certificate belongs to.
#[derive(Clone, Debug)]
pub struct VerifiedPeer {
    pub identity: Identity,
    pub ed25519_public: [u8; 32],
    pub not_after: SystemTime,
}

/// Full check: chain to the CA of the network named in the SAN URI,
/// validity at `now`, CRL of that network.
pub fn verify_peer(
    store: &TrustStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<VerifiedPeer> {
    todo!()
}

/// Parses the SAN URI only (for certificates the TLS layer already verified).
pub fn identity_of_cert(der: &[u8]) -> Result<Identity> {
    todo!()
}

/// A holder's certificate chain and private key.
pub struct Credentials {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub identity: Identity,
}

impl Credentials {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        todo!()
    }
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        todo!()
    }
    /// The Ed25519 identity key (signs envelopes, receipts, directory entries).
    pub fn signing_key(&self) -> Result<ring::signature::Ed25519KeyPair> {
        todo!()
    }
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        todo!()
    }
}

/// Which clients a listener accepts.
#[derive(Clone, Debug)]
pub struct ClientPolicy {
    pub roles: Vec<Role>,
    /// `None` = any network in the bundle.
    pub networks: Option<Vec<NetworkId>>,
}

/// The relay a client expects to reach.
#[derive(Clone, Debug)]
pub struct ExpectedServer {
    pub network: NetworkId,
    pub role: Role,
}

/// TLS 1.3-only server config requiring a client certificate that passes
/// `verify_peer` and `policy`; ALPN set to `alpn`.
pub fn server_config(
    creds: &Credentials,
    trust: SharedTrust,
    alpn: &[u8],
    policy: ClientPolicy,
) -> Result<Arc<rustls::ServerConfig>> {
    todo!()
}

/// TLS 1.3-only client config presenting `creds`, accepting only a server
/// certificate of `server.network`'s CA with `server.role`, valid for the
/// name dialled.
pub fn client_config(
    creds: &Credentials,
    trust: SharedTrust,
    alpn: &[u8],
    server: ExpectedServer,
) -> Result<Arc<rustls::ClientConfig>> {
    todo!()
}

/// A verified directory entry.
#[derive(Clone, Debug)]
pub struct VerifiedEntry {
    pub address: Address,
    pub x25519_public: [u8; 32],
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
    todo!()
}

/// Checks signature, signer certificate (fp role, chain, CRL), that the
/// address is the certificate's, and the validity window at `now`.
pub fn verify_directory_entry(
    store: &TrustStore,
    entry: &pb::DirectoryEntry,
    now: SystemTime,
) -> Result<VerifiedEntry> {
    todo!()
}
