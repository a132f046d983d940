//! One task per peer: drives that peer's outbox (`poll_expired`,
//! `poll_transmit`, `poll_timeout`) and keeps up to the outbox's `window`
//! transfers in flight on the peer's link at once, each on its own QUIC
//! stream, polling for more whenever one ends or the outbox changes. The
//! outbox never has two items of one (sender, recipient) lane in flight, so
//! per (sender, recipient) order holds at every hop while the peer's store
//! writer commits the concurrent transfers in one fsync. An item leaves the
//! store only on the peer's ack (STORED, DUPLICATE or REFUSED), in the batch
//! of its FORWARDED audit record; RETRY or any error puts it back with a
//! backoff step, and the backoff ends at once when the peer reconnects or
//! sends anything.

use std::sync::Arc;
use std::time::Duration;

use focal_proto::pb;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::AsyncRead;
use tokio::sync::watch;

use super::Relaying;
use crate::core::outbox::{ItemId, Transmit};
use crate::core::relay::Expired;
use crate::federation::LinkHandle;
use crate::rpc::now_ms;
use crate::store::payload::PayloadSource;

/// Longest sleep without a timer (a change of the store or link wakes earlier).
const IDLE: Duration = Duration::from_secs(30);

pub(super) async fn run(
    r: Arc<Relaying>,
    peer: String,
    link: LinkHandle,
    mut kick: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wake = r.store.outbox_changes();
    let window = r.core().outbox(&peer).map_or(1, |o| o.window()).max(1);
    // Transfers in flight. Shutdown does not wait for a slow peer: dropping
    // them abandons the transfers, whose items stay in the outbox (on disk)
    // and are sent again after restart (the peer answers DUPLICATE).
    let mut flying = FuturesUnordered::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let now = now_ms();
        let (expired, txs, timeout) = {
            let mut c = r.core();
            let Some(o) = c.outbox_mut(&peer) else { return };
            let mut expired = Vec::new();
            while let Some(rm) = o.poll_expired(now) {
                expired.push(Expired { peer: peer.clone(), seq: rm.seq, item: rm.item });
            }
            // The transport dials by itself; this only moves the state on.
            while o.poll_dial(now) {}
            // The outbox bounds its own window; `flying` may also hold stale
            // transfers of a lost connection, so bound it by the window too.
            let mut txs = Vec::new();
            while flying.len() + txs.len() < window
                && let Some(t) = o.poll_transmit(now)
            {
                txs.push(t);
            }
            (expired, txs, o.poll_timeout())
        };
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
            flying.push(tracing::Instrument::instrument(transmit(&r, &peer, &link, t), span));
        }
        tracing::trace!(?timeout, in_flight = flying.len(), "outbox waiting");
        let wait = timeout
            .map(|t| Duration::from_millis(t.saturating_sub(now).clamp(0, IDLE.as_millis() as i64) as u64))
            .unwrap_or(IDLE);
        tokio::select! {
            Some(()) = flying.next(), if !flying.is_empty() => {}
            _ = wake.changed() => {}
            _ = kick.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

fn reader(src: PayloadSource) -> Box<dyn AsyncRead + Unpin + Send> {
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
    let status = match send(r, peer, link, &t).await {
        Ok(s) => s,
        Err(Gone(why)) => {
            // Its bytes are gone (should not happen): drop it from the core.
            tracing::error!(seq = t.seq, why, "outbox item without stored bytes; dropped");
            if let Some(o) = r.core().outbox_mut(peer) {
                o.purge(t.seq);
            }
            return;
        }
    };
    let now = now_ms();
    match status {
        Some(
            s @ (pb::TransferStatus::Stored | pb::TransferStatus::Duplicate | pb::TransferStatus::Refused),
        ) => {
            let removed = r.core().outbox_mut(peer).and_then(|o| o.handle_ack(&t.id, now));
            if let Some(removed) = removed
                && let Err(e) = r.store.outbox_done(peer, removed, s, now).await
            {
                // Still on disk: after a restart it is sent again and the
                // peer answers DUPLICATE.
                tracing::error!(error = %e, "deleting an acked outbox item failed");
            }
        }
        other => {
            tracing::debug!(seq = t.seq, attempt = t.attempt, status = ?other, "transfer not acked; backing off");
            if let Some(o) = r.core().outbox_mut(peer)
                && o.is_in_flight(t.seq, t.attempt)
            {
                o.handle_retry(&t.id, now);
            }
        }
    }
}

struct Gone(String);

/// `Ok(Some(status))` with the peer's answer, `Ok(None)` when the outcome is
/// unknown (retry).
async fn send(
    r: &Relaying,
    peer: &str,
    link: &LinkHandle,
    t: &Transmit,
) -> Result<Option<pb::TransferStatus>, Gone> {
    let rec = match r.store.outbox_record(peer, t.seq) {
        Ok(Some(rec)) => rec,
        Ok(None) => return Err(Gone("no outbox record".into())),
        Err(e) => {
            tracing::error!(error = %e, "reading an outbox record");
            return Ok(None);
        }
    };
    match (&t.id, rec.header, rec.receipt) {
        (ItemId::Envelope { sender, msg_id }, Some(header), _) => {
            let env = match r.store.stored_envelope(sender, msg_id) {
                Ok(Some(e)) => e,
                Ok(None) => return Err(Gone(format!("no stored envelope for {sender}"))),
                Err(e) => {
                    tracing::error!(error = %e, "reading a stored envelope");
                    return Ok(None);
                }
            };
            let src = match r.store.payload(&env, 0).await {
                Ok(s) => s,
                Err(e) => return Err(Gone(format!("payload: {e}"))),
            };
            match link.send_envelope(header, reader(src)).await {
                Ok(ack) => {
                    let s = ack.status();
                    tracing::debug!(msg_id = %hex::encode(msg_id), status = ?s, detail = ack.detail, "transfer acked");
                    Ok(Some(s))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "transfer failed");
                    Ok(None)
                }
            }
        }
        (ItemId::Receipt { .. }, _, Some(receipt)) => match link.send_receipt(receipt).await {
            Ok(ack) => {
                tracing::debug!(status = ?ack.status(), "receipt acked");
                Ok(Some(ack.status()))
            }
            Err(e) => {
                tracing::debug!(error = %e, "receipt transfer failed");
                Ok(None)
            }
        },
        _ => Err(Gone("record does not match its item".into())),
    }
}
