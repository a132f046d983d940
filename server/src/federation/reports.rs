//! Link reports (federation view for secretariats): every
//! [`REPORT_EVERY`], and soon after a link comes up or goes down (at most
//! one extra report per [`MIN_GAP`]), this relay sends each connected peer a
//! `pb::LinkReport` of its own links, alone on a unidirectional stream. What
//! peers report is kept in a [`FederationView`] (latest per reporting
//! network, checked against the peer's certificate) and read through
//! [`LinkReports`]; nothing is forwarded further.
//!
//! Version tolerance: relays that predate link reports grant no
//! unidirectional streams (`max_concurrent_uni_streams = 0`), so opening one
//! towards them never completes; the attempt is abandoned after
//! [`SEND_TIMEOUT`] and such a peer simply gets no reports. Fields added to
//! `LinkReport` later are ignored by older receivers (protobuf).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use focal_proto::pb;
use focal_proto::pb::frame::Kind;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::conn::ConnCtx;
use super::events::LinkEvent;
use super::outbound::LinkHandle;
use super::wire::{ReadFail, frame, kind_name, write_frame};
use super::{Shared, shutdown_signalled};
use crate::admin::{LinkStatuses, PeerStatusSource};
use crate::core::fedview::{FederationView, ReportRefused, ViewLimits};

/// Period of link reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Least time between two reports sent because links changed.
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// How long sending one report to one peer may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Unidirectional streams a relay grants each peer at once (link reports).
pub(crate) const MAX_REPORT_STREAMS: u32 = 2;

/// The received link reports and where this relay's own link states come
/// from. Cheap to clone.
#[derive(Clone)]
pub struct LinkReports {
    inner: Arc<Inner>,
}

struct Inner {
    view: Mutex<FederationView>,
    source: RwLock<Option<Arc<dyn PeerStatusSource>>>,
    /// Per peer: when a refusal was last logged as a warning, and how many
    /// were refused since without a line (a peer with a valid certificate
    /// must not be able to flood the log).
    warned: Mutex<HashMap<String, (i64, u64)>>,
}

/// Least time between two "link report refused" warnings for one peer.
const WARN_EVERY_MS: i64 = 60_000;

impl std::fmt::Debug for LinkReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkReports").finish_non_exhaustive()
    }
}

