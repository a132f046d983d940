//! The Focal relay: serves one network's focal points over gRPC with mutual
//! TLS, stores their mail durably in sled, carries sealed envelopes to other
//! networks' relays over QUIC, and keeps the network's audit log.
//!
//! It never sees message content: it routes and enforces policy on the clear
//! context and verifies signatures without any decryption key.
#![warn(missing_docs)]

pub mod audit;
pub mod config;
pub mod core;
mod error;
pub mod federation;
pub mod hub;
pub mod peer;
pub mod store;

pub use error::RelayError;
