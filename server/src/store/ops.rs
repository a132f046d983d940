//! The operations the writer applies, each to the batch under
//! construction: all of an operation's checks and reads come first, so a
//! refused operation stages nothing; then its keys and its audit records are
//! staged together. Live events and payload file removals wait in [`After`]
//! until the batch is durable.

use focal_proto::{Address, NetworkId, pb};
use prost::Message;

use super::audit_seam::AuditSeam;
use super::fed::{self, ReceiptRequest};
use super::keys;
use super::payload::ReceivedPayload;
use super::records::{DedupRecord, MailboxEntry, MailboxMeta, StoredEnvelope, decode, stage_or_log};
use super::writer::{
    AcceptRequest, Accepted, AckRequest, After, ExpiryReport, Op, ReceiptSigner, Reply, Staged,
};
use crate::RelayError;
use crate::core::RelayCore;
use crate::core::relay::Origin;
use crate::hub::HubEvent;

pub(super) struct Ctx {
    pub(super) network: NetworkId,
    pub(super) relay_uri: String,
    pub(super) max_mailbox_messages: u64,
    pub(super) signer: ReceiptSigner,
}

/// An error that fails the whole batch (audit staging or a read failure
/// after something was staged).
pub(super) struct Fatal(pub(super) RelayError);

impl From<RelayError> for Fatal {
    fn from(e: RelayError) -> Self {
        Fatal(e)
    }
}

pub(super) type OpResult = Result<Result<Reply, RelayError>, Fatal>;

/// Reads before anything is staged: a failure refuses only this operation.
macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

pub(super) fn apply(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: Option<&mut RelayCore>,
    op: Op,
    after: &mut After,
) -> OpResult {
    match op {
        Op::Accept(req) => accept(st, audit, ctx, *req, after),
        Op::Ack(req) => ack(st, audit, ctx, core, *req, after),
        Op::Publish { address, entry, key_serial } => publish(st, address, entry, key_serial),
        Op::ExpireDue { now_ms, limit } => expire_due(st, audit, ctx, core, now_ms, limit, after),
        Op::Route(req) => fed::route(st, audit, ctx, core, *req, after),
        Op::Receipt(req) => fed::receipt(st, core, *req, after),
        Op::OutboxDone { peer, removed, status, now_ms } => {
            fed::outbox_done(st, audit, &peer, removed, status, now_ms, after)
        }
        Op::OutboxExpired { expired, now_ms } => {
            fed::outbox_expired(st, audit, ctx, core, expired, now_ms, after)
        }
        Op::ForgetSeen(keys) => fed::forget_seen(st, keys),
        Op::EscalateDue { now_ms } => super::casework::release_due(st, audit, ctx, core, now_ms, after),
        Op::Purge(req) => super::admin::purge(st, audit, core, *req, after), // OPS: Admin.Purge
        Op::Retention(req) => super::retention::apply(st, audit, ctx, core, *req, after),
        Op::PurgeOutbox(req) => super::admin_outbox::purge_outbox(st, audit, core, *req, after),
        Op::Barrier => Ok(Ok(Reply::Done)),
        Op::Audit(record) => {
            check!(AuditSeam::validate(&record));
            Ok(Ok(Reply::Leaf(st.audit(audit, &record)?)))
        }
    }
}

