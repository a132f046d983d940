//! The federation driver: connects the relay core ([`crate::core`]), the
//! store ([`crate::store`]) and the QUIC transport ([`crate::federation`]).
//!
//! # Who owns the core
//! One [`RelayCore`] per relay, behind a `std::sync::Mutex` in [`Relaying`],
//! never held across an await. Decisions that must be persisted (routing an
//! envelope or receipt, expiring or acking an outbox item) are taken by the
//! store's single writer thread while it stages the batch that records them,
//! holding the lock until the batch is applied to the tree (see
//! `store::fed`): a decision and its keys appear together, in one batch with
//! their audit records, and the answer (ACCEPTED, `TransferAck`) goes out
//! after that batch's fsync. Link events, `poll_transmit`, acks and retries
//! take the lock briefly from the per-peer sender tasks and the transport's
//! event callback.
//!
//! # Tasks
//! - one sender task per configured peer ([`sender`]): drains its outbox,
//!   small envelopes in order on one pipelined transfer stream ([`pipe`]),
//!   large ones and receipts on streams of their own (so per (sender,
//!   recipient) order holds), deletes an item only on the peer's ack, backs
//!   off on RETRY or errors, expires items. A dead peer holds only its own
//!   task.
//! - inbound requests are served by [`inbound::Inbound`], the transport's
//!   `InboundHandler`; it also turns link events into core calls and audit
//!   records (PEER_CONNECTED, PEER_REFUSED).
//! - a housekeeping task forgets expired seen entries every minute.
//! - one cosigning task per peer link ([`cosign`]) gets our audit-log
//!   checkpoints cosigned by the peer's witness; inbound cosign requests
//!   are answered with this relay's [`Witness`] ([`Relaying::with_witness`]).
//!
//! # State for admin and metrics
//! [`Relaying::peer_status`] is a cheap snapshot of every peer's outbox and
//! link, taken under the core lock; [`Relaying::retry_peer`] and
//! [`Relaying::pause_peer`] act on an outbox. The handle is reachable from
//! the gRPC services as `Shared.routes.relaying()`.

pub mod cosign;
pub mod directory;
pub mod inbound;
mod pipe;
mod sender;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use focal_certs::SharedTrust;
use focal_proto::pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::witness::Witness;
use crate::config::RelayConfig;
use crate::core::RelayCore;
use crate::core::outbox::OutboxStatus;
use crate::federation::LinkHandle;
use crate::rpc::now_ms;
use crate::store::Store;

/// One peer as the driver sees it (for admin `Status` and metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Configured peer name.
    pub peer: String,
    /// Outbox state (`connected`, `connecting`, `backoff`, `paused`), depth,
    /// in-flight, oldest item, retries, next attempt.
    pub outbox: OutboxStatus,
    /// Networks the peer serves (its own, from its hello, once connected).
    pub serves: Vec<String>,
    /// Whether it is the default route.
    pub default_route: bool,
}

/// The driver's shared state. Cheap to share (`Arc`).
pub struct Relaying {
    pub(crate) config: RelayConfig,
    pub(crate) store: Store,
    pub(crate) core: Arc<Mutex<RelayCore>>,
    pub(crate) trust: SharedTrust,
    links: OnceLock<HashMap<String, LinkHandle>>,
    /// Bumped on link events so sender tasks look again.
    kick: watch::Sender<u64>,
    pub(crate) directory: directory::DirectoryCache,
    /// This relay as a witness of its peers' logs (None: not offered).
    pub(crate) witness: Option<Arc<Witness>>,
}

impl std::fmt::Debug for Relaying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relaying").field("relay", &self.config.name).finish()
    }
}

impl Relaying {
    /// The driver state over an opened store and its core.
    pub fn new(config: RelayConfig, store: Store, core: Arc<Mutex<RelayCore>>, trust: SharedTrust) -> Self {
        Relaying {
            config,
            store,
            core,
            trust,
            links: OnceLock::new(),
            kick: watch::Sender::new(0),
            directory: directory::DirectoryCache::new(10_000, Duration::from_secs(300)),
            witness: None,
        }
    }

    /// Answers peers' cosign requests with `witness`.
    pub fn with_witness(mut self, witness: Arc<Witness>) -> Self {
        self.witness = Some(witness);
        self
    }

    /// The core, locked (never hold the guard across an await).
    pub fn core(&self) -> MutexGuard<'_, RelayCore> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A snapshot of every peer's link and outbox.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        let c = self.core();
        c.table()
            .peers()
            .map(|p| PeerStatus {
                peer: p.name.clone(),
                outbox: c.outbox(&p.name).map(|o| o.status()).unwrap_or_else(|| OutboxStatus {
                    state: "backoff",
                    queue_depth: 0,
                    in_flight: 0,
                    oldest_queued_at_ms: None,
                    retries: 0,
                    next_attempt_at_ms: None,
                }),
                serves: p.serves.iter().map(|n| n.to_string()).collect(),
                default_route: p.default_route,
            })
            .collect()
    }

    /// The link of a peer, once the federation is started.
    pub(crate) fn link(&self, peer: &str) -> Option<&LinkHandle> {
        self.links.get()?.get(peer)
    }

    /// Wakes every sender task (after changing an outbox from outside).
    pub fn kick(&self) {
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Admin: retry `peer` now (backoff reset, hold ended). False: no such peer.
    pub fn retry_peer(&self, peer: &str) -> bool {
        let done = self.core().outbox_mut(peer).map(|o| o.retry_now(now_ms())).is_some();
        self.kick();
        done
    }

    /// Admin: stop or resume sending to `peer` (the link stays up). False: no such peer.
    pub fn pause_peer(&self, peer: &str, paused: bool) -> bool {
        let done = self.core().outbox_mut(peer).map(|o| o.set_paused(paused)).is_some();
        self.kick();
        done
    }

    /// Starts one sender task and one cosigning task per peer link and the
    /// housekeeping task; they stop when `stop` turns true.
    pub fn start(
        self: &Arc<Self>,
        links: Vec<LinkHandle>,
        stop: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let map: HashMap<String, LinkHandle> =
            links.into_iter().map(|l| (l.peer().name.clone(), l)).collect();
        let _ = self.links.set(map.clone());
        let mut tasks: Vec<JoinHandle<()>> = map
            .into_iter()
            .map(|(peer, link)| {
                let span = tracing::info_span!("outbox", peer = %peer);
                tokio::spawn(tracing::Instrument::instrument(
                    sender::run(self.clone(), peer, link, self.kick.subscribe(), stop.clone()),
                    span,
                ))
            })
            .collect();
        for link in self.links.get().into_iter().flat_map(|m| m.values()) {
            let span = tracing::info_span!("cosign", peer = %link.peer().name);
            tasks.push(tokio::spawn(tracing::Instrument::instrument(
                cosign::run(self.clone(), link.clone(), stop.clone()),
                span,
            )));
        }
        tasks.push(tokio::spawn(housekeeping(self.clone(), stop)));
        tasks
    }

    /// A relay-signed audit record, queued without waiting.
    pub(crate) fn audit(&self, record: pb::AuditRecord) {
        self.store.audit_nowait(record);
    }
}

async fn housekeeping(r: Arc<Relaying>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let gone = r.core().expire_seen(now_ms());
        if let Err(e) = r.store.forget_seen(gone).await {
            tracing::warn!(error = %e, "forgetting expired seen entries failed");
        }
    }
}
