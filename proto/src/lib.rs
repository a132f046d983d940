//! Focal protocol, sans I/O.
//!
//! This crate holds everything that relays, clients and auditors must agree on
//! and that needs no socket, no clock and no disk: the `focal.v1` protobuf
//! schemas and generated gRPC stubs, addresses and identities, the envelope
//! (age v1 X25519 payload, context, Ed25519 signature), the length-prefixed
//! frame codec used on QUIC streams, and audit-log (Merkle / checkpoint)
//! verification. It does not do any network or file I/O and takes the current
//! time as an argument wherever time matters.

pub mod address;
pub mod audit;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod signed;

pub use address::{Address, Identity, NetworkId, Role};
pub use error::ProtoError;

/// Generated `focal.v1` protobuf types and tonic client/server stubs.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("focal.v1");

    /// Encoded file descriptor set of `focal.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("focal_v1_descriptor");
}
