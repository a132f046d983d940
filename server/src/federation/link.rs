//! One task per configured peer: dials and re-dials it (capped exponential
//! backoff, reset when a link comes up), adopts connections the acceptor
//! hands over, keeps exactly one current connection
//! (`policy::resolve_duplicate`), and publishes the link's status on a watch
//! channel that `LinkHandle`s read. No lock is held across an await; a dead
//! or slow peer only ever occupies its own task.

use std::hash::BuildHasher;
use std::sync::Arc;

use focal_proto::Identity;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use super::conn::{ConnCtx, ping};
use super::events::{LinkEvent, RemotePeer};
use super::handshake::dial;
use super::policy::{Backoff, Resolution, my_dial_wins, resolve_duplicate};
use super::wire::{Limiter, close_code};
use super::{Shared, shutdown_signalled};
use crate::config::PeerConfig;

/// What is known about the link to one peer.
#[derive(Clone, Default)]
pub struct LinkStatus {
    /// The peer on the current connection; `None` while the link is down.
    pub remote: Option<Arc<RemotePeer>>,
    /// Number of connections adopted so far (a new one each reconnect).
    pub generation: u64,
    /// The last dial failure or disconnect reason.
    pub last_error: Option<String>,
    /// The federation was closed; the link will not come back.
    pub closed: bool,
    /// Why the last established connection ended (dial failures do not
    /// overwrite it, unlike `last_error`).
    pub last_disconnect: Option<String>,
    pub(crate) ctx: Option<Arc<ConnCtx>>,
}

impl std::fmt::Debug for LinkStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkStatus")
            .field("remote", &self.remote)
            .field("generation", &self.generation)
            .field("last_error", &self.last_error)
            .field("closed", &self.closed)
            .field("last_disconnect", &self.last_disconnect)
            .finish()
    }
}

/// A configured peer: fixed data, its link status and the channel on which
/// the acceptor hands it inbound connections.
pub(crate) struct PeerSlot {
    pub(crate) config: PeerConfig,
    pub(crate) identity: Identity,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Replaced when the relay's certificate is reloaded (next dial).
    pub(crate) client_config: std::sync::RwLock<quinn::ClientConfig>,
    pub(crate) status: watch::Sender<LinkStatus>,
    pub(crate) candidates: mpsc::Sender<Arc<ConnCtx>>,
    /// Inbound frame budget of this peer, across its connections.
    pub(crate) limiter: Limiter,
}

fn jitter() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
}

struct Link {
    sh: Arc<Shared>,
    slot: Arc<PeerSlot>,
    current: Option<Arc<ConnCtx>>,
    backoff: Backoff,
    my_dial_wins: bool,
    probes: u64,
}

impl Link {
    fn publish(&self, last_error: Option<String>, closed: bool) {
        let ctx = self.current.clone();
        self.slot.status.send_modify(|s| {
            if ctx.as_ref().map(|c| c.peer.connection_id) != s.ctx.as_ref().map(|c| c.peer.connection_id)
                && ctx.is_some()
            {
                s.generation += 1;
            }
            s.remote = ctx.as_ref().map(|c| c.peer.clone());
            s.ctx = ctx;
            if last_error.is_some() {
                s.last_error = last_error;
            }
            s.closed = closed;
        });
    }

    fn adopt(&mut self, cand: Arc<ConnCtx>) {
        self.backoff.reset();
        self.current = Some(cand.clone());
        self.publish(None, false);
        self.sh.reporter.emit(LinkEvent::Connected(cand.peer.clone()));
    }

    fn drop_current(&mut self, code: u32, reason: &str) {
        if let Some(cur) = self.current.take() {
            cur.close(code, reason);
            self.sh.reporter.emit(LinkEvent::Disconnected {
                peer: self.slot.config.name.clone(),
                connection_id: cur.peer.connection_id,
                reason: format!("closed by us ({}): {reason}", close_code::name(code.into())),
            });
        }
    }

