//! The Focal relay: serves one network's focal points over gRPC with mutual
//! TLS, stores their mail durably in sled, carries sealed envelopes to other
//! networks' relays over QUIC, and keeps the network's audit log.
//!
//! It never sees message content: it routes and enforces policy on the clear
//! context and verifies signatures without any decryption key.
//!
//! CONTRACT: `serve`, `Listeners`, `config::RelayConfig`, `peer::PeerInfo` and
//! `audit::AuditLog` signatures are fixed; bodies are filled in by the relay
//! and audit work.
#![allow(clippy::todo, unused_variables, missing_docs, dead_code)]

pub mod audit;
pub mod config;
pub mod core;
pub mod federation;
pub mod peer;

use std::future::Future;

/// The one error type of the relay library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("{0}")]
    Other(String),
}

/// Sockets a relay serves on, bound before anything else starts (config is
/// parsed and validated first; see `config::RelayConfig::load`).
pub struct Listeners {
    /// gRPC client API (TCP, TLS 1.3, h2).
    pub grpc: tokio::net::TcpListener,
    /// Federation endpoint (UDP, QUIC). `None` for a relay without peers.
    pub federation: Option<std::net::UdpSocket>,
    /// Prometheus metrics (plain HTTP), off unless configured.
    pub metrics: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config.listen`.
    pub async fn bind(config: &config::RelayConfig) -> Result<Self, RelayError> {
        todo!()
    }
}

/// Runs a relay until `shutdown` resolves, then drains in-flight work, closes
/// links and flushes the store before returning.
pub async fn serve(
    config: config::RelayConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    todo!()
}
