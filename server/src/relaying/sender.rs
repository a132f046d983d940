//! One task per peer: drives that peer's outbox (`poll_expired`,
//! `poll_transmit`, `poll_timeout`) and keeps up to the outbox's `window`
//! items in flight on the peer's link at once, polling for more whenever one
//! is answered or the outbox changes. Pipelined items (small envelopes) go
//! on one transfer stream per outbox stream number, in the order the outbox
//! yields them ([`Pipe`]); the peer handles them in that order and commits
//! what arrived together in one fsync, so several items of one (sender,
//! recipient) lane may be in flight at once. Solo items (large envelopes,
//! receipts) each get a stream of their own, concurrently. An item leaves the
//! store only on the peer's ack (STORED, DUPLICATE or REFUSED), in the batch
//! of its FORWARDED audit record; RETRY, no answer, or any error puts it back
//! with a backoff step, and the backoff ends at once when the peer
//! reconnects or sends anything.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use focal_proto::pb;
use futures::StreamExt;
use futures::future::{AbortHandle, Abortable, Aborted};
use futures::stream::FuturesUnordered;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};

use super::Relaying;
use crate::core::outbox::{Cancel, ItemId, Transmit};
use crate::core::relay::Expired;
use crate::federation::LinkHandle;
use crate::rpc::now_ms;
use crate::store::payload::PayloadSource;

/// Longest sleep without a timer (a change of the store or link wakes earlier).
const IDLE: Duration = Duration::from_secs(30);

/// Most solo transfers (large envelopes, receipts) in flight to one peer at
/// once, whatever the outbox window (the peer admits 32 streams by default).
const MAX_SOLO: usize = 32;

/// The open pipelined stream: its outbox stream number and the queue of
/// items its task ([`super::pipe::run`]) writes on it.
struct Pipe {
    stream: u64,
    items: mpsc::UnboundedSender<Transmit>,
    /// Since when nothing of it is in flight.
    idle_since: Option<Instant>,
}

/// A pipelined stream with nothing in flight for this long is finished
/// (well before the peer's `stream_idle_timeout`); the next item opens a
/// new one.
const PIPE_IDLE: Duration = Duration::from_secs(5);