impl LinkReports {
    pub(crate) fn new(view: FederationView) -> Self {
        LinkReports {
            inner: Arc::new(Inner {
                view: Mutex::new(view),
                source: RwLock::new(None),
                warned: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The latest report of each directly linked network, at `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> Vec<pb::RemoteLinkReport> {
        self.inner.view.lock().unwrap_or_else(|e| e.into_inner()).snapshot(now_ms)
    }

    /// Where this relay's own link states (with outbox depth and oldest
    /// age) come from; without one, reports carry the transport's link
    /// state and no queue numbers.
    pub fn set_source(&self, source: Arc<dyn PeerStatusSource>) {
        *self.inner.source.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    fn source(&self) -> Option<Arc<dyn PeerStatusSource>> {
        self.inner.source.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks and keeps a report received from `ctx`'s peer; refusals are
    /// logged (a forged one as a warning).
    pub(crate) fn receive(&self, ctx: &ConnCtx, report: pb::LinkReport, now_ms: i64) {
        let from = &ctx.peer.identity;
        let res =
            self.inner.view.lock().unwrap_or_else(|e| e.into_inner()).handle_report(from, report, now_ms);
        match res {
            Ok(()) => tracing::trace!(peer = %from, "link report kept"),
            Err(ReportRefused::Outdated) => tracing::debug!(peer = %from, "older link report ignored"),
            Err(e) => {
                let mut warned = self.inner.warned.lock().unwrap_or_else(|e| e.into_inner());
                let entry = warned.entry(from.uri()).or_insert((i64::MIN, 0));
                if now_ms.saturating_sub(entry.0) >= WARN_EVERY_MS {
                    let suppressed = std::mem::take(&mut entry.1);
                    entry.0 = now_ms;
                    tracing::warn!(peer = %from, reason = %e, suppressed, "link report refused");
                } else {
                    entry.1 += 1;
                    tracing::debug!(peer = %from, reason = %e, "link report refused");
                }
            }
        }
    }
}

/// The view for this federation's configured peers.
pub(crate) fn new_view(sh_peers: impl IntoIterator<Item = focal_proto::NetworkId>) -> LinkReports {
    LinkReports::new(FederationView::new(sh_peers, ViewLimits::default()))
}

/// Reads the one `LinkReport` of a unidirectional stream and keeps it.
pub(crate) async fn serve_report_stream(ctx: Arc<ConnCtx>, reports: LinkReports, recv: quinn::RecvStream) {
    let mut reader = ctx.reader(recv);
    let report = match reader.next().await {
        Ok(Some(pb::Frame { kind: Some(Kind::LinkReport(r)) })) => r,
        Ok(Some(f)) => {
            return ctx.violation(format!("unexpected {} on a unidirectional stream", kind_name(&f)));
        }
        Ok(None) => return ctx.violation("unidirectional stream ended before its frame".into()),
        Err(e) => return read_failed(&ctx, e),
    };
    match reader.next().await {
        Ok(None) => {}
        Ok(Some(f)) => return ctx.violation(format!("{} after LinkReport", kind_name(&f))),
        Err(e) => return read_failed(&ctx, e),
    }
    reports.receive(&ctx, report, crate::rpc::now_ms());
}

fn read_failed(ctx: &ConnCtx, fail: ReadFail) {
    match fail {
        ReadFail::Violation(d) => ctx.violation(d),
        other => tracing::debug!(peer = ctx.peer.name(), "link report stream: {other}"),
    }
}

/// This relay's own links, as a report.
fn own_report(sh: &Shared, reports: &LinkReports, now_ms: i64) -> pb::LinkReport {
    // Without the driver's outbox numbers: the transport's link states.
    let source = reports.source().unwrap_or_else(|| {
        let handles = sh.peers.values().map(|slot| LinkHandle { slot: slot.clone() }).collect();
        Arc::new(LinkStatuses(handles))
    });
    let statuses: HashMap<String, pb::PeerStatus> =
        source.peers().into_iter().map(|p| (p.name.clone(), p)).collect();
    let mut links: Vec<pb::LinkState> = sh
        .peers
        .values()
        .filter_map(|slot| {
            let p = statuses.get(&slot.config.name)?;
            Some(pb::LinkState {
                peer_network: slot.identity.network.to_string(),
                peer_relay: slot.config.name.clone(),
                state: p.state.clone(),
                queue_depth: p.queue_depth,
                oldest_age_ms: p.oldest_age_ms.max(0),
            })
        })
        .collect();
    links.sort_by(|a, b| (&a.peer_network, &a.peer_relay).cmp(&(&b.peer_network, &b.peer_relay)));
    pb::LinkReport {
        network: sh.me.network.to_string(),
        relay: sh.me.name.clone(),
        reported_at_ms: now_ms,
        links,
    }
}

async fn send_one(ctx: Arc<ConnCtx>, report: pb::Frame) {
    let sent = timeout(SEND_TIMEOUT, async {
        let mut send = ctx.conn.open_uni().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, &report, ctx.tuning.max_frame).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(peer = ctx.peer.name(), "link report not sent: {e}"),
        Err(_) => tracing::debug!(
            peer = ctx.peer.name(),
            "link report not sent in time (the peer may predate link reports)"
        ),
    }
}

/// Sends this relay's report to every connected peer (one task each; a
/// peer whose previous report is still on its way is skipped).
fn send_all(sh: &Shared, reports: &LinkReports, busy: &mut HashMap<String, JoinHandle<()>>) {
    let report = frame(Kind::LinkReport(own_report(sh, reports, crate::rpc::now_ms())));
    busy.retain(|_, t| !t.is_finished());
    for slot in sh.peers.values() {
        let Some(ctx) = slot.status.borrow().ctx.clone() else { continue };
        let name = slot.config.name.clone();
        if busy.contains_key(&name) {
            continue;
        }
        busy.insert(name, tokio::spawn(send_one(ctx, report.clone())));
    }
}

/// The reporting task; returns at shutdown.
pub(crate) async fn run_reporter(sh: Arc<Shared>, reports: LinkReports) {
    let mut shutdown = sh.shutdown.clone();
    let mut events = sh.reporter.events.subscribe();
    let mut busy = HashMap::new();
    let mut next_periodic = Instant::now() + REPORT_EVERY;
    let mut last_sent = Instant::now().checked_sub(MIN_GAP).unwrap_or_else(Instant::now);
    let mut early: Option<Instant> = None;
    loop {
        let wake = early.map_or(next_periodic, |e| e.min(next_periodic));
        tokio::select! {
            _ = shutdown_signalled(&mut shutdown) => break,
            _ = sleep_until(wake) => {
                send_all(&sh, &reports, &mut busy);
                last_sent = Instant::now();
                next_periodic = last_sent + REPORT_EVERY;
                early = None;
            }
            ev = events.recv() => match ev {
                Ok(LinkEvent::Connected(_) | LinkEvent::Disconnected { .. }) | Err(RecvError::Lagged(_)) => {
                    if early.is_none() {
                        early = Some((last_sent + MIN_GAP).max(Instant::now()));
                    }
                }
                Ok(_) => {}
                Err(RecvError::Closed) => break,
            },
        }
    }
    for (_, t) in busy {
        t.abort();
    }
}
