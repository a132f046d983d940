//! The operator's side of a running relay: the state shared by the metrics
//! exporter, the `focal.v1.Admin` gRPC service ([`AdminService`]) and the
//! reload machinery, and the two seams through which the federation driver
//! reports on and controls peer links ([`PeerStatusSource`],
//! [`PeerControl`]). `node.rs` sets the driver (`crate::relaying::Relaying`)
//! as the status source always and as peer control once the QUIC endpoint
//! runs; without it peer control answers UNAVAILABLE "federation not
//! running". [`LinkStatuses`] reports raw link state for a transport used
//! without the driver. The federation's [`LinkReports`] (the links between
//! other relays, as peers report them) are set once the QUIC endpoint runs
//! and appear in `Admin.Status` as `remote_reports`. The relay's witness is
//! set once it is open, for `Admin.ForgetWitnessedLog`.

mod relaying;
mod service;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use focal_proto::pb;
use tonic::Status;

pub use service::AdminService;

use crate::config::RelayConfig;
use crate::federation::{LinkHandle, LinkReports};
use crate::metrics::{Gauges, Metrics, TOP_MAILBOXES};
use crate::reload::Reloader;
use crate::store::Store;
use crate::store::admin_outbox::OutboxPurgeRequest;

/// Reports the peer links and their outboxes (provided by the federation driver).
pub trait PeerStatusSource: Send + Sync {
    /// One entry per configured peer: state (`connected`, `connecting`,
    /// `backoff`, `paused`, `closed`), queue depth, oldest age, retries.
    fn peers(&self) -> Vec<pb::PeerStatus>;
    /// Up to `limit` items of `peer`'s outbox (clear header only).
    fn outbox(&self, peer: &str, limit: usize) -> Vec<pb::QueueItem> {
        let _ = (peer, limit);
        Vec::new()
    }
}

/// Acts on peer links (provided by the federation driver). Each method
/// returns a one-line description of what was done, or a status naming why not.
#[tonic::async_trait]
pub trait PeerControl: Send + Sync {
    /// Dial / resend now, skipping the backoff.
    async fn retry(&self, peer: &str) -> Result<String, Status>;
    /// Stop sending to `peer` (its outbox keeps filling) until resumed.
    async fn pause(&self, peer: &str) -> Result<String, Status>;
    /// Undo [`PeerControl::pause`].
    async fn resume(&self, peer: &str) -> Result<String, Status>;
    /// Remove an item from a peer's outbox (audited PURGED): only an expired
    /// one unless `req.force`; FAILED_PRECONDITION if it has not expired,
    /// NOT_FOUND if it is not there as described.
    async fn purge(&self, req: OutboxPurgeRequest) -> Result<String, Status>;
}

/// Peer status from the transport alone (no outbox numbers): what
/// `FederationHandle::links()` knows.
pub struct LinkStatuses(pub Vec<LinkHandle>);

impl PeerStatusSource for LinkStatuses {
    fn peers(&self) -> Vec<pb::PeerStatus> {
        self.0
            .iter()
            .map(|l| {
                let s = l.status();
                let state = if s.closed {
                    "closed"
                } else if s.remote.is_some() {
                    "connected"
                } else if s.last_error.is_some() {
                    "backoff"
                } else {
                    "connecting"
                };
                pb::PeerStatus {
                    name: l.peer().name.clone(),
                    networks: vec![l.peer().network.to_string()],
                    state: state.into(),
                    last_error: s.last_error.clone().unwrap_or_default(),
                    last_disconnect: s.last_disconnect.clone().unwrap_or_default(),
                    ..Default::default()
                }
            })
            .collect()
    }
}

/// What the metrics exporter and the admin service share.
pub struct OpsState {
    /// The validated config.
    pub config: RelayConfig,
    /// The store.
    pub store: Store,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Reload (SIGHUP, Admin.Reload) and the material in force.
    pub reloader: Arc<Reloader>,
    /// When the relay started.
    pub started: Instant,
    peers: RwLock<Option<Arc<dyn PeerStatusSource>>>,
    control: RwLock<Option<Arc<dyn PeerControl>>>,
    remote: RwLock<Option<LinkReports>>,
    witness: RwLock<Option<Arc<crate::audit::witness::Witness>>>,
}

impl OpsState {
    /// The shared state; peers are unknown until the driver sets them.
    pub fn new(config: RelayConfig, store: Store, reloader: Arc<Reloader>) -> Arc<Self> {
        Arc::new(OpsState {
            metrics: store.metrics().clone(),
            config,
            store,
            reloader,
            started: Instant::now(),
            peers: RwLock::new(None),
            control: RwLock::new(None),
            remote: RwLock::new(None),
            witness: RwLock::new(None),
        })
    }

    /// Where peer status comes from from now on.
    pub fn set_peer_status(&self, source: Arc<dyn PeerStatusSource>) {
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// Who acts on peer links from now on.
    pub fn set_peer_control(&self, control: Arc<dyn PeerControl>) {
        *self.control.write().unwrap_or_else(|e| e.into_inner()) = Some(control);
    }

    /// Where the links between other relays come from (the federation's
    /// link reports).
    pub fn set_link_reports(&self, reports: LinkReports) {
        *self.remote.write().unwrap_or_else(|e| e.into_inner()) = Some(reports);
    }

    /// The latest link report of each directly linked network (empty while
    /// federation does not run).
    pub fn remote_reports(&self, now_ms: i64) -> Vec<pb::RemoteLinkReport> {
        let reports = self.remote.read().unwrap_or_else(|e| e.into_inner()).clone();
        reports.map(|r| r.snapshot(now_ms)).unwrap_or_default()
    }

    /// This relay's witness of its peers' logs.
    pub fn set_witness(&self, witness: Arc<crate::audit::witness::Witness>) {
        *self.witness.write().unwrap_or_else(|e| e.into_inner()) = Some(witness);
    }

    /// The witness, once set.
    pub fn witness(&self) -> Option<Arc<crate::audit::witness::Witness>> {
        self.witness.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The peer status source, if any.
    pub fn peer_status(&self) -> Option<Arc<dyn PeerStatusSource>> {
        self.peers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The peer control, if any.
    pub fn peer_control(&self) -> Option<Arc<dyn PeerControl>> {
        self.control.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Everything measured at scrape time.
    pub fn gauges(&self) -> Gauges {
        let now_ms = crate::rpc::now_ms();
        let stats = self.store.mailbox_stats(now_ms, TOP_MAILBOXES).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "mailbox statistics unavailable");
            Default::default()
        });
        Gauges {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            store_bytes: self.store.size_bytes(),
            audit_log_size: self.store.audit_log().size(),
            mailboxes: stats.mailboxes,
            mailbox_messages: stats.messages,
            mailbox_oldest_age_ms: stats.oldest_age_ms,
            top_mailboxes: stats.top,
            held_copies: stats.held,
            held_oldest_age_ms: stats.held_oldest_age_ms,
            peers: self.peer_status().map(|p| p.peers()).unwrap_or_default(),
            certificates: self.reloader.dated().read().unwrap_or_else(|e| e.into_inner()).clone(),
            live_connections: self.reloader.live().len() as u64,
            now_unix: now_ms.div_euclid(1000),
        }
    }

    /// The metrics page (Prometheus text format).
    pub fn render_metrics(&self) -> String {
        let gauges = self.gauges();
        crate::metrics::render(&self.metrics.counters(), &self.metrics.fsync(), &gauges)
    }
}

mod start;
pub use start::{OpsRuntime, OpsTasks, start};
