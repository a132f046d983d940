//! What the operator side of the relay reads from and does to the store:
//! mailbox statistics for metrics (one pass over the mailbox counters, plus
//! one key read per non-empty mailbox for its oldest message), queue items
//! by clear header for `Admin.ListQueue`, and the audited purge of an
//! expired mailbox item for `Admin.Purge` (applied by the writer like every
//! other change).

use focal_proto::{Address, pb};

use super::keys;
use super::ops::{OpResult, settle_envelope, take_from_mailbox};
use super::records::{MailboxEntry, MailboxMeta, StoredEnvelope, decode};
use super::writer::{After, Op, Reply, Staged};
use super::{Store, audit_seam::AuditSeam};
use crate::RelayError;
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

/// The writer's side of [`Store::purge`].
pub(super) fn purge(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    req: PurgeRequest,
    after: &mut After,
) -> OpResult {
    let sender = req.sender.to_string();
    let owner = req.owner.to_string();
    let mk = keys::msg_key(&sender, &req.msg_id);
    let what = format!("message {} from {sender} in mailbox:{owner}", hex::encode(req.msg_id));
    if check!(st.get(&keys::mailbox_index(&owner, &mk))).is_none() {
        return Ok(Err(RelayError::NotInMailbox { address: owner, sender, msg_id: hex::encode(req.msg_id) }));
    }
    let ekey = keys::envelope(&mk);
    let env: Option<StoredEnvelope> = match check!(st.get(&ekey)) {
        Some(v) => Some(check!(decode(&ekey, &v))),
        None => None,
    };
    if let Some(env) = &env
        && env.expires_at_ms > req.now_ms
    {
        return Ok(Err(RelayError::NotExpired {
            what,
            expires_at_ms: env.expires_at_ms,
            now_ms: req.now_ms,
        }));
    }
    let record = pb::AuditRecord {
        version: 1,
        kind: pb::AuditKind::Purged as i32,
        time_ms: req.now_ms,
        msg_id: req.msg_id.to_vec(),
        sender: sender.clone(),
        recipients: vec![owner.clone()],
        peer: req.by.clone(),
        payload_sha256: env
            .as_ref()
            .and_then(|e| e.header.as_ref())
            .map(|h| h.payload_sha256.clone())
            .unwrap_or_default(),
        size: env.as_ref().map(|e| e.payload_size).unwrap_or(0),
        handling: env.as_ref().map(|e| e.handling).unwrap_or(0),
        priority: env.as_ref().map(|e| e.priority).unwrap_or(0),
        reason: pb::RefusalReason::Expired as i32,
        detail: format!("purged from mailbox:{owner} by {}", req.by),
        ..Default::default()
    };
    check!(AuditSeam::validate(&record));
    let left = check!(take_from_mailbox(st, &owner, &mk));
    let leaf = st.audit(audit, &record)?;
    if let Some(env) = left {
        settle_envelope(st, &mk, env, after);
    }
    tracing::info!(%what, by = %req.by, "purged");
    Ok(Ok(Reply::Leaf(leaf)))
}