pub(super) async fn run(
    r: Arc<Relaying>,
    peer: String,
    link: LinkHandle,
    mut kick: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wake = r.store.outbox_changes();
    let solo_max = r.core().outbox(&peer).map_or(1, |o| o.window()).clamp(1, MAX_SOLO);
    // Transfers in flight. Shutdown does not wait for a slow peer: dropping
    // them abandons the transfers, whose items stay in the outbox (on disk)
    // and are sent again after restart (the peer answers DUPLICATE).
    // Each can be cancelled when its item is purged in flight.
    let mut flying = FuturesUnordered::new();
    let mut pipes = FuturesUnordered::new();
    let mut cancels = Cancellable::default();
    let mut pipe: Option<Pipe> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = now_ms();
        let (expired, cancelled, txs, timeout) = {
            let mut c = r.core();
            let Some(o) = c.outbox_mut(&peer) else { return };
            let cancelled: Vec<Cancel> = std::iter::from_fn(|| o.poll_cancel()).collect();
            let mut expired = Vec::new();
            while let Some(rm) = o.poll_expired(now) {
                expired.push(Expired { peer: peer.clone(), seq: rm.seq, item: rm.item });
            }
            // The transport dials by itself; this only moves the state on.
            while o.poll_dial(now) {}
            // An open pipe with nothing of it in flight for PIPE_IDLE is
            // finished (well before the peer's stream idle timeout). Only
            // then: a new stream of the same number must never run beside
            // one that still has items in flight (they could overtake them).
            if let Some(p) = &mut pipe {
                if o.in_flight_on(p.stream) > 0 {
                    p.idle_since = None;
                } else if p.idle_since.get_or_insert_with(Instant::now).elapsed() >= PIPE_IDLE {
                    pipe = None;
                }
            }
            // The outbox bounds its own window; `flying` may also hold stale
            // transfers of a lost connection, so solo transfers (each a
            // stream and a buffer) are bounded here too.
            let mut txs = Vec::new();
            let mut solo = 0;
            while flying.len() + solo < solo_max
                && let Some(t) = o.poll_transmit(now)
            {
                solo += usize::from(!t.pipelined);
                txs.push(t);
            }
            (expired, cancelled, txs, o.poll_timeout())
        };
        for c in cancelled {
            cancels.cancel(c);
            if let Cancel::Stream { stream } = c
                && pipe.as_ref().is_some_and(|p| p.stream == stream)
            {
                pipe = None;
            }
        }
        for e in expired {
            tracing::info!(seq = e.seq, "outbox item expired undelivered");
            if let Err(e) = r.store.outbox_expired(e, now).await {
                tracing::error!(error = %e, "recording an expired outbox item failed");
            }
        }
        for t in txs {
            tracing::debug!(seq = t.seq, attempt = t.attempt, item = ?t.id, "transmitting");
            let span = match &t.id {
                ItemId::Envelope { msg_id, .. } => crate::rpc::message_span("transfer_out", msg_id),
                ItemId::Receipt { .. } => tracing::Span::current(),
            };
            if let ItemId::Envelope { .. } = &t.id {
                span.in_scope(|| tracing::info!(seq = t.seq, attempt = t.attempt, "transfer to peer"));
            }
            if !t.pipelined {
                let seq = t.seq;
                let transfer = tracing::Instrument::instrument(transmit(&r, &peer, &link, t), span);
                flying.push(cancels.solo(seq, transfer));
                continue;
            }
            // The pipelined stream of this number, opened if needed (a new
            // number after a RETRY or a lost link finishes the old one).
            if pipe.as_ref().is_none_or(|p| p.stream != t.stream) {
                let (tx, rx) = mpsc::unbounded_channel();
                pipe = Some(Pipe { stream: t.stream, items: tx, idle_since: None });
                pipes.push(cancels.pipe(t.stream, super::pipe::run(&r, &peer, &link, rx)));
            }
            if let Some(p) = &pipe
                && let Err(mpsc::error::SendError(t)) = p.items.send(t)
            {
                // Its stream broke (the items behind went back to the queue,
                // and the stream number moves on): so does this one.
                answered(&r, &peer, &t, None).await;
            }
        }
        tracing::trace!(?timeout, in_flight = flying.len(), "outbox waiting");
        let idle = if pipe.is_some() { PIPE_IDLE } else { IDLE };
        let wait = timeout
            .map(|t| Duration::from_millis(t.saturating_sub(now).clamp(0, idle.as_millis() as i64) as u64))
            .unwrap_or(idle);
        tokio::select! {
            Some(done) = flying.next(), if !flying.is_empty() => cancels.solo_ended(done),
            Some(done) = pipes.next(), if !pipes.is_empty() => cancels.pipe_ended(done),
            _ = wake.changed() => {}
            _ = kick.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// The abort handles of the transfers and pipes in flight, so that a purge
/// of an item in flight (`Outbox::poll_cancel`) stops its transfer:
/// dropping it resets its QUIC stream, and the peer discards an envelope it
/// has not received whole. Solo transfers are known by seq; pipes by stream
/// number, with a serial because a pipe of one number may still be
/// finishing when the next of that number opens.
#[derive(Default)]
struct Cancellable {
    solo: HashMap<u64, AbortHandle>,
    pipes: HashMap<u64, (u64, AbortHandle)>,
    serial: u64,
}

impl Cancellable {
    /// Item `seq`'s solo transfer, abortable; it yields `seq` when it ends.
    fn solo<F: Future<Output = ()>>(
        &mut self,
        seq: u64,
        transfer: F,
    ) -> Abortable<impl Future<Output = u64> + use<F>> {
        let (abort, abortable) = abortable_yielding(seq, transfer);
        self.solo.insert(seq, abort);
        abortable
    }

    /// The pipe of `stream`, abortable; it yields its serial when it ends.
    fn pipe<F: Future<Output = ()>>(
        &mut self,
        stream: u64,
        pipe: F,
    ) -> Abortable<impl Future<Output = u64> + use<F>> {
        self.serial += 1;
        let (abort, abortable) = abortable_yielding(self.serial, pipe);
        self.pipes.insert(self.serial, (stream, abort));
        abortable
    }

    fn solo_ended(&mut self, done: Result<u64, Aborted>) {
        if let Ok(seq) = done {
            self.solo.remove(&seq);
        }
    }

    fn pipe_ended(&mut self, done: Result<u64, Aborted>) {
        if let Ok(serial) = done {
            self.pipes.remove(&serial);
        }
    }

    fn cancel(&mut self, c: Cancel) {
        match c {
            Cancel::Solo { seq } => {
                if let Some(h) = self.solo.remove(&seq) {
                    h.abort();
                }
            }
            Cancel::Stream { stream } => self.pipes.retain(|_, (on, h)| {
                if *on == stream {
                    h.abort();
                }
                *on != stream
            }),
        }
        tracing::info!(cancelled = ?c, "transfer of a purged item cancelled");
    }
}

/// `f`, abortable with the handle, yielding `id` when it ends.
fn abortable_yielding<F: Future<Output = ()>>(
    id: u64,
    f: F,
) -> (AbortHandle, Abortable<impl Future<Output = u64> + use<F>>) {
    let (abort, registration) = AbortHandle::new_pair();
    let yielding = async move {
        f.await;
        id
    };
    (abort, Abortable::new(yielding, registration))
}

pub(super) fn reader(src: PayloadSource) -> Box<dyn AsyncRead + Unpin + Send> {
    match src {
        PayloadSource::Inline { bytes, pos } => {
            let mut c = std::io::Cursor::new(bytes);
            c.set_position(pos as u64);
            Box::new(c)
        }
        PayloadSource::File(f, _) => Box::new(f),
    }
}

/// Sends one item and records the outcome.
async fn transmit(r: &Relaying, peer: &str, link: &LinkHandle, t: Transmit) {
    match send(r, peer, link, &t).await {
        Ok(s) => answered(r, peer, &t, s).await,
        Err(Gone(why)) => gone(r, peer, &t, why),
    }
}

/// Its bytes are gone (should not happen): drop it from the core.
pub(super) fn gone(r: &Relaying, peer: &str, t: &Transmit, why: String) {
    tracing::error!(seq = t.seq, why, "outbox item without stored bytes; dropped");
    if let Some(o) = r.core().outbox_mut(peer) {
        o.drop_lost(t.seq);
    }
    r.kick();
}

/// Records the peer's answer to `t` (`None`: unknown, send it again).
pub(super) async fn answered(r: &Relaying, peer: &str, t: &Transmit, status: Option<pb::TransferStatus>) {
    if let Some(deleting) = record(r, peer, t, status) {
        deleting.await;
    }
}

/// Records the peer's answer to `t` in the outbox now (`None`: unknown,
/// send it again) and wakes the sender task. For an ack, also returns the
/// store's deletion of the item with its FORWARDED record, queued now; it
/// resolves once applied (a pipelined stream awaits it beside the next
/// answers, not before them).
pub(super) fn record(
    r: &Relaying,
    peer: &str,
    t: &Transmit,
    status: Option<pb::TransferStatus>,
) -> Option<impl Future<Output = ()> + use<>> {
    let now = now_ms();
    let deleting = match status {
        Some(
            s @ (pb::TransferStatus::Stored | pb::TransferStatus::Duplicate | pb::TransferStatus::Refused),
        ) => {
            let removed = r.core().outbox_mut(peer).and_then(|o| o.handle_ack(&t.id, now));
            match removed.map(|rm| r.store.outbox_done(peer, rm, s, now)) {
                Some(Ok(done)) => Some(async move {
                    if let Err(e) = done.await {
                        // Still on disk: after a restart it is sent again
                        // and the peer answers DUPLICATE.
                        tracing::error!(error = %e, "deleting an acked outbox item failed");
                    }
                }),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "deleting an acked outbox item failed");
                    None
                }
                None => None,
            }
        }
        other => {
            tracing::debug!(seq = t.seq, attempt = t.attempt, status = ?other, "transfer not acked; backing off");
            if let Some(o) = r.core().outbox_mut(peer)
                && o.is_in_flight(t.seq, t.attempt)
            {
                o.handle_retry(&t.id, now);
            }
            None
        }
    };
    // A window slot is free, or the item is back in the queue: look again.
    r.kick();
    deleting
}

