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
//! Modules: [`ca`] (issuing), [`bundle`] (trust bundle, store, reload),
//! [`verify`] (identity and chain checks), [`credentials`], [`tls`] (rustls
//! configs and verifiers), [`directory`] (focal-point keys and directory
//! entries), [`cli`] (the `focal-certs` tool), [`files`] (the PKI
//! directory's files, and the durable file write the relay reuses). Everything public is also
//! re-exported at the crate root.

pub mod bundle;
pub mod ca;
pub mod cli;
pub mod credentials;
pub mod directory;
pub mod error;
pub mod files;
pub mod tls;
pub mod verify;
mod verify_cache;

pub use bundle::{CertRefusal, SharedTrust, TrustBundle, TrustStore};
pub use ca::{IssueRequest, IssuedCert, MAX_VALIDITY_DAYS, NetworkCa, Revoked};
pub use credentials::Credentials;
pub use directory::{EncryptionKey, VerifiedEntry, make_directory_entry, verify_directory_entry};
pub use error::{CertsError, Result};
pub use tls::{ALPN_FEDERATION, ALPN_GRPC, ClientPolicy, ExpectedServer, client_config, server_config};
pub use verify::{Usage, VerifiedPeer, identity_of_cert, verify_peer, verify_peer_for};
