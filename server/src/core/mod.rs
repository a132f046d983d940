//! The relay's brain: routing, policy, dedup and outbox state as plain types,
//! in the manner of `quinn-proto`.
//!
//! This module contains no networking, storage or async code and never reads
//! a clock: every function that needs the time takes `now_ms` (unix
//! milliseconds, the same scale as `Context.created_at_ms`). It imports no
//! tokio, quinn, tonic or sled (a unit test below enforces it). Inputs are
//! `handle_*` methods, outputs are `poll_*` methods and returned values that
//! say what the caller must persist or send.
//!
//! # Parts
//! - [`routing`]: the routing table and the pure [`routing::route`] function.
//! - [`policy`]: per-network policy and limits; pure checks returning a
//!   [`Refusal`]. Rate limits use [`ratelimit`] token buckets.
//! - [`dedup`]: the (sender, msg id) seen-set with its persistable entries.
//! - [`escalation`]: escalation copies of urgent requests held for an
//!   alternate focal point, with their timers; [`broadcast`]: who may
//!   broadcast out of and into the network.
//! - [`outbox`]: one peer's outbox state (ordering, urgency, in-flight window,
//!   acks, retries with [`backoff`], expiry).
//! - [`fedview`]: the federation view, the latest link report of each
//!   directly linked network (checked against the reporter's identity,
//!   bounded, with staleness), for the secretariat's picture.
//! - [`relay`]: [`RelayCore`], which composes all of the above into the one
//!   object the tokio driver owns.
//! - `sim` and `sim_tests` (test builds only): a deterministic multi-relay
//!   simulator with virtual time, lossy links and crashes, and the
//!   federation scenarios run on it.
//!
//! # What the driver (tokio task + QUIC links + sled store) must do
//! The driver owns one [`RelayCore`] in one place (the store's writer thread)
//! and only moves bytes and persists. The exact order of calls is documented
//! on [`relay`]; in short:
//! 1. At start: [`RelayCore::from_config`], then restore what the store holds
//!    with [`RelayCore::restore_seen`] and [`RelayCore::restore_outbox`].
//! 2. For each envelope (from a client or a peer): build a
//!    [`routing::RouteInput`], call [`RelayCore::handle_envelope`], persist the
//!    [`relay::Verdict`] in ONE batch (with its audit records), flush, then
//!    answer (ACCEPTED / `TransferAck`). A failed flush is fatal: stop the
//!    process; the restart restores what is on disk.
//! 3. For each receipt: [`RelayCore::handle_receipt`], same persistence rule.
//! 4. Link events go to the peer's [`outbox::Outbox`] (`handle_connected`,
//!    `handle_disconnected`, `handle_dial_failed`, `handle_peer_activity`,
//!    `handle_ack`, `handle_retry`) and to [`RelayCore::handle_hello`] and
//!    [`RelayCore::handle_peer_stream`].
//! 5. After every input and whenever [`RelayCore::poll_timeout`] passes, drain
//!    [`RelayCore::poll_expired`], [`RelayCore::poll_dial`] and each outbox's
//!    [`outbox::Outbox::poll_transmit`].

#![warn(missing_docs, dead_code, unreachable_pub)]

pub mod backoff;
pub mod broadcast;
pub mod dedup;
pub mod escalation;
pub mod fedview;
pub mod outbox;
pub mod policy;
pub mod ratelimit;
pub mod relay;
pub mod routing;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;

use std::fmt;

use focal_proto::pb;

pub use relay::{RelayCore, Verdict};

/// Most relays an envelope may pass, counting the sender's own relay. A relay
/// that would become hop number 9 refuses with `TOO_MANY_HOPS`.
pub const MAX_HOPS: usize = 8;

/// Why a relay will not carry an envelope (or a recipient's share of it): the
/// reason code that goes into the signed non-delivery receipt and the audit
/// record, and a human-readable detail that never contains message content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable reason (`ReceiptBody.reason`, `AuditRecord.reason`).
    pub reason: pb::RefusalReason,
    /// Human-readable explanation (`ReceiptBody.detail`, `AuditRecord.detail`).
    pub detail: String,
}

impl Refusal {
    /// A refusal with `reason` and `detail`.
    pub fn new(reason: pb::RefusalReason, detail: impl Into<String>) -> Self {
        Refusal { reason, detail: detail.into() }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str_name(), self.detail)
    }
}

impl std::error::Error for Refusal {}

/// Errors of the relay core: bad configuration or malformed input. Refusals
/// of well-formed envelopes are [`Refusal`]s, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A configuration value is invalid; `key` names it as in the TOML file.
    #[error("config key `{key}`: {reason}")]
    Config {
        /// The offending key, e.g. `peers[1].default_route`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An envelope header, context or receipt is malformed.
    #[error("bad {what}: {reason}")]
    BadInput {
        /// Which field, e.g. `deliver_to`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A peer name that is not in the routing table.
    #[error("unknown peer `{0}`")]
    UnknownPeer(String),
}

impl CoreError {
    pub(crate) fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        CoreError::Config { key: key.into(), reason: reason.into() }
    }
    pub(crate) fn bad(what: &'static str, reason: impl Into<String>) -> Self {
        CoreError::BadInput { what, reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    /// Every source file of this module, so the test below sees all of them.
    const SOURCES: &[(&str, &str)] = &[
        ("mod.rs", include_str!("mod.rs")),
        ("backoff.rs", include_str!("backoff.rs")),
        ("broadcast.rs", include_str!("broadcast.rs")),
        ("dedup.rs", include_str!("dedup.rs")),
        ("escalation.rs", include_str!("escalation.rs")),
        ("fedview.rs", include_str!("fedview.rs")),
        ("outbox.rs", include_str!("outbox.rs")),
        ("outbox_tests.rs", include_str!("outbox_tests.rs")),
        ("policy.rs", include_str!("policy.rs")),
        ("ratelimit.rs", include_str!("ratelimit.rs")),
        ("relay.rs", include_str!("relay.rs")),
        ("routing.rs", include_str!("routing.rs")),
        ("sim.rs", include_str!("sim.rs")),
        ("sim_tests.rs", include_str!("sim_tests.rs")),
    ];

    #[test]
    fn core_imports_no_io_crates() {
        let forbidden = ["tokio", "quinn", "tonic", "sled"];
        for (file, src) in SOURCES {
            for (n, line) in src.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("").trim();
                for name in forbidden {
                    let is_use = (code.starts_with("use ")
                        || code.starts_with("pub use ")
                        || code.starts_with("extern crate"))
                        && code.contains(name);
                    let is_path = code.contains(&format!("{name}::"));
                    assert!(!is_use && !is_path, "{file}:{}: core must not use `{name}`: {line}", n + 1);
                }
            }
        }
    }

    #[test]
    fn every_file_is_listed() {
        // A new file must be added to SOURCES above.
        for line in include_str!("mod.rs").lines() {
            let Some(name) = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod ")) else {
                continue;
            };
            let Some(name) = name.strip_suffix(';') else { continue };
            let file = format!("{name}.rs");
            assert!(SOURCES.iter().any(|(f, _)| *f == file), "add {file} to SOURCES in core/mod.rs");
        }
    }
}
