//! The operator's view of and action on PEER outboxes (federation copies
//! waiting for a peer relay): the clear header fields of queued items for
//! `Admin.ListQueue`, and the audited purge of one item by (peer, seq) for
//! `Admin.Purge`.
//!
//! A purge is applied by the single writer with the relay core locked, like
//! every other outbox change (see `store::fed`): the item's `o/` key goes,
//! the envelope's `forwards` mark is released (its payload deleted when
//! nothing else needs it), a PURGED audit record naming the admin and the
//! item is written, all in one batch, and only then is the item dropped
//! from the core's [`Outbox`](crate::core::outbox::Outbox). A batch that
//! fails leaves the core untouched; after a restart the core is restored
//! from the `o/` keys, so a purged item never comes back. Only an expired
//! item is purged unless the request says `force` (the audit record then
//! says "forced before expiry"). An item in flight to the peer has its
//! transfer cancelled (the core queues the cancel, the peer's sender task
//! resets the stream after the batch): the peer keeps a copy only if it had
//! already received all of it, and the audit record and the answer say the
//! item was in flight. No receipt is sent to the original sender:
//! the purge is an operator's decision recorded in the audit log.

use focal_proto::{Address, pb};
use prost::Message;

use super::Store;
use super::audit_seam::AuditSeam;
use super::fed::{item_record, release_copy};
use super::ops::OpResult;
use super::writer::{After, Op, Reply, Staged};
use crate::RelayError;
use crate::core::RelayCore;
use crate::core::outbox::{ItemId, OutboxItem};

/// What [`Store::purge_outbox`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxPurged {
    /// Index of the PURGED audit record.
    pub leaf: u64,
    /// The item was in flight to the peer: its transfer is being cancelled
    /// (the peer keeps a copy only if it had received all of it already).
    pub was_in_flight: bool,
}

/// Remove one item from a peer's outbox (`Admin.Purge` with `peer:<name>`).
#[derive(Debug)]
pub struct OutboxPurgeRequest {
    /// Configured peer name.
    pub peer: String,
    /// The item's number in that outbox.
    pub seq: u64,
    /// If set, the item must be an envelope copy from this sender.
    pub sender: Option<Address>,
    /// If set, the item must carry this msg id.
    pub msg_id: Option<[u8; 16]>,
    /// Purge even though it has not expired.
    pub force: bool,
    /// Who asked (admin identity URI), for the audit record.
    pub by: String,
    /// Relay clock.
    pub now_ms: i64,
}

impl Store {
    /// Purges one peer-outbox item with a PURGED audit record.
    /// NOT_FOUND-like [`RelayError::NotQueued`] when the item is not there
    /// or does not match `sender`/`msg_id`, [`RelayError::NotExpired`] when
    /// it is live and `force` is not set.
    pub async fn purge_outbox(&self, req: OutboxPurgeRequest) -> Result<OutboxPurged, RelayError> {
        match self.submit(Op::PurgeOutbox(Box::new(req))).await? {
            Reply::OutboxPurged(p) => Ok(p),
            other => Err(RelayError::Other(format!("writer answered {other:?} to an outbox purge"))),
        }
    }

    /// The clear header fields of `items` of `peer`'s outbox (as listed by
    /// the core: seq, metadata, attempts), for `Admin.ListQueue`.
    pub fn outbox_queue_items(&self, peer: &str, items: &[(u64, OutboxItem, u32)]) -> Vec<pb::QueueItem> {
        items
            .iter()
            .map(|(seq, item, attempts)| {
                let rec = self.outbox_record(peer, *seq).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, peer, seq, "reading an outbox record for the queue listing");
                    None
                });
                let header = rec.as_ref().and_then(|r| {
                    let env = match &item.id {
                        ItemId::Envelope { sender, msg_id } if r.needs_stored_envelope() => {
                            self.stored_envelope(sender, msg_id).ok().flatten()
                        }
                        _ => None,
                    };
                    r.envelope_header(env.as_ref())
                });
                let (kind, msg_id, sender) = match &item.id {
                    ItemId::Envelope { sender, msg_id } => ("envelope", msg_id.to_vec(), sender.to_string()),
                    ItemId::Receipt { .. } => {
                        let body = rec.as_ref().and_then(receipt_body);
                        (
                            "receipt",
                            body.as_ref().map(|b| b.msg_id.clone()).unwrap_or_default(),
                            body.map(|b| b.signer).unwrap_or_default(),
                        )
                    }
                };
                pb::QueueItem {
                    queue: format!("peer:{peer}"),
                    size: header.as_ref().map(|h| h.payload_size).unwrap_or(0),
                    header,
                    queued_at_ms: item.queued_at_ms,
                    attempts: *attempts,
                    seq: *seq,
                    msg_id,
                    sender,
                    recipients: item.recipients.iter().map(|a| a.to_string()).collect(),
                    kind: kind.into(),
                    priority: if item.urgent { "urgent" } else { "normal" }.into(),
                    expires_at_ms: item.expires_at_ms,
                    ..Default::default()
                }
            })
            .collect()
    }
}