fn accept(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    req: AcceptRequest,
    after: &mut After,
) -> OpResult {
    let sender = req.sender.to_string();
    let mk = keys::msg_key(&sender, &req.msg_id);
    if check!(st.get(&keys::dedup(&mk))).is_some() {
        return Ok(Err(RelayError::Duplicate { sender, msg_id: hex::encode(req.msg_id) }));
    }
    let mut metas = Vec::with_capacity(req.local_recipients.len());
    for r in &req.local_recipients {
        let addr = r.to_string();
        let mkey = keys::mailbox_meta(&addr);
        let meta = check!(MailboxMeta::decode(&mkey, check!(st.get(&mkey)).as_deref()));
        if meta.count >= ctx.max_mailbox_messages {
            return Ok(Err(RelayError::MailboxFull { address: addr, limit: ctx.max_mailbox_messages }));
        }
        metas.push((addr, mkey, meta));
    }

    let header = &req.header;
    let base = pb::AuditRecord {
        version: 1,
        time_ms: req.now_ms,
        msg_id: req.msg_id.to_vec(),
        sender: sender.clone(),
        payload_sha256: header.payload_sha256.clone(),
        size: header.payload_size,
        handling: req.handling as i32,
        priority: req.priority as i32,
        hop: header.hops.len() as u32,
        ..Default::default()
    };
    let accepted = pb::AuditRecord {
        kind: pb::AuditKind::Accepted as i32,
        recipients: req.all_recipients.iter().map(|a| a.to_string()).collect(),
        peer: req.from.clone(),
        ..base.clone()
    };
    let local: Vec<String> = metas.iter().map(|(a, _, _)| a.clone()).collect();
    let delivered =
        pb::AuditRecord { kind: pb::AuditKind::Delivered as i32, recipients: local.clone(), ..base };
    check!(AuditSeam::validate(&accepted));
    check!(AuditSeam::validate(&delivered));
    let leaf_index = st.audit(audit, &accepted)?;
    if !local.is_empty() {
        st.audit(audit, &delivered)?;
    }

    let (payload_file, keep) = match req.payload {
        ReceivedPayload::Inline(bytes) => {
            st.insert(keys::payload(&mk), bytes);
            (String::new(), None)
        }
        ReceivedPayload::File(f) => (f.name.clone(), Some(f)),
    };
    let stored = StoredEnvelope {
        header: Some(req.header.clone()),
        received_at_ms: req.now_ms,
        expires_at_ms: req.expires_at_ms,
        recipients: local.clone(),
        pending: local,
        payload_file,
        payload_size: req.header.payload_size,
        accepted_leaf: leaf_index,
        sender: sender.clone(),
        msg_id: req.msg_id.to_vec(),
        handling: req.handling as i32,
        priority: req.priority as i32,
        forwards: vec![],
    };
    st.insert(keys::envelope(&mk), stored.encode_to_vec());
    st.insert(
        keys::dedup(&mk),
        DedupRecord { expires_at_ms: req.expires_at_ms, accepted_leaf: leaf_index }.encode().to_vec(),
    );
    st.insert(keys::expiry(req.expires_at_ms, &mk), Vec::new());
    for (addr, mkey, mut meta) in metas {
        let seq = meta.next_seq;
        meta.next_seq += 1;
        meta.count += 1;
        st.insert(mkey, meta.encode().to_vec());
        let entry = MailboxEntry { msg_key: mk.clone(), received_at_ms: req.now_ms };
        st.insert(keys::mailbox(&addr, seq), entry.encode_to_vec());
        st.insert(keys::mailbox_index(&addr, &mk), seq.to_be_bytes().to_vec());
        let summary = pb::MessageSummary {
            header: Some(req.header.clone()),
            received_at_ms: req.now_ms,
            mailbox_seq: seq,
        };
        after.events.push((addr, HubEvent::Message(summary)));
    }
    // Copies for other networks are routed by `fed::route` (Op::Route),
    // which the Send path uses; this operation only fills local mailboxes.
    after.keep.extend(keep);
    Ok(Ok(Reply::Accepted(Accepted { leaf_index, accepted_at_ms: req.now_ms })))
}

/// Takes `addr` out of the message's mailbox slot; returns the stored
/// envelope with `addr` removed from `pending` (None if it was not there).
pub(super) fn take_from_mailbox(
    st: &mut Staged<'_>,
    addr: &str,
    mk: &[u8],
) -> Result<Option<StoredEnvelope>, RelayError> {
    let ikey = keys::mailbox_index(addr, mk);
    let Some(seq) = st.get(&ikey)? else { return Ok(None) };
    let seq = keys::u64_be(&seq)
        .ok_or_else(|| RelayError::Corrupt { key: keys::show(&ikey), detail: "expected 8 bytes".into() })?;
    let ekey = keys::envelope(mk);
    let env: Option<StoredEnvelope> = match st.get(&ekey)? {
        Some(v) => Some(decode(&ekey, &v)?),
        None => None,
    };
    let mkey = keys::mailbox_meta(addr);
    let mut meta = MailboxMeta::decode(&mkey, st.get(&mkey)?.as_deref())?;
    meta.count = meta.count.saturating_sub(1);
    st.insert(mkey, meta.encode().to_vec());
    st.remove(ikey);
    st.remove(keys::mailbox(addr, seq));
    Ok(env.map(|mut e| {
        e.pending.retain(|p| p != addr);
        e
    }))
}

/// Whether `addr`'s mailbox has room for one more message.
pub(super) fn mailbox_room(st: &Staged<'_>, ctx: &Ctx, addr: &str) -> Result<bool, RelayError> {
    let mkey = keys::mailbox_meta(addr);
    let meta = MailboxMeta::decode(&mkey, st.get(&mkey)?.as_deref())?;
    Ok(meta.count < ctx.max_mailbox_messages)
}

