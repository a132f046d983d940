//! Retention (`[retention]` of the relay config, see
//! [`crate::config::retention`]) applied to the store, on top of each
//! message's own `expires_at`:
//!
//! - **undelivered**: a message that has waited longer than
//!   `retention.undelivered` in a local mailbox (since it reached this relay)
//!   or in an outbox to a peer (since it was queued) leaves it as if it had
//!   expired: the sender gets an EXPIRED receipt signed by this relay and the
//!   relay appends a RETENTION_PURGED audit record. Its payload goes with the
//!   last mailbox or outbox copy. An escalation copy held for an alternate
//!   (`store::casework`) longer than that, counted from when the relay
//!   started holding it, leaves the same way (its own RETENTION_PURGED
//!   record naming `held:<alternate>`, an EXPIRED receipt for the
//!   alternate's copy). The (sender, msg id) dedup entry stays
//!   until the message's own `expires_at`, so a replay is still refused.
//! - **delivered**: what remains after delivery. Acked bodies leave the
//!   store at the ack already; receipts stored for members (`r/`) are
//!   removed once older than `retention.delivered`, with one
//!   RETENTION_PURGED summary record per pass.
//!
//! Audit log entries (`a/`) are never touched. The candidates are found by
//! reads outside the writer ([`Store::apply_retention`]); the writer checks
//! each again and stages its removal with its audit record in one batch.

use focal_proto::pb;

use super::Store;
use super::audit_seam::AuditSeam;
use super::casework;
use super::fed::{OutboxRecord, item_record, release_record};
use super::keys;
use super::ops::{Ctx, OpResult, settle_envelope, store_receipt, take_from_mailbox};
use super::records::{MailboxEntry, StoredEnvelope, decode, stage_or_log};
use super::writer::{After, Op, Reply, Staged};
use crate::RelayError;
use crate::config::retention::RetentionPolicy;
use crate::core::RelayCore;
use crate::core::escalation::Held;
use crate::core::outbox::ItemId;

/// What one retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Messages purged from mailboxes undelivered (one per recipient copy).
    pub mailbox: usize,
    /// Envelope copies purged from outboxes undelivered.
    pub outbox: usize,
    /// Escalation copies held for an alternate, purged undelivered.
    pub held: usize,
    /// Receipts removed after `retention.delivered`.
    pub receipts: usize,
    /// True when a candidate list hit the pass limit (more may be due).
    pub more: bool,
}

/// Candidates for the writer, found by reads.
#[derive(Debug)]
pub(crate) struct RetentionRequest {
    now_ms: i64,
    policy: RetentionPolicy,
    /// (mailbox address, msgkey).
    mailbox: Vec<(String, Vec<u8>)>,
    /// (peer, seq).
    outbox: Vec<(String, u64)>,
    /// Held escalation copies.
    held: Vec<Held>,
    /// `r/` keys.
    receipts: Vec<Vec<u8>>,
}

impl Store {
    /// Applies `policy` at `now_ms`: finds up to `limit` due items of each
    /// sort and removes them in one audited batch (see the module docs).
    pub async fn apply_retention(
        &self,
        policy: RetentionPolicy,
        now_ms: i64,
        limit: usize,
    ) -> Result<RetentionReport, RelayError> {
        let mut req = RetentionRequest {
            now_ms,
            policy,
            mailbox: vec![],
            outbox: vec![],
            held: vec![],
            receipts: vec![],
        };
        if let Some(ms) = policy.undelivered_ms {
            let cutoff = now_ms.saturating_sub(ms);
            req.mailbox = self.old_mailbox_entries(cutoff, limit)?;
            req.outbox = self.old_outbox_items(cutoff, limit)?;
            req.held = casework::held_copies(self.tree(), None, usize::MAX)?
                .into_iter()
                .filter(|h| h.held_at_ms <= cutoff)
                .take(limit)
                .collect();
        }
        if let Some(ms) = policy.delivered_ms {
            req.receipts = self.old_receipts(now_ms.saturating_sub(ms), limit)?;
        }
        let sizes = [req.mailbox.len(), req.outbox.len(), req.held.len(), req.receipts.len()];
        let more = sizes.iter().any(|n| *n >= limit);
        if sizes.iter().all(|n| *n == 0) {
            return Ok(RetentionReport::default());
        }
        match self.submit(Op::Retention(Box::new(req))).await? {
            Reply::Retention(r) => Ok(RetentionReport { more, ..r }),
            other => Err(RelayError::Other(format!("writer answered {other:?} to retention"))),
        }
    }

