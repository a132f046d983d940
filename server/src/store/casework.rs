//! Store side of case work (issue 6): escalation copies held out of an
//! alternate's inbox, and the broadcast policy of the recipient network.
//! The decisions are the relay core's ([`crate::core::escalation`],
//! [`crate::core::broadcast`]); this file stages them in the writer's batch
//! with their audit records, like every other change.
//!
//! Keys: `h/<alternate>\0<msgkey>` holds a held copy ([`Held`], JSON). The
//! alternate is listed in the stored envelope's `pending` (so the envelope
//! and payload stay) but has no mailbox slot until the copy is released.
//!
//! - Holding ([`screen_local`], from `fed::route`): a local recipient that
//!   the signed context marks as the escalation alternate of a primary is
//!   held (the pair must match this relay's rule, else REFUSED receipt).
//! - Cancelling ([`on_ack`], from the Ack operation): a primary's ack
//!   withdraws it from the copies held for it, audited
//!   ESCALATION_CANCELLED; a copy left waiting for nobody is dropped.
//! - Releasing ([`release_due`], `Op::EscalateDue`, driven by a ticker that
//!   asks the core's timer): into the alternate's inbox, audited ESCALATED,
//!   and a relay-signed ESCALATED receipt to the sender. A copy whose
//!   message expired or was purged meanwhile is just forgotten.
//! - At start, [`load`] gives the core every held copy (timers survive a
//!   restart; one due while the relay was down is released at once).
//! - Removing ([`drop_held`]): a held copy also leaves by the message's
//!   expiry (with it, in its EXPIRED record), by retention
//!   (RETENTION_PURGED, see `store::retention`) and by `Admin.Purge`
//!   (PURGED, see `store::admin`): its key goes, the core forgets its timer
//!   and the alternate leaves the envelope's `pending`, in the same batch
//!   as the audit record. `Admin.ListQueue` lists held copies as queue
//!   `held:<alternate>` ([`held_copies`]) and the metrics count them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use focal_proto::{Address, NetworkId, pb};
use prost::Message;
use tokio::sync::mpsc;

use super::audit_seam::AuditSeam;
use super::keys;
use super::ops::{Ctx, Fatal, OpResult, put_in_mailboxes, store_receipt};
use super::records::{StoredEnvelope, decode, stage_or_log};
use super::writer::{After, Msg, Op, Reply, Staged};
use crate::RelayError;
use crate::core::escalation::{Held, Withdrawn, escalations_of};
use crate::core::{Refusal, RelayCore};

/// Held escalation copies: `h/<alternate>\0<msgkey>`.
pub(crate) const HELD: &[u8] = b"h/";

/// Most held copies released in one operation (the rest in the next).
const RELEASE_BATCH: usize = 256;

/// How often the ticker asks the core whether a held copy is due.
const TICK: Duration = Duration::from_millis(200);

pub(super) fn held_key(
    alternate: &impl std::fmt::Display,
    sender: &impl std::fmt::Display,
    msg_id: &[u8; 16],
) -> Vec<u8> {
    let mk = keys::msg_key(&sender.to_string(), msg_id);
    let mut k = HELD.to_vec();
    k.extend_from_slice(alternate.to_string().as_bytes());
    k.push(0);
    k.extend_from_slice(&mk);
    k
}

/// Every persisted held copy (restored into the core at start).
pub(crate) fn load(tree: &sled::Tree) -> Result<Vec<Held>, RelayError> {
    let mut out = Vec::new();
    for kv in tree.scan_prefix(HELD) {
        let (k, v) = kv.map_err(RelayError::sled("scanning held escalation copies"))?;
        let h: Held = serde_json::from_slice(&v)
            .map_err(|e| RelayError::Corrupt { key: keys::show(&k), detail: e.to_string() })?;
        out.push(h);
    }
    Ok(out)
}

/// Up to `limit` held copies (of `alternate` only, if given), in key order.
pub(crate) fn held_copies(
    tree: &sled::Tree,
    alternate: Option<&Address>,
    limit: usize,
) -> Result<Vec<Held>, RelayError> {
    let prefix = match alternate {
        Some(a) => [HELD, a.to_string().as_bytes(), &[0]].concat(),
        None => HELD.to_vec(),
    };
    let mut out = Vec::new();
    for kv in tree.scan_prefix(prefix).take(limit) {
        let (k, v) = kv.map_err(RelayError::sled("scanning held escalation copies"))?;
        out.push(
            serde_json::from_slice(&v)
                .map_err(|e| RelayError::Corrupt { key: keys::show(&k), detail: e.to_string() })?,
        );
    }
    Ok(out)
}