/// Puts message `mk` into the mailboxes of `addrs` (live events after the flush).
pub(super) fn put_in_mailboxes(
    st: &mut Staged<'_>,
    mk: &[u8],
    header: &pb::EnvelopeHeader,
    addrs: &[String],
    now_ms: i64,
    after: &mut After,
) -> Result<(), Fatal> {
    for addr in addrs {
        let mkey = keys::mailbox_meta(addr);
        let mut meta = MailboxMeta::decode(&mkey, st.get(&mkey)?.as_deref())?;
        if st.get(&keys::mailbox_index(addr, mk))?.is_some() {
            continue;
        }
        let seq = meta.next_seq;
        meta.next_seq += 1;
        meta.count += 1;
        st.insert(mkey, meta.encode().to_vec());
        let entry = MailboxEntry { msg_key: mk.to_vec(), received_at_ms: now_ms };
        st.insert(keys::mailbox(addr, seq), entry.encode_to_vec());
        st.insert(keys::mailbox_index(addr, mk), seq.to_be_bytes().to_vec());
        let summary =
            pb::MessageSummary { header: Some(header.clone()), received_at_ms: now_ms, mailbox_seq: seq };
        after.events.push((addr.clone(), HubEvent::Message(summary)));
    }
    Ok(())
}

/// Writes back `env` or, once nobody is pending and no outbox copy shares
/// it, removes it and its payload.
pub(super) fn settle_envelope(st: &mut Staged<'_>, mk: &[u8], env: StoredEnvelope, after: &mut After) {
    if env.pending.is_empty() && env.forwards.is_empty() {
        st.remove(keys::envelope(mk));
        if env.payload_file.is_empty() {
            st.remove(keys::payload(mk));
        } else {
            after.delete.push((env.payload_file, env.payload_size));
        }
    } else {
        st.insert(keys::envelope(mk), env.encode_to_vec());
    }
}

pub(super) fn store_receipt(
    st: &mut Staged<'_>,
    ctx: &Ctx,
    core: Option<&mut RelayCore>,
    to: &str,
    receipt: &pb::Receipt,
    now_ms: i64,
    after: &mut After,
) -> Result<(), Fatal> {
    let addr = Address::parse(to).ok();
    let network_ok = addr.as_ref().map(|a| a.network() == &ctx.network).unwrap_or(false);
    if !network_ok {
        // Receipts for other networks go through the relay core into a
        // peer outbox (store-and-forward with ack, like envelopes).
        match (addr, core) {
            (Some(original_sender), Some(core)) => {
                let req = ReceiptRequest {
                    receipt: receipt.clone(),
                    original_sender,
                    hops: vec![],
                    origin: Origin::Local,
                    now_ms,
                };
                fed::route_receipt(st, core, req, after)?;
            }
            _ => tracing::warn!(to, "receipt for another network dropped: no federation"),
        }
        return Ok(());
    }
    let body = receipt.signed.as_ref().map(|s| s.body.as_slice()).unwrap_or_default();
    let id: [u8; 32] =
        ring::digest::digest(&ring::digest::SHA256, body).as_ref().try_into().expect("32 bytes");
    st.insert(keys::receipt(to, now_ms, &id), receipt.encode_to_vec());
    after.events.push((to.to_owned(), HubEvent::Receipt(receipt.clone())));
    Ok(())
}

fn ack(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    mut core: Option<&mut RelayCore>,
    req: AckRequest,
    after: &mut After,
) -> OpResult {
    let sender = req.sender.to_string();
    let recipient = req.recipient.to_string();
    let mk = keys::msg_key(&sender, &req.msg_id);
    if check!(st.get(&keys::mailbox_index(&recipient, &mk))).is_none() {
        return Ok(Err(RelayError::NotInMailbox {
            address: recipient,
            sender,
            msg_id: hex::encode(req.msg_id),
        }));
    }
    let ekey = keys::envelope(&mk);
    let stored: Option<StoredEnvelope> = match check!(st.get(&ekey)) {
        Some(v) => Some(check!(decode(&ekey, &v))),
        None => None,
    };
    let (digest, size, handling, priority) = stored
        .as_ref()
        .map(|e| {
            let h = e.header.as_ref();
            (h.map(|h| h.payload_sha256.clone()).unwrap_or_default(), e.payload_size, e.handling, e.priority)
        })
        .unwrap_or_default();
    let record = pb::AuditRecord {
        version: 1,
        kind: pb::AuditKind::Acked as i32,
        time_ms: req.now_ms,
        msg_id: req.msg_id.to_vec(),
        sender: sender.clone(),
        recipients: vec![recipient.clone()],
        peer: recipient.clone(),
        payload_sha256: digest,
        size,
        handling,
        priority,
        ..Default::default()
    };
    check!(AuditSeam::validate(&record));
    // Nothing is staged before these reads and checks succeed.
    let mut env = check!(take_from_mailbox(st, &recipient, &mk));
    st.audit(audit, &record)?;
    // Escalation: the primary's ack drops the copies held for its alternate.
    let (r, s, id, now) = (&req.recipient, &req.sender, &req.msg_id, req.now_ms);
    super::casework::on_ack(st, audit, core.as_deref_mut(), r, s, id, env.as_mut(), now)?;
    if let Some(env) = env {
        settle_envelope(st, &mk, env, after);
    }
    store_receipt(st, ctx, core, &sender, &req.receipt, req.now_ms, after)?;
    Ok(Ok(Reply::Done))
}