    /// A connection finished its hello (dialled by us or accepted).
    async fn consider(&mut self, cand: Arc<ConnCtx>) {
        if cand.conn.close_reason().is_some() {
            return;
        }
        // Its TLS handshake may have passed under a trust a reload has
        // replaced since (the reload only closes adopted connections).
        if let Some(reason) = cand.refused_by(&self.sh.trust.current()) {
            tracing::warn!(peer = %cand.peer.identity, remote = %cand.peer.address, %reason, "closing a new connection: certificate no longer accepted after a reload");
            cand.close(close_code::REVOKED, &format!("certificate no longer accepted: {reason}"));
            return;
        }
        let cur = match self.current.clone() {
            None => return self.adopt(cand),
            Some(c) => match c.conn.close_reason() {
                None => c,
                // Ended, but the loop has not seen it yet: report it first.
                Some(err) => {
                    self.current = None;
                    self.sh.reporter.emit(LinkEvent::Disconnected {
                        peer: self.slot.config.name.clone(),
                        connection_id: c.peer.connection_id,
                        reason: c.end_reason(&err),
                    });
                    return self.adopt(cand);
                }
            },
        };
        match resolve_duplicate(cur.peer.dialled_by_us, cand.peer.dialled_by_us, self.my_dial_wins) {
            Resolution::ReplaceCurrent => {
                let (code, reason) = if cur.peer.dialled_by_us == cand.peer.dialled_by_us {
                    (close_code::STALE, "superseded by a newer connection from the same dialler")
                } else {
                    (
                        close_code::DUPLICATE,
                        "duplicate: the connection dialled by the smaller relay name is kept",
                    )
                };
                self.drop_current(code, reason);
                self.adopt(cand);
            }
            Resolution::KeepCurrentIfAlive => {
                self.probes += 1;
                let alive = matches!(
                    timeout(self.sh.tuning.probe_timeout, ping(&cur, self.probes)).await,
                    Ok(Ok(()))
                );
                if alive {
                    cand.close(
                        close_code::DUPLICATE,
                        "duplicate: the connection dialled by the smaller relay name is kept",
                    );
                } else {
                    self.drop_current(close_code::STALE, "no answer to a probe while the peer dialled again");
                    self.adopt(cand);
                }
            }
        }
    }
}

/// The link task of one peer; returns when the federation shuts down.
pub(crate) async fn run_link(
    sh: Arc<Shared>,
    slot: Arc<PeerSlot>,
    mut candidates: mpsc::Receiver<Arc<ConnCtx>>,
) {
    let mut shutdown = sh.shutdown.clone();
    let mut link = Link {
        backoff: Backoff::new(sh.tuning.redial_base, sh.tuning.redial_max),
        my_dial_wins: my_dial_wins(&sh.me, &slot.identity),
        sh,
        slot,
        current: None,
        probes: 0,
    };
    let spawn_dial = |link: &Link| {
        let span = tracing::debug_span!("fed_dial", peer = %link.slot.config.name);
        tokio::spawn(tracing::Instrument::instrument(dial(link.sh.clone(), link.slot.clone()), span))
    };
    // Dial at once on start (not via the timer): when two relays start
    // together both dial, and `resolve_duplicate` picks the same survivor
    // on both sides.
    let mut dialing: Option<JoinHandle<Result<Arc<ConnCtx>, String>>> = Some(spawn_dial(&link));
    let mut next_dial = Instant::now();
    loop {
        let cur = link.current.clone();
        let closed = async move {
            match cur {
                Some(c) => {
                    let err = c.conn.closed().await;
                    (c, err)
                }
                None => std::future::pending().await,
            }
        };
        let may_dial = link.current.is_none() && dialing.is_none();
        tokio::select! {
            _ = shutdown_signalled(&mut shutdown) => break,
            Some(cand) = candidates.recv() => link.consider(cand).await,
            res = async { dialing.as_mut().expect("guarded").await }, if dialing.is_some() => {
                dialing = None;
                match res {
                    Ok(Ok(ctx)) => link.consider(ctx).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = link.slot.config.name, "dial failed: {e}");
                        next_dial = Instant::now() + link.backoff.next_delay(jitter());
                        link.publish(Some(e), false);
                    }
                    Err(e) => {
                        next_dial = Instant::now() + link.backoff.next_delay(jitter());
                        link.publish(Some(format!("dial task failed: {e}")), false);
                    }
                }
            }
            _ = sleep_until(next_dial), if may_dial => dialing = Some(spawn_dial(&link)),
            (c, err) = closed => {
                let reason = c.end_reason(&err);
                link.current = None;
                link.sh.reporter.emit(LinkEvent::Disconnected {
                    peer: link.slot.config.name.clone(),
                    connection_id: c.peer.connection_id,
                    reason: reason.clone(),
                });
                next_dial = Instant::now() + link.backoff.next_delay(jitter());
                link.slot.status.send_modify(|s| s.last_disconnect = Some(reason.clone()));
                link.publish(Some(reason), false);
            }
        }
    }
    if let Some(d) = dialing.take() {
        d.abort();
    }
    link.drop_current(close_code::SHUTDOWN, "relay shutting down");
    candidates.close();
    while let Ok(c) = candidates.try_recv() {
        c.close(close_code::SHUTDOWN, "relay shutting down");
    }
    link.publish(None, true);
}