fn receipt_body(rec: &super::fed::OutboxRecord) -> Option<pb::ReceiptBody> {
    let signed = rec.receipt.as_ref()?.receipt.as_ref()?.signed.as_ref()?;
    pb::ReceiptBody::decode(signed.body.as_slice()).ok()
}

/// The writer's side of [`Store::purge_outbox`].
pub(super) fn purge_outbox(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    core: Option<&mut RelayCore>,
    req: OutboxPurgeRequest,
    after: &mut After,
) -> OpResult {
    let Some(core) = core else {
        return Ok(Err(RelayError::Other("federation is not running on this relay".into())));
    };
    let OutboxPurgeRequest { peer, seq, sender, msg_id, force, by, now_ms } = req;
    let queue = format!("peer:{peer}");
    let not_queued = |detail: String| Ok(Err(RelayError::NotQueued { queue: queue.clone(), seq, detail }));
    let Some(outbox) = core.outbox(&peer) else { return not_queued("no such outbox".into()) };
    let Some(item) = outbox.get(seq).cloned() else { return not_queued("no such item".into()) };
    if sender.is_some() || msg_id.is_some() {
        let ItemId::Envelope { sender: s, msg_id: m } = &item.id else {
            return not_queued("it is a receipt, not a message".into());
        };
        if sender.as_ref().is_some_and(|x| x != s) || msg_id.as_ref().is_some_and(|x| x != m) {
            return not_queued(format!("it holds message {} from {s}", hex::encode(m)));
        }
    }
    let expired = item.expires_at_ms <= now_ms;
    let was_in_flight = outbox.is_in_flight_any(seq);
    let what = match &item.id {
        ItemId::Envelope { sender, msg_id } => {
            format!("message {} from {sender} in {queue} (seq {seq})", hex::encode(msg_id))
        }
        ItemId::Receipt { id } => format!("receipt {} in {queue} (seq {seq})", hex::encode(id)),
    };
    if !expired && !force {
        return Ok(Err(RelayError::NotExpired { what, expires_at_ms: item.expires_at_ms, now_ms }));
    }
    let released = release_copy(st, &item, &peer, seq, after)?;
    let (rec, env) = (released.record, released.envelope);
    let mut record =
        item_record(env.as_ref(), &item, pb::AuditKind::Purged, &peer, now_ms).unwrap_or_else(|| {
            let body = rec.as_ref().and_then(receipt_body);
            pb::AuditRecord {
                version: 1,
                kind: pb::AuditKind::Purged as i32,
                time_ms: now_ms,
                msg_id: body.as_ref().map(|b| b.msg_id.clone()).filter(|m| m.len() == 16).unwrap_or_default(),
                sender: body.map(|b| b.signer).unwrap_or_default(),
                ..Default::default()
            }
        });
    record.peer = by.clone();
    if expired {
        record.reason = pb::RefusalReason::Expired as i32;
    }
    record.detail = format!(
        "purged from {queue} (seq {seq}) by {by}{}{}",
        if expired { "" } else { ", forced before expiry" },
        if was_in_flight { "; it was in flight: its transfer was cancelled" } else { "" }
    );
    let leaf = st.audit(audit, &record)?;
    if let Some(o) = core.outbox_mut(&peer) {
        // Wake the sender task after the batch to cancel the transfer.
        st.wake |= o.purge(seq).is_some_and(|p| p.cancel.is_some());
    }
    tracing::info!(%what, by = %by, forced = !expired, was_in_flight, "purged");
    Ok(Ok(Reply::OutboxPurged(OutboxPurged { leaf, was_in_flight })))
}
