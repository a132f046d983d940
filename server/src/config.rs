//! Relay configuration: one TOML file per relay. `RelayConfig::load` parses
//! and validates everything (a bad config names the key and the reason)
//! before any port is bound.
//!
//! The fields of the contract are fixed (other crates write these files);
//! optional fields added since carry serde defaults, so older files still
//! load. Relative paths are resolved against the config file's directory.
//! Every limit documents what it costs.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use focal_proto::{Identity, NetworkId, Role};
use serde::{Deserialize, Serialize};

use crate::RelayError;

mod casework;
pub use casework::{BroadcastConfig, EscalationConfig, parse_duration_ms};

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
    // ---- case work: escalation and broadcast (see `config/casework.rs`)
    /// `[[escalation]]`: alternates for unacknowledged urgent requests.
    #[serde(default)]
    pub escalation: Vec<EscalationConfig>,
    /// `[broadcast]`: who may broadcast out of and into this network.
    #[serde(default)]
    pub broadcast: BroadcastConfig,
    /// `[retention]` (see [`retention`]).
    #[serde(default)]
    pub retention: retention::RetentionConfig,
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
    /// Concurrent client connections of one identity (certificate): one
    /// focal point cannot take every connection slot.
    pub max_connections_per_identity: usize,
    /// Messages waiting in one mailbox.
    pub max_mailbox_messages: u64,
    /// Store size above which new sends are refused with RESOURCE_EXHAUSTED.
    pub max_store_bytes: u64,
    /// Sends per sender per minute.
    pub sends_per_minute: u32,
    /// Seconds a client has to complete the TLS handshake. Each pending
    /// handshake holds a connection permit, so this bounds how long a slow or
    /// silent client can occupy one.
    pub handshake_timeout_secs: u64,
    /// Seconds a Send may go without a message from the client (the
    /// header, then each payload chunk) before it is abandoned: a stalled
    /// upload holds memory, a file and store room.
    pub upload_idle_secs: u64,
    /// Seconds in-flight RPCs get to finish after shutdown begins; connections
    /// still open after it are closed.
    pub shutdown_grace_secs: u64,
    /// Store operations waiting for the writer. Each slot holds one pending
    /// operation (a header, plus a payload of at most 64 KiB: the default
    /// 1024 bounds the queue near 64 MiB); when full, new operations fail
    /// with RESOURCE_EXHAUSTED instead of queueing.
    pub write_queue_depth: usize,
    /// Live inbox events buffered per mailbox for subscribers that read
    /// slowly (each holds one message header); a subscriber that falls
    /// further behind is disconnected and replays on reconnect.
    pub inbox_live_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 2 * 1024 * 1024 * 1024 + 1024 * 1024,
            max_lifetime_secs: 30 * 24 * 3600,
            max_clock_skew_secs: 300,
            max_connections: 10_000,
            max_connections_per_identity: 64,
            upload_idle_secs: 60,
            max_mailbox_messages: 100_000,
            max_store_bytes: 64 * 1024 * 1024 * 1024,
            sends_per_minute: 600,
            handshake_timeout_secs: 10,
            shutdown_grace_secs: 10,
            write_queue_depth: 1024,
            inbox_live_buffer: 1024,
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
    /// Checkpoint origin line; default `focal/<network>/<name>`. Peers
    /// witness (cosign) only that default: a witness takes a peer's origin
    /// from its certificate identity, so a log under another origin gets no
    /// cosignatures.
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
    /// Relative paths become absolute, resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, RelayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RelayError::ConfigRead { path: path.to_owned(), source })?;
        let mut config: RelayConfig = toml::from_str(&text)
            .map_err(|e| RelayError::ConfigParse { path: path.to_owned(), message: e.to_string() })?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir)
            .map_err(|source| RelayError::ConfigRead { path: path.to_owned(), source })?;
        config.resolve_paths(&dir);
        config.validate().map_err(|(key, reason)| RelayError::Config {
            path: path.to_owned(),
            key,
            reason,
        })?;
        Ok(config)
    }

    /// Makes every relative path absolute against `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.tls.trust_bundle);
        self.tls.crls.iter_mut().for_each(fix);
    }

    /// Checks every value; on error returns (dotted key, reason).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, reason: String| Err((key.to_owned(), reason));
        if let Err(e) = focal_proto::address::validate_name(&self.name) {
            return err("name", e.to_string());
        }
        if self.data_dir.as_os_str().is_empty() {
            return err("data_dir", "must not be empty".into());
        }
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            return err("data_dir", format!("{} exists and is not a directory", self.data_dir.display()));
        }

        let l = &self.listen;
        if l.metrics == Some(l.grpc) && l.grpc.port() != 0 {
            return err("listen.metrics", format!("same address as listen.grpc ({})", l.grpc));
        }

        readable("tls.cert", &self.tls.cert)?;
        readable("tls.key", &self.tls.key)?;
        readable("tls.trust_bundle", &self.tls.trust_bundle)?;
        for (i, crl) in self.tls.crls.iter().enumerate() {
            readable(&format!("tls.crls[{i}]"), crl)?;
        }

        self.limits.validate()?;

        let mut names = std::collections::BTreeSet::new();
        let mut default_routes = 0;
        for (i, p) in self.peers.iter().enumerate() {
            let key = |k: &str| format!("peers[{i}].{k}");
            if let Err(e) = focal_proto::address::validate_name(&p.name) {
                return Err((key("name"), e.to_string()));
            }
            if !names.insert(p.name.as_str()) {
                return Err((key("name"), format!("peer {:?} is listed twice", p.name)));
            }
            if p.network == self.network {
                return Err((
                    key("network"),
                    format!("a peer serves another network, not this relay's {}", self.network),
                ));
            }
            if p.address
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err((key("address"), format!("expected host:port, got {:?}", p.address)));
            }
            if p.default_route {
                default_routes += 1;
                if default_routes > 1 {
                    return Err((key("default_route"), "only one peer may be the default route".into()));
                }
            }
        }

        for (i, code) in self.policy.outbound_handling.iter().enumerate() {
            if !matches!(code.as_str(), "H0" | "H1" | "H2" | "H3") {
                return Err((
                    format!("policy.outbound_handling[{i}]"),
                    format!("unknown handling code {code:?} (expected H0, H1, H2 or H3)"),
                ));
            }
        }

        if let Some(origin) = &self.audit.origin
            && (origin.trim().is_empty() || origin.contains(char::is_whitespace))
        {
            return err("audit.origin", format!("must be a non-empty line without spaces, got {origin:?}"));
        }
        if self.audit.checkpoint_interval_secs == 0 {
            return err("audit.checkpoint_interval_secs", "must be > 0".into());
        }
        if self.audit.checkpoint_interval_secs > MAX_CHECKPOINT_INTERVAL_SECS {
            return err(
                "audit.checkpoint_interval_secs",
                format!(
                    "must be at most {MAX_CHECKPOINT_INTERVAL_SECS} (a day): auditors wait that long for a checkpoint"
                ),
            );
        }
        casework::validate(&self.network, &self.escalation, &self.broadcast)?;
        self.retention.validate()?;
        Ok(())
    }

    /// The identity this relay's certificate must carry.
    pub fn relay_identity(&self) -> Identity {
        Identity { network: self.network.clone(), role: Role::Relay, name: self.name.clone() }
    }

    /// The audit-log checkpoint origin (configured, or `focal/<network>/<name>`).
    pub fn audit_origin(&self) -> String {
        self.audit.origin.clone().unwrap_or_else(|| crate::audit::relay_origin(&self.relay_identity()))
    }
}