pub(super) struct Gone(pub(super) String);

/// What an item's transfer needs from the store.
pub(super) enum Load {
    /// An envelope: its stored header and payload.
    Envelope(pb::EnvelopeHeader, PayloadSource),
    /// A receipt.
    Receipt(pb::ReceiptTransfer),
    /// The store could not be read now (logged): try again later.
    Later,
}

/// Reads an item's bytes from the store. `Err(Gone)`: they are not there.
pub(super) async fn load(r: &Relaying, peer: &str, t: &Transmit) -> Result<Load, Gone> {
    let rec = match r.store.outbox_record(peer, t.seq) {
        Ok(Some(rec)) => rec,
        Ok(None) => return Err(Gone("no outbox record".into())),
        Err(e) => {
            tracing::error!(error = %e, "reading an outbox record");
            return Ok(Load::Later);
        }
    };
    match (&t.id, &rec.receipt) {
        (ItemId::Envelope { .. }, None) if rec.envelope.is_some() => {
            let Some(header) = rec.envelope_header(None) else {
                return Err(Gone("outbox record holds an envelope without a header".into()));
            };
            Ok(Load::Envelope(header, PayloadSource::from_bytes(rec.payload)))
        }
        (ItemId::Envelope { sender, msg_id }, None) => {
            let env = match r.store.stored_envelope(sender, msg_id) {
                Ok(Some(e)) => e,
                Ok(None) => return Err(Gone(format!("no stored envelope for {sender}"))),
                Err(e) => {
                    tracing::error!(error = %e, "reading a stored envelope");
                    return Ok(Load::Later);
                }
            };
            let Some(header) = rec.envelope_header(Some(&env)) else {
                return Err(Gone("outbox record holds no header, nor does its envelope".into()));
            };
            match r.store.payload(&env, 0).await {
                Ok(src) => Ok(Load::Envelope(header, src)),
                // A file that could not be opened now (too many open files,
                // an I/O error) is tried again; only a missing one is gone.
                Err(crate::RelayError::StoreIo { path, source })
                    if source.kind() != std::io::ErrorKind::NotFound =>
                {
                    tracing::error!(path = %path.display(), error = %source, "opening a payload file; trying again later");
                    Ok(Load::Later)
                }
                Err(e) => Err(Gone(format!("payload: {e}"))),
            }
        }
        (ItemId::Receipt { .. }, Some(receipt)) => Ok(Load::Receipt(receipt.clone())),
        _ => Err(Gone("record does not match its item".into())),
    }
}

/// `Ok(Some(status))` with the peer's answer, `Ok(None)` when the outcome is
/// unknown (retry).
async fn send(
    r: &Relaying,
    peer: &str,
    link: &LinkHandle,
    t: &Transmit,
) -> Result<Option<pb::TransferStatus>, Gone> {
    match load(r, peer, t).await? {
        Load::Later => Ok(None),
        Load::Envelope(header, src) => match link.send_envelope(header, reader(src)).await {
            Ok(ack) => {
                let s = ack.status();
                tracing::debug!(status = ?s, detail = ack.detail, "transfer acked");
                Ok(Some(s))
            }
            Err(e) => {
                tracing::debug!(error = %e, "transfer failed");
                Ok(None)
            }
        },
        Load::Receipt(receipt) => match link.send_receipt(receipt).await {
            Ok(ack) => {
                tracing::debug!(status = ?ack.status(), "receipt acked");
                Ok(Some(ack.status()))
            }
            Err(e) => {
                tracing::debug!(error = %e, "receipt transfer failed");
                Ok(None)
            }
        },
    }
}