/// The held copy of message (sender, msg id) for `alternate`, as staged.
pub(super) fn held_copy(
    st: &Staged<'_>,
    alternate: &str,
    sender: &str,
    msg_id: &[u8; 16],
) -> Result<Option<Held>, RelayError> {
    let k = held_key(&alternate, &sender, msg_id);
    let Some(v) = st.get(&k)? else { return Ok(None) };
    serde_json::from_slice(&v)
        .map(Some)
        .map_err(|e| RelayError::Corrupt { key: keys::show(&k), detail: e.to_string() })
}

/// The held copies of message (sender, msg id) that wait for `primary`
/// (the alternates are among the envelope's `pending`).
pub(super) fn held_for_primary(
    st: &Staged<'_>,
    env: &StoredEnvelope,
    primary: &Address,
) -> Result<Vec<Held>, RelayError> {
    let Ok(msg_id) = <[u8; 16]>::try_from(env.msg_id.as_slice()) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for alt in &env.pending {
        if let Some(h) = held_copy(st, alt, &env.sender, &msg_id)?
            && h.waits_for(primary)
        {
            out.push(h);
        }
    }
    Ok(out)
}

/// Stores held copy `h` (new, or waiting for other primaries now).
fn put_held(st: &mut Staged<'_>, h: &Held) {
    let v = serde_json::to_vec(h).expect("held copies serialise");
    st.insert(held_key(&h.alternate, &h.sender, &h.msg_id), v);
}

/// Stops holding `h`: its `h/` key goes, the core forgets its timer, and
/// the alternate leaves `env.pending` (the caller audits, then settles the
/// envelope with `ops::settle_envelope`).
pub(super) fn drop_held(
    st: &mut Staged<'_>,
    core: Option<&mut RelayCore>,
    h: &Held,
    env: Option<&mut StoredEnvelope>,
) {
    st.remove(held_key(&h.alternate, &h.sender, &h.msg_id));
    if let Some(core) = core {
        core.escalations_mut().forget(&h.sender, &h.msg_id, &h.alternate);
    }
    if let Some(env) = env {
        let alt = h.alternate.to_string();
        env.pending.retain(|p| *p != alt);
    }
}

/// Decides, for the local recipients of an envelope copy, what broadcast
/// policy refuses (moved to `refused`) and which are escalation copies to
/// hold (removed from `local`, persisted, returned).
#[allow(clippy::too_many_arguments)]
pub(super) fn screen_local(
    st: &mut Staged<'_>,
    core: &mut RelayCore,
    header: &pb::EnvelopeHeader,
    sender: &Address,
    msg_id: [u8; 16],
    now_ms: i64,
    local: &mut Vec<Address>,
    refused: &mut Vec<(Address, Refusal)>,
) -> Result<Vec<Address>, Fatal> {
    // The context was verified by whoever built the request.
    let Ok(ctx) = pb::Context::decode(header.context.as_slice()) else { return Ok(Vec::new()) };
    if !ctx.broadcast_network.is_empty()
        && let Ok(target) = NetworkId::new(&ctx.broadcast_network)
        && let Err(r) = core.broadcast().check_receive(sender, &target)
    {
        refused.extend(local.drain(..).map(|a| (a, r.clone())));
        return Ok(Vec::new());
    }
    // Malformed pairs were refused by the sender's relay; a relay on the
    // way that let one through gets no hold for it.
    let pairs = escalations_of(&ctx).unwrap_or_else(|r| {
        tracing::warn!(refusal = %r, "ignoring malformed escalation pairs");
        Vec::new()
    });
    // One copy per alternate, waiting for each primary that names it; its
    // share is refused only if no pair for it is valid.
    let mut alternates: Vec<&Address> = pairs.iter().map(|(_, a)| a).collect();
    alternates.sort();
    alternates.dedup();
    let mut held = Vec::new();
    for alternate in alternates {
        let Some(i) = local.iter().position(|a| a == alternate) else { continue };
        let mut copy = None;
        let mut refusal = None;
        for (primary, _) in pairs.iter().filter(|(_, a)| a == alternate) {
            match core.escalations_mut().hold(now_ms, sender, msg_id, primary, alternate) {
                Ok(h) => copy = Some(h),
                Err(r) => {
                    tracing::warn!(%primary, %alternate, refusal = %r, "escalation pair not held");
                    refusal.get_or_insert(r);
                }
            }
        }
        local.remove(i);
        match (copy, refusal) {
            (Some(h), _) => {
                put_held(st, &h);
                held.push(alternate.clone());
            }
            (None, Some(r)) => refused.push((alternate.clone(), r)),
            (None, None) => unreachable!("every alternate comes from a pair"),
        }
    }
    Ok(held)
}

/// An audit record about `h`'s copy: the alternate as recipient, and
/// `peer` (the primary concerned, or who purged it).
pub(super) fn record(
    env: &StoredEnvelope,
    kind: pb::AuditKind,
    now_ms: i64,
    h: &Held,
    peer: String,
    detail: String,
) -> pb::AuditRecord {
    pb::AuditRecord {
        recipients: vec![h.alternate.to_string()],
        peer,
        detail,
        ..env.audit_record(kind, now_ms)
    }
}

