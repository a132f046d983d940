//! What the operator side of the relay reads from and does to the store:
//! mailbox statistics for metrics (one pass over the mailbox counters, plus
//! one key read per non-empty mailbox for its oldest message), queue items
//! by clear header for `Admin.ListQueue`, and the audited purge of an
//! expired mailbox item for `Admin.Purge` (applied by the writer like every
//! other change).
//!
//! Escalation copies held for an alternate (`store::casework`) are listed
//! as queue `held:<alternate>` and counted in [`MailboxStats::held`]. A
//! purge names them by the alternate as owner (`held:<alternate>` in the
//! API): when the alternate has no mailbox slot for the message but a held
//! copy, the held copy is purged. Purging a message from its primary's
//! mailbox also purges the copies held for it (the primary can no longer
//! acknowledge). Each removal has its own PURGED record.

use focal_proto::{Address, pb};

use super::casework::{self, drop_held, held_copy, held_for_primary};
use super::keys;
use super::ops::{OpResult, settle_envelope, take_from_mailbox};
use super::records::{MailboxEntry, MailboxMeta, StoredEnvelope, decode};
use super::writer::{After, Op, Reply, Staged};
use super::{Store, audit_seam::AuditSeam};
use crate::RelayError;
use crate::core::RelayCore;
use crate::core::escalation::Held;
use crate::metrics::MailboxGauge;

/// Mailboxes at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Mailboxes holding at least one message.
    pub mailboxes: u64,
    /// Messages waiting in all of them.
    pub messages: u64,
    /// Oldest waiting message anywhere, ms (0 if none).
    pub oldest_age_ms: i64,
    /// The `top` deepest mailboxes, deepest first.
    pub top: Vec<MailboxGauge>,
    /// Escalation copies held for alternates (not in any mailbox yet).
    pub held: u64,
    /// Longest any of them has been held, ms (0 if none).
    pub held_oldest_age_ms: i64,
}

/// Remove one expired item from a mailbox (`Admin.Purge`).
#[derive(Debug)]
pub struct PurgeRequest {
    /// Mailbox owner.
    pub owner: Address,
    /// Original sender.
    pub sender: Address,
    /// Msg id.
    pub msg_id: [u8; 16],
    /// Who asked (admin identity URI), for the audit record.
    pub by: String,
    /// Relay clock.
    pub now_ms: i64,
}

