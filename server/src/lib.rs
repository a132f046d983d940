//! The Focal relay: serves one network's focal points over gRPC with mutual
//! TLS, stores their mail durably in sled, carries sealed envelopes to other
//! networks' relays over QUIC, and keeps the network's audit log.
//!
//! It never sees message content: it routes and enforces policy on the clear
//! context and verifies signatures without any decryption key.
//!
//! Use in-process: [`config::RelayConfig::load`], [`Listeners::bind`] (ports
//! may be 0; read the bound addresses from the listeners), then [`serve`]
//! with a shutdown future, typically in a tokio task. As a process:
//! `focal-relay run --config F` ([`cli::main`]).
//!
//! Federation: the QUIC transport is [`federation`], the routing brain
//! [`core`], and [`relaying`] drives them with the store (per-peer outboxes,
//! inbound handler, cross-network directory). Not here yet: metrics and the
//! admin service.
#![warn(missing_docs)]

pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;
mod error;
pub mod federation;
pub mod hub;
pub mod logging;
mod node;
pub mod peer;
pub mod relaying;
pub mod route;
pub mod rpc;
pub mod store;
mod sweeper;
pub mod tls;

use std::future::Future;

pub use error::RelayError;

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
        let l = &config.listen;
        let grpc = tokio::net::TcpListener::bind(l.grpc).await.map_err(|source| RelayError::Bind {
            key: "listen.grpc",
            addr: l.grpc,
            source,
        })?;
        let federation = match l.federation {
            Some(addr) => Some(std::net::UdpSocket::bind(addr).map_err(|source| RelayError::Bind {
                key: "listen.federation",
                addr,
                source,
            })?),
            None => None,
        };
        let metrics = match l.metrics {
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| RelayError::Bind {
                    key: "listen.metrics",
                    addr,
                    source,
                })?)
            }
            None => None,
        };
        Ok(Listeners { grpc, federation, metrics })
    }
}

/// Runs a relay until `shutdown` resolves, then drains in-flight work, closes
/// links and flushes the store before returning.
///
/// Logs `focal-relay listening grpc=<addr> federation=<addr|none>` once it
/// serves. Fails before serving if the certificate material does not check
/// out or the store cannot be opened.
pub async fn serve(
    config: config::RelayConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    node::run(config, listeners, shutdown).await
}