/// Largest `limits.write_queue_depth`.
pub const MAX_WRITE_QUEUE_DEPTH: usize = 1 << 20;
/// Largest `limits.inbox_live_buffer` (events per subscribed mailbox).
pub const MAX_INBOX_LIVE_BUFFER: usize = 1 << 16;
/// Largest `audit.checkpoint_interval_secs` (a day).
pub const MAX_CHECKPOINT_INTERVAL_SECS: u64 = 86_400;

impl Limits {
    fn validate(&self) -> Result<(), (String, String)> {
        let positive = [
            ("limits.max_message_bytes", self.max_message_bytes),
            ("limits.max_lifetime_secs", self.max_lifetime_secs),
            ("limits.max_connections", self.max_connections as u64),
            ("limits.max_connections_per_identity", self.max_connections_per_identity as u64),
            ("limits.upload_idle_secs", self.upload_idle_secs),
            ("limits.max_mailbox_messages", self.max_mailbox_messages),
            ("limits.max_store_bytes", self.max_store_bytes),
            ("limits.sends_per_minute", u64::from(self.sends_per_minute)),
            ("limits.handshake_timeout_secs", self.handshake_timeout_secs),
            ("limits.write_queue_depth", self.write_queue_depth as u64),
            ("limits.inbox_live_buffer", self.inbox_live_buffer as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key.to_owned(), "must be > 0".to_owned()));
            }
        }
        // Upper bounds: each is allocated up front (the live buffer per
        // subscribed mailbox, the queue once) or must fit tokio's semaphore;
        // a value past them would take the memory or panic at start.
        for (key, value, max) in [
            ("limits.max_connections", self.max_connections, tokio::sync::Semaphore::MAX_PERMITS),
            ("limits.write_queue_depth", self.write_queue_depth, MAX_WRITE_QUEUE_DEPTH),
            ("limits.inbox_live_buffer", self.inbox_live_buffer, MAX_INBOX_LIVE_BUFFER),
        ] {
            if value > max {
                return Err((key.to_owned(), format!("must be at most {max}")));
            }
        }
        // Times are carried as i64 milliseconds.
        let max_secs = (i64::MAX / 1000 / 2) as u64;
        for (key, value) in [
            ("limits.max_lifetime_secs", self.max_lifetime_secs),
            ("limits.max_clock_skew_secs", self.max_clock_skew_secs),
            ("limits.handshake_timeout_secs", self.handshake_timeout_secs),
            ("limits.upload_idle_secs", self.upload_idle_secs),
            ("limits.shutdown_grace_secs", self.shutdown_grace_secs),
        ] {
            if value > max_secs {
                return Err((key.to_owned(), format!("must be at most {max_secs}")));
            }
        }
        if self.max_clock_skew_secs > self.max_lifetime_secs {
            return Err((
                "limits.max_clock_skew_secs".into(),
                format!("must not exceed limits.max_lifetime_secs ({})", self.max_lifetime_secs),
            ));
        }
        Ok(())
    }
}

fn readable(key: &str, path: &Path) -> Result<(), (String, String)> {
    match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err((key.to_owned(), format!("{} is not a regular file", path.display()))),
        Err(e) => Err((key.to_owned(), format!("cannot read {}: {e}", path.display()))),
    }
}

pub mod retention;

#[cfg(test)]
mod tests;