impl Store {
    /// Mailbox counts and ages at `now_ms`, with the `top` deepest listed.
    pub fn mailbox_stats(&self, now_ms: i64, top: usize) -> Result<MailboxStats, RelayError> {
        let mut stats = MailboxStats::default();
        let mut all = Vec::new();
        for kv in self.tree().scan_prefix(keys::MAILBOX_META) {
            let (k, v) = kv.map_err(RelayError::sled("scanning mailbox counters"))?;
            let meta = MailboxMeta::decode(&k, Some(&v))?;
            if meta.count == 0 {
                continue;
            }
            let address = String::from_utf8_lossy(&k[keys::MAILBOX_META.len()..]).into_owned();
            let oldest = self.oldest_in_mailbox(&address)?;
            let age = oldest.map(|t| now_ms.saturating_sub(t).max(0)).unwrap_or(0);
            stats.mailboxes += 1;
            stats.messages += meta.count;
            stats.oldest_age_ms = stats.oldest_age_ms.max(age);
            all.push(MailboxGauge { address, depth: meta.count, oldest_age_ms: age });
        }
        all.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.address.cmp(&b.address)));
        all.truncate(top);
        stats.top = all;
        for h in casework::held_copies(self.tree(), None, usize::MAX)? {
            stats.held += 1;
            stats.held_oldest_age_ms =
                stats.held_oldest_age_ms.max(now_ms.saturating_sub(h.held_at_ms).max(0));
        }
        Ok(stats)
    }

    fn oldest_in_mailbox(&self, address: &str) -> Result<Option<i64>, RelayError> {
        let start = keys::mailbox(address, 0);
        let end = keys::mailbox(address, u64::MAX);
        match self.tree().range(start..=end).next() {
            Some(kv) => {
                let (k, v) = kv.map_err(RelayError::sled("reading a mailbox"))?;
                Ok(Some(decode::<MailboxEntry>(&k, &v)?.received_at_ms))
            }
            None => Ok(None),
        }
    }

    /// Up to `limit` mailbox items (clear header only, never payload), of
    /// `owner` or of every mailbox, in mailbox key order.
    pub fn mailbox_items(
        &self,
        owner: Option<&Address>,
        limit: usize,
    ) -> Result<Vec<pb::QueueItem>, RelayError> {
        let prefix = match owner {
            Some(a) => [keys::MAILBOX, a.to_string().as_bytes(), &[0]].concat(),
            None => keys::MAILBOX.to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(RelayError::sled("scanning mailboxes"))?;
            let rest = &k[keys::MAILBOX.len()..];
            let Some(nul) = rest.iter().position(|b| *b == 0) else { continue };
            let address = String::from_utf8_lossy(&rest[..nul]).into_owned();
            let entry: MailboxEntry = decode(&k, &v)?;
            let ekey = keys::envelope(&entry.msg_key);
            let env = match self.tree().get(&ekey).map_err(RelayError::sled("reading an envelope"))? {
                Some(ev) => Some(decode::<StoredEnvelope>(&ekey, &ev)?),
                None => None,
            };
            let urgent = env.as_ref().is_some_and(|e| e.priority == pb::Priority::Urgent as i32);
            out.push(pb::QueueItem {
                queue: format!("mailbox:{address}"),
                queued_at_ms: entry.received_at_ms,
                attempts: 0,
                seq: 0,
                msg_id: env.as_ref().map(|e| e.msg_id.clone()).unwrap_or_default(),
                sender: env.as_ref().map(|e| e.sender.clone()).unwrap_or_default(),
                recipients: vec![address],
                kind: "envelope".into(),
                priority: if urgent { "urgent" } else { "normal" }.into(),
                size: env.as_ref().map(|e| e.payload_size).unwrap_or(0),
                expires_at_ms: env.as_ref().map(|e| e.expires_at_ms).unwrap_or(0),
                header: env.and_then(|e| e.header),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Up to `limit` escalation copies held (for `alternate` or for every
    /// alternate), as queue `held:<alternate>`, kind `escalation`, with
    /// `release_at_ms` and a one-line `detail`; clear header only.
    pub fn held_items(
        &self,
        alternate: Option<&Address>,
        limit: usize,
    ) -> Result<Vec<pb::QueueItem>, RelayError> {
        let mut out = Vec::new();
        for h in casework::held_copies(self.tree(), alternate, limit)? {
            let ekey = keys::envelope(&keys::msg_key(&h.sender.to_string(), &h.msg_id));
            let env = match self.tree().get(&ekey).map_err(RelayError::sled("reading an envelope"))? {
                Some(ev) => Some(decode::<StoredEnvelope>(&ekey, &ev)?),
                None => None,
            };
            let urgent = env.as_ref().is_none_or(|e| e.priority == pb::Priority::Urgent as i32);
            out.push(pb::QueueItem {
                queue: format!("held:{}", h.alternate),
                queued_at_ms: h.held_at_ms,
                msg_id: h.msg_id.to_vec(),
                sender: h.sender.to_string(),
                recipients: vec![h.alternate.to_string()],
                kind: "escalation".into(),
                priority: if urgent { "urgent" } else { "normal" }.into(),
                size: env.as_ref().map(|e| e.payload_size).unwrap_or(0),
                expires_at_ms: env.as_ref().map(|e| e.expires_at_ms).unwrap_or(0),
                detail: format!(
                    "held for escalation to {} until {} (unix ms) unless acknowledged first by {}",
                    h.alternate,
                    h.release_at_ms(),
                    h.primaries()
                ),
                release_at_ms: h.release_at_ms(),
                header: env.and_then(|e| e.header),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Removes an expired item from a mailbox, with a PURGED audit record,
    /// in one batch. Refuses an item that has not expired
    /// ([`RelayError::NotExpired`]) or is not there ([`RelayError::NotInMailbox`]).
    /// An entry whose envelope is missing is always purgeable.
    pub async fn purge(&self, req: PurgeRequest) -> Result<u64, RelayError> {
        match self.submit(Op::Purge(Box::new(req))).await? {
            Reply::Leaf(i) => Ok(i),
            other => Err(RelayError::Other(format!("writer answered {other:?} to purge"))),
        }
    }
}

macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

/// The stored envelope of `mk` (None if it is gone); refused while it has
/// not expired at `now_ms`: a live message is not purged.
fn expired_envelope(
    st: &Staged<'_>,
    mk: &[u8],
    what: &str,
    now_ms: i64,
) -> Result<Option<StoredEnvelope>, RelayError> {
    let ekey = keys::envelope(mk);
    let env: Option<StoredEnvelope> = match st.get(&ekey)? {
        Some(v) => Some(decode(&ekey, &v)?),
        None => None,
    };
    if let Some(env) = &env
        && env.expires_at_ms > now_ms
    {
        return Err(RelayError::NotExpired {
            what: what.to_owned(),
            expires_at_ms: env.expires_at_ms,
            now_ms,
        });
    }
    Ok(env)
}

/// The writer's side of [`Store::purge`].
pub(super) fn purge(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    mut core: Option<&mut RelayCore>,
    req: PurgeRequest,
    after: &mut After,
) -> OpResult {
    let sender = req.sender.to_string();
    let owner = req.owner.to_string();
    let mk = keys::msg_key(&sender, &req.msg_id);
    let what = format!("message {} from {sender} in mailbox:{owner}", hex::encode(req.msg_id));
    if check!(st.get(&keys::mailbox_index(&owner, &mk))).is_none() {
        if let Some(h) = check!(held_copy(st, &owner, &sender, &req.msg_id)) {
            return purge_held(st, audit, core, &h, &req, after);
        }
        return Ok(Err(RelayError::NotInMailbox { address: owner, sender, msg_id: hex::encode(req.msg_id) }));
    }
    let env = check!(expired_envelope(st, &mk, &what, req.now_ms));
    let shell = StoredEnvelope { msg_id: req.msg_id.to_vec(), sender: sender.clone(), ..Default::default() };
    let record = pb::AuditRecord {
        recipients: vec![owner.clone()],
        peer: req.by.clone(),
        reason: pb::RefusalReason::Expired as i32,
        detail: format!("purged from mailbox:{owner} by {}", req.by),
        ..env.as_ref().unwrap_or(&shell).audit_record(pb::AuditKind::Purged, req.now_ms)
    };
    check!(AuditSeam::validate(&record));
    let left = check!(take_from_mailbox(st, &owner, &mk));
    let leaf = st.audit(audit, &record)?;
    if let Some(mut env) = left {
        // The primary can no longer acknowledge: its held copies go too.
        for h in held_for_primary(st, &env, &req.owner)? {
            drop_held(st, core.as_deref_mut(), &h, Some(&mut env));
            let r = held_record(&env, &h, &req);
            st.audit(audit, &r)?;
        }
        settle_envelope(st, &mk, env, after);
    }
    tracing::info!(%what, by = %req.by, "purged");
    Ok(Ok(Reply::Leaf(leaf)))
}

/// The PURGED record of held copy `h`, purged by `req`.
fn held_record(env: &StoredEnvelope, h: &Held, req: &PurgeRequest) -> pb::AuditRecord {
    let detail = format!(
        "escalation copy held for {} (primaries {}) purged by {}",
        h.alternate,
        h.primaries(),
        req.by
    );
    pb::AuditRecord {
        reason: pb::RefusalReason::Expired as i32,
        ..casework::record(env, pb::AuditKind::Purged, req.now_ms, h, req.by.clone(), detail)
    }
}

/// Purges the held copy `h` (the request named its alternate as owner).
fn purge_held(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    core: Option<&mut RelayCore>,
    h: &Held,
    req: &PurgeRequest,
    after: &mut After,
) -> OpResult {
    let mk = keys::msg_key(&h.sender.to_string(), &h.msg_id);
    let what =
        format!("message {} from {} held for escalation to {}", hex::encode(h.msg_id), h.sender, h.alternate);
    let env = check!(expired_envelope(st, &mk, &what, req.now_ms));
    let shell =
        StoredEnvelope { msg_id: h.msg_id.to_vec(), sender: h.sender.to_string(), ..Default::default() };
    let record = held_record(env.as_ref().unwrap_or(&shell), h, req);
    check!(AuditSeam::validate(&record));
    let mut env = env;
    drop_held(st, core, h, env.as_mut());
    let leaf = st.audit(audit, &record)?;
    if let Some(env) = env {
        settle_envelope(st, &mk, env, after);
    }
    tracing::info!(%what, by = %req.by, "purged");
    Ok(Ok(Reply::Leaf(leaf)))
}