    fn old_mailbox_entries(&self, cutoff: i64, limit: usize) -> Result<Vec<(String, Vec<u8>)>, RelayError> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(keys::MAILBOX) {
            let (k, v) = kv.map_err(RelayError::sled("scanning mailboxes"))?;
            let entry: MailboxEntry = decode(&k, &v)?;
            if entry.received_at_ms > cutoff {
                continue;
            }
            let rest = &k[keys::MAILBOX.len()..];
            let Some(nul) = rest.iter().position(|b| *b == 0) else { continue };
            out.push((String::from_utf8_lossy(&rest[..nul]).into_owned(), entry.msg_key));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn old_outbox_items(&self, cutoff: i64, limit: usize) -> Result<Vec<(String, u64)>, RelayError> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(keys::OUTBOX) {
            let (k, v) = kv.map_err(RelayError::sled("scanning outboxes"))?;
            let item = decode::<OutboxRecord>(&k, &v)?.item()?;
            if item.queued_at_ms > cutoff || !matches!(item.id, ItemId::Envelope { .. }) {
                continue;
            }
            if let Some(ps) = keys::split_outbox(&k) {
                out.push(ps);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn old_receipts(&self, cutoff: i64, limit: usize) -> Result<Vec<Vec<u8>>, RelayError> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(keys::RECEIPTS) {
            let (k, _) = kv.map_err(RelayError::sled("scanning receipts"))?;
            if receipt_time(&k).is_some_and(|t| t <= cutoff) {
                out.push(k.to_vec());
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// at_ms of an `r/<address>\0<at_ms BE><id>` key.
fn receipt_time(key: &[u8]) -> Option<i64> {
    let rest = key.strip_prefix(keys::RECEIPTS)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    Some(keys::u64_be(rest.get(nul + 1..nul + 9)?)? as i64)
}

fn secs(ms: Option<i64>) -> i64 {
    ms.unwrap_or(0) / 1000
}

/// The writer's side of [`Store::apply_retention`].
pub(super) fn apply(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    mut core: Option<&mut RelayCore>,
    req: RetentionRequest,
    after: &mut After,
) -> OpResult {
    let mut report = RetentionReport::default();
    let undelivered = secs(req.policy.undelivered_ms);
    if let Some(ms) = req.policy.undelivered_ms {
        let cutoff = req.now_ms.saturating_sub(ms);
        for (addr, mk) in &req.mailbox {
            if purge_mailbox_copy(
                st,
                audit,
                ctx,
                core.as_deref_mut(),
                addr,
                mk,
                cutoff,
                undelivered,
                req.now_ms,
                after,
            )? {
                report.mailbox += 1;
            }
        }
        for h in &req.held {
            if purge_held_copy(
                st,
                audit,
                ctx,
                core.as_deref_mut(),
                h,
                cutoff,
                undelivered,
                req.now_ms,
                after,
            )? {
                report.held += 1;
            }
        }
        if let Some(core) = core {
            for (peer, seq) in &req.outbox {
                if purge_outbox_copy(
                    st,
                    audit,
                    ctx,
                    core,
                    peer,
                    *seq,
                    cutoff,
                    undelivered,
                    req.now_ms,
                    after,
                )? {
                    report.outbox += 1;
                }
            }
        }
    }
    if let Some(ms) = req.policy.delivered_ms {
        let cutoff = req.now_ms.saturating_sub(ms);
        for k in req.receipts {
            if st.removed(&k) || receipt_time(&k).is_none_or(|t| t > cutoff) || st.get(&k)?.is_none() {
                continue;
            }
            st.remove(k);
            report.receipts += 1;
        }
        if report.receipts > 0 {
            let record = pb::AuditRecord {
                version: 1,
                kind: pb::AuditKind::RetentionPurged as i32,
                time_ms: req.now_ms,
                peer: ctx.relay_uri.clone(),
                detail: format!(
                    "delivered retention ({}s): {} stored receipts removed",
                    secs(Some(ms)),
                    report.receipts
                ),
                ..Default::default()
            };
            st.audit(audit, &record)?;
        }
    }
    Ok(Ok(Reply::Retention(report)))
}

/// Removes `addr`'s copy of `mk` if it still waits since `cutoff` or
/// earlier: RETENTION_PURGED record, EXPIRED receipt to the sender.
#[allow(clippy::too_many_arguments)]
fn purge_mailbox_copy(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: Option<&mut RelayCore>,
    addr: &str,
    mk: &[u8],
    cutoff: i64,
    undelivered_secs: i64,
    now_ms: i64,
    after: &mut After,
) -> Result<bool, super::ops::Fatal> {
    let ikey = keys::mailbox_index(addr, mk);
    let Some(seq) = st.get(&ikey)? else { return Ok(false) };
    let Some(seq) = keys::u64_be(&seq) else { return Ok(false) };
    let slot = keys::mailbox(addr, seq);
    let Some(v) = st.get(&slot)? else { return Ok(false) };
    if decode::<MailboxEntry>(&slot, &v)?.received_at_ms > cutoff {
        return Ok(false);
    }
    let Some(env) = take_from_mailbox(st, addr, mk)? else {
        // An entry without its envelope: nothing to tell anyone.
        return Ok(true);
    };
    let digest = env.payload_digest();
    let record = pb::AuditRecord {
        recipients: vec![addr.to_owned()],
        peer: format!("mailbox:{addr}"),
        hop: env.header.as_ref().map(|h| h.hops.len() as u32).unwrap_or(0),
        reason: pb::RefusalReason::Expired as i32,
        detail: format!("undelivered retention ({undelivered_secs}s) in the mailbox"),
        ..env.audit_record(pb::AuditKind::RetentionPurged, now_ms)
    };
    stage_or_log(st, audit, &record, "retention purge of a mailbox copy")?;
    let body = expired_body(ctx, &env, addr, &digest, undelivered_secs, "mailbox", now_ms);
    let receipt = (ctx.signer)(&body);
    store_receipt(st, ctx, core, &env.sender, &receipt, now_ms, after)?;
    settle_envelope(st, mk, env, after);
    Ok(true)
}

/// Removes held escalation copy `h` if it is still held since `cutoff` or
/// earlier: RETENTION_PURGED record, EXPIRED receipt to the sender.
#[allow(clippy::too_many_arguments)]
fn purge_held_copy(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: Option<&mut RelayCore>,
    h: &Held,
    cutoff: i64,
    undelivered_secs: i64,
    now_ms: i64,
    after: &mut After,
) -> Result<bool, super::ops::Fatal> {
    let (alt, sender) = (h.alternate.to_string(), h.sender.to_string());
    let Some(h) = casework::held_copy(st, &alt, &sender, &h.msg_id)? else { return Ok(false) };
    if h.held_at_ms > cutoff {
        return Ok(false);
    }
    let mk = keys::msg_key(&sender, &h.msg_id);
    let ekey = keys::envelope(&mk);
    let mut env: Option<StoredEnvelope> = match st.get(&ekey)? {
        Some(v) => Some(decode(&ekey, &v)?),
        None => None,
    };
    let mut core = core;
    casework::drop_held(st, core.as_deref_mut(), &h, env.as_mut());
    let Some(env) = env else {
        // A held copy without its envelope: nothing to tell anyone.
        return Ok(true);
    };
    let d = format!("undelivered retention ({undelivered_secs}s) while held for escalation to {alt}");
    let record = pb::AuditRecord {
        reason: pb::RefusalReason::Expired as i32,
        ..casework::record(&env, pb::AuditKind::RetentionPurged, now_ms, &h, format!("held:{alt}"), d)
    };
    stage_or_log(st, audit, &record, "retention purge of a held escalation copy")?;
    let place = format!("escalation hold for {alt}");
    let body = expired_body(ctx, &env, &alt, &env.payload_digest(), undelivered_secs, &place, now_ms);
    let receipt = (ctx.signer)(&body);
    store_receipt(st, ctx, core, &sender, &receipt, now_ms, after)?;
    settle_envelope(st, &mk, env, after);
    Ok(true)
}

/// Removes outbox item `peer`/`seq` if it was queued at `cutoff` or
/// earlier: RETENTION_PURGED record, EXPIRED receipts to the sender.
#[allow(clippy::too_many_arguments)]
fn purge_outbox_copy(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: &mut RelayCore,
    peer: &str,
    seq: u64,
    cutoff: i64,
    undelivered_secs: i64,
    now_ms: i64,
    after: &mut After,
) -> Result<bool, super::ops::Fatal> {
    let okey = keys::outbox(peer, seq);
    let Some(v) = st.get(&okey)? else { return Ok(false) };
    let record = decode::<OutboxRecord>(&okey, &v)?;
    let item = record.item()?;
    if item.queued_at_ms > cutoff {
        return Ok(false);
    }
    let ItemId::Envelope { sender, msg_id } = item.id.clone() else { return Ok(false) };
    // The core forgets it first; one in flight has its transfer cancelled
    // (the sender task is woken after the batch), and a late ack finds nothing.
    if let Some(o) = core.outbox_mut(peer) {
        st.wake |= o.purge(seq).is_some_and(|p| p.cancel.is_some());
    }
    let env = release_record(st, &item, peer, seq, Some(record), after)?.envelope;
    if let Some(mut r) = item_record(env.as_ref(), &item, pb::AuditKind::RetentionPurged, peer, now_ms) {
        r.reason = pb::RefusalReason::Expired as i32;
        r.detail = format!("undelivered retention ({undelivered_secs}s) in the outbox for {peer}");
        st.audit(audit, &r)?;
    }
    let digest =
        env.as_ref().and_then(|e| e.header.as_ref()).map(|h| h.payload_sha256.clone()).unwrap_or_default();
    let shell = StoredEnvelope { msg_id: msg_id.to_vec(), sender: sender.to_string(), ..Default::default() };
    for rcpt in &item.recipients {
        let place = format!("outbox for {peer}");
        let body = expired_body(ctx, &shell, &rcpt.to_string(), &digest, undelivered_secs, &place, now_ms);
        let receipt = (ctx.signer)(&body);
        store_receipt(st, ctx, Some(&mut *core), &shell.sender, &receipt, now_ms, after)?;
    }
    Ok(true)
}

fn expired_body(
    ctx: &Ctx,
    env: &StoredEnvelope,
    subject: &str,
    digest: &[u8],
    undelivered_secs: i64,
    place: &str,
    now_ms: i64,
) -> pb::ReceiptBody {
    pb::ReceiptBody {
        version: 1,
        msg_id: env.msg_id.clone(),
        original_sender: env.sender.clone(),
        subject: subject.to_owned(),
        kind: pb::ReceiptKind::Expired as i32,
        reason: pb::RefusalReason::Expired as i32,
        detail: format!(
            "expired undelivered in the {place} at {}: the network keeps undelivered messages {undelivered_secs}s",
            ctx.relay_uri
        ),
        at_ms: now_ms,
        signer: ctx.relay_uri.clone(),
        payload_sha256: digest.to_vec(),
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