fn publish(st: &mut Staged<'_>, address: Address, entry: pb::DirectoryEntry, key_serial: u32) -> OpResult {
    let addr = address.to_string();
    let key = keys::directory(&addr);
    if let Some(old) = check!(st.get(&key)) {
        let current = check!(decode::<pb::DirectoryEntry>(&key, &old))
            .signed
            .and_then(|s| pb::DirectoryEntryBody::decode(s.body.as_slice()).ok())
            .map(|b| b.key_serial)
            .unwrap_or(0);
        if key_serial < current {
            return Ok(Err(RelayError::StaleDirectoryEntry { address: addr, current, new: key_serial }));
        }
    }
    st.insert(key, entry.encode_to_vec());
    Ok(Ok(Reply::Done))
}

fn expire_due(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    mut core: Option<&mut RelayCore>,
    now_ms: i64,
    limit: usize,
    after: &mut After,
) -> OpResult {
    let mut due = Vec::new();
    for kv in st.tree.range(keys::EXPIRY.to_vec()..keys::expiry_upper(now_ms)) {
        let (k, _) = check!(kv.map_err(RelayError::sled("scanning the expiry index")));
        if st.removed(&k) {
            continue;
        }
        due.push(k.to_vec());
        if due.len() >= limit {
            break;
        }
    }
    let mut expired = 0;
    let scanned = due.len();
    for k in due {
        let Some((_, mk)) = keys::split_expiry(&k) else { continue };
        let mk = mk.to_vec();
        let ekey = keys::envelope(&mk);
        let env: Option<StoredEnvelope> = match st.get(&ekey)? {
            Some(v) => match decode(&ekey, &v) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::error!(error = %e, "skipping corrupt envelope at expiry");
                    None
                }
            },
            None => None,
        };
        if let Some(env) = env {
            let pending = env.pending.clone();
            let mut env = Some(env);
            for addr in &pending {
                env = take_from_mailbox(st, addr, &mk)?.or(env);
            }
            let env = env.expect("set above");
            // Escalation copies held for alternates go with the message
            // (the alternates are among `pending`, in the EXPIRED record).
            if let Ok(id) = <[u8; 16]>::try_from(env.msg_id.as_slice()) {
                for addr in &pending {
                    if let Some(h) = super::casework::held_copy(st, addr, &env.sender, &id)? {
                        super::casework::drop_held(st, core.as_deref_mut(), &h, None);
                    }
                }
            }
            if !pending.is_empty() {
                expired += 1;
                let digest = env.payload_digest();
                let record = pb::AuditRecord {
                    recipients: pending.clone(),
                    reason: pb::RefusalReason::Expired as i32,
                    detail: format!("expired undelivered at {}", ctx.relay_uri),
                    ..env.audit_record(pb::AuditKind::Expired, now_ms)
                };
                stage_or_log(st, audit, &record, "expiry of a message")?;
                for addr in &pending {
                    let body = pb::ReceiptBody {
                        version: 1,
                        msg_id: env.msg_id.clone(),
                        original_sender: env.sender.clone(),
                        subject: addr.clone(),
                        kind: pb::ReceiptKind::Expired as i32,
                        reason: pb::RefusalReason::Expired as i32,
                        detail: format!("expired undelivered in the mailbox at {}", ctx.relay_uri),
                        at_ms: now_ms,
                        signer: ctx.relay_uri.clone(),
                        payload_sha256: digest.clone(),
                    };
                    let receipt = (ctx.signer)(&body);
                    store_receipt(st, ctx, core.as_deref_mut(), &env.sender, &receipt, now_ms, after)?;
                }
            }
            let mut env = env;
            env.pending.clear();
            settle_envelope(st, &mk, env, after);
        }
        st.remove(keys::dedup(&mk));
        st.remove(k);
    }
    Ok(Ok(Reply::Expired(ExpiryReport { expired, scanned })))
}