/// `primary` acknowledged (sender, msg id): the copies held for it stop
/// waiting for it (audited ESCALATION_CANCELLED); one that waits for nobody
/// else is dropped and leaves `env.pending`, the others are stored again.
#[allow(clippy::too_many_arguments)]
pub(super) fn on_ack(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    core: Option<&mut RelayCore>,
    primary: &Address,
    sender: &Address,
    msg_id: &[u8; 16],
    mut env: Option<&mut StoredEnvelope>,
    now_ms: i64,
) -> Result<(), Fatal> {
    let Some(core) = core else { return Ok(()) };
    for Withdrawn { copy, dropped } in core.escalations_mut().handle_ack(sender, msg_id, primary) {
        let alt = copy.alternate.to_string();
        if dropped {
            st.remove(held_key(&copy.alternate, sender, msg_id));
        } else {
            put_held(st, &copy);
        }
        let Some(env) = env.as_deref_mut() else { continue };
        let fate = if dropped {
            env.pending.retain(|p| *p != alt);
            format!("the copy held for {alt} is dropped")
        } else {
            format!("the copy held for {alt} still waits for {}", copy.primaries())
        };
        let d = format!(
            "{primary} acknowledged {} ms after the copy arrived, within the escalation time; {fate}",
            now_ms.saturating_sub(copy.held_at_ms)
        );
        let r = record(env, pb::AuditKind::EscalationCancelled, now_ms, &copy, primary.to_string(), d);
        stage_or_log(st, audit, &r, "escalation cancelled")?;
    }
    Ok(())
}

/// Releases the held copies due at `now_ms`.
pub(super) fn release_due(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: Option<&mut RelayCore>,
    now_ms: i64,
    after: &mut After,
) -> OpResult {
    let Some(core) = core else { return Ok(Ok(Reply::Done)) };
    for _ in 0..RELEASE_BATCH {
        let Some(h) = core.escalations_mut().poll_due(now_ms) else { break };
        st.remove(held_key(&h.alternate, &h.sender, &h.msg_id));
        let mk = keys::msg_key(&h.sender.to_string(), &h.msg_id);
        let ekey = keys::envelope(&mk);
        let env: Option<StoredEnvelope> = match st.get(&ekey)? {
            Some(v) => Some(decode(&ekey, &v)?),
            None => None,
        };
        let alt = h.alternate.to_string();
        let Some(env) = env.filter(|e| e.pending.contains(&alt)) else {
            tracing::info!(alternate = %alt, msg_id = %hex::encode(h.msg_id), "held escalation copy no longer needed (message gone)");
            continue;
        };
        let Some(header) = env.header.clone() else { continue };
        put_in_mailboxes(st, &mk, &header, std::slice::from_ref(&alt), now_ms, after)?;
        // One ESCALATED record and receipt per primary the copy stood in for.
        for w in &h.waiting {
            let secs = (w.release_at_ms - h.held_at_ms) / 1000;
            let d = if w.release_at_ms <= now_ms {
                format!("{} did not acknowledge within {secs} s; escalated to {alt}", w.primary)
            } else {
                format!(
                    "{} had not acknowledged yet (its time is {secs} s); escalated to {alt}, whose copy another primary was overdue for",
                    w.primary
                )
            };
            let r = record(&env, pb::AuditKind::Escalated, now_ms, &h, w.primary.to_string(), d.clone());
            stage_or_log(st, audit, &r, "escalation")?;
            let receipt = super::fed::relay_receipt(
                ctx,
                pb::ReceiptKind::Escalated,
                &h.msg_id,
                &h.sender.to_string(),
                &w.primary.to_string(),
                &Refusal::new(pb::RefusalReason::Unspecified, d),
                &header.payload_sha256,
                now_ms,
            );
            store_receipt(st, ctx, Some(&mut *core), &h.sender.to_string(), &receipt, now_ms, after)?;
        }
    }
    Ok(Ok(Reply::Done))
}

/// Asks the core every [`TICK`] whether a held copy is due and, if so,
/// queues `Op::EscalateDue`. Ends when the store is gone or closed.
pub(super) fn spawn_ticker(tx: mpsc::WeakSender<Msg>, core: Arc<Mutex<RelayCore>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now_ms = crate::rpc::now_ms();
            let due = {
                let c = core.lock().unwrap_or_else(|e| e.into_inner());
                c.escalations().poll_timeout().is_some_and(|t| t <= now_ms)
            };
            if !due {
                if tx.strong_count() == 0 {
                    return;
                }
                continue;
            }
            let Some(tx) = tx.upgrade() else { return };
            match tx.try_send(Msg::Job(Op::EscalateDue { now_ms }, None)) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
}
