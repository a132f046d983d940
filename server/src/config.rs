//! Relay configuration: one TOML file per relay. `RelayConfig::load` parses
//! and validates everything (a bad config names the key and the reason)
//! before any port is bound.
//!
//! CONTRACT: the fields below are fixed (other crates write these files);
//! validation and loading are filled in by the relay work. Relative paths are
//! resolved against the config file's directory.
#![allow(clippy::todo, unused_variables, missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;

use focal_proto::NetworkId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Network this relay serves.
    pub network: NetworkId,
    /// Relay name: the `<name>` of its certificate's `focal://<net>/relay/<name>`.
    pub name: String,
    /// sled store, audit log key, and nothing else.
    pub data_dir: PathBuf,
    pub listen: ListenConfig,
    pub tls: TlsConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub grpc: SocketAddr,
    /// UDP address for QUIC federation; omit for a relay without peers.
    #[serde(default)]
    pub federation: Option<SocketAddr>,
    /// Prometheus metrics; off unless set.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust_bundle: PathBuf,
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest payload ciphertext accepted (bytes).
    pub max_message_bytes: u64,
    /// Longest lifetime expires_at - created_at (seconds).
    pub max_lifetime_secs: u64,
    /// How far in the future created_at may be (seconds).
    pub max_clock_skew_secs: u64,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Messages waiting in one mailbox.
    pub max_mailbox_messages: u64,
    /// Store size above which new sends are refused with RESOURCE_EXHAUSTED.
    pub max_store_bytes: u64,
    /// Sends per sender per minute.
    pub sends_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 2 * 1024 * 1024 * 1024 + 1024 * 1024,
            max_lifetime_secs: 30 * 24 * 3600,
            max_clock_skew_secs: 300,
            max_connections: 10_000,
            max_mailbox_messages: 100_000,
            max_store_bytes: 64 * 1024 * 1024 * 1024,
            sends_per_minute: 600,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer relay's name (its certificate's `<name>`).
    pub name: String,
    /// The peer's own network (its certificate must chain to that CA).
    pub network: NetworkId,
    /// host:port of its federation (QUIC) listener.
    pub address: String,
    /// Use this peer for networks no direct peer serves (the GFP hub).
    #[serde(default)]
    pub default_route: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Networks this network's members may send to (empty = all).
    pub send_to: Vec<NetworkId>,
    /// Networks from which messages are accepted (empty = all).
    pub receive_from: Vec<NetworkId>,
    /// Handling codes allowed to leave the network, e.g. ["H1", "H2", "H3"] (empty = all).
    pub outbound_handling: Vec<String>,
    /// Envelopes per minute accepted from one peer (0 = unlimited).
    pub peer_envelopes_per_minute: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Checkpoint origin line; default `focal/<network>/<name>`.
    pub origin: Option<String>,
    /// Seconds between automatic checkpoints (at most one per second).
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { origin: None, checkpoint_interval_secs: 1 }
    }
}

impl RelayConfig {
    /// Reads, parses and validates; errors name the key and the reason.
    pub fn load(path: &std::path::Path) -> Result<Self, crate::RelayError> {
        todo!()
    }
}
