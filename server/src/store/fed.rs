//! Store operations of the federation: the relay core's decisions applied
//! to the batch under construction, with their audit records.
//!
//! The writer holds the [`RelayCore`] lock while it stages a batch and
//! applies it to the tree, so a core decision (seen entry, outbox push) and
//! the keys recording it become visible together: a per-peer sender that
//! gets an item from `poll_transmit` always finds its `o/` record. A batch
//! that fails after the core changed stops the relay (the restart restores
//! the core from what is on disk).
//!
//! Keys: `o/<peer>\0<seq>` holds an [`OutboxRecord`] (the item's core
//! metadata as JSON plus the copy's `deliver_to`, or its own header, or
//! the receipt); `n/<seen key>` holds a JSON [`SeenEntry`]. An envelope
//! copy for a peer shares the header and payload (`p/` or file) of the
//! `e/` record, which lists the copy in `forwards` until the peer acked it
//! or it expired. A message this relay only forwards, as one copy with an
//! inline payload, is held whole in its outbox record instead (no `e/`,
//! no `p/`): it goes when the record goes.

use focal_proto::{Address, pb};
use prost::Message;

use super::audit_seam::AuditSeam;
use super::keys;
use super::ops::{Ctx, Fatal, OpResult, put_in_mailboxes, settle_envelope};
use super::payload::ReceivedPayload;
use super::records::{DedupRecord, StoredEnvelope, decode};
use super::writer::{After, Reply, Staged};
use crate::RelayError;
use crate::core::dedup::{SeenEntry, SeenKey};
use crate::core::outbox::{ItemId, OutboxItem, Removed};
use crate::core::relay::{Expired, Origin, ReceiptInput, ReceiptVerdict, Verdict};
use crate::core::routing::RouteInput;
use crate::core::{Refusal, RelayCore};
use crate::hub::HubEvent;

/// `o/<peer>\0<seq>`: one copy queued for a peer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OutboxRecord {
    /// The core's `OutboxItem`, JSON.
    #[prost(bytes = "vec", tag = "1")]
    pub item_json: Vec<u8>,
    /// For an envelope: the header to send (this relay's hop appended,
    /// `deliver_to` set). Its payload is that of `e/<msgkey>`.
    #[prost(message, optional, tag = "2")]
    pub header: Option<pb::EnvelopeHeader>,
    /// For a receipt: the transfer to send (this relay's hop appended).
    #[prost(message, optional, tag = "3")]
    pub receipt: Option<pb::ReceiptTransfer>,
    /// For an envelope whose header to send is that of `e/<msgkey>` with
    /// only `deliver_to` set (the usual case): true, `header` is empty and
    /// `deliver_to` holds the copy's recipients, so the header is not
    /// stored twice. Records written before this field carry `header`.
    #[prost(bool, tag = "4")]
    pub header_from_envelope: bool,
    /// With `header_from_envelope`: the copy's `deliver_to`.
    #[prost(string, repeated, tag = "5")]
    pub deliver_to: Vec<String>,
    /// A message this relay only forwards, as one copy with an inline
    /// payload, is kept whole in its outbox record: the envelope (with
    /// `header_from_envelope`) here and its payload in `payload`, instead
    /// of under `e/` and `p/`. Both go when the record goes.
    #[prost(message, optional, tag = "6")]
    pub envelope: Option<StoredEnvelope>,
    /// With `envelope`: the payload ciphertext.
    #[prost(bytes = "vec", tag = "7")]
    pub payload: Vec<u8>,
}

impl OutboxRecord {
    /// Whether [`OutboxRecord::envelope_header`] needs the stored `e/`
    /// envelope: the record neither carries a header nor holds its message whole.
    pub fn needs_stored_envelope(&self) -> bool {
        self.header_from_envelope && self.envelope.is_none()
    }

    /// For an envelope copy: the header to send, given the stored envelope
    /// it refers to (`None` if that is gone, or for a receipt). A record
    /// holding its envelope itself uses that one.
    pub fn envelope_header(&self, env: Option<&StoredEnvelope>) -> Option<pb::EnvelopeHeader> {
        if !self.header_from_envelope {
            return self.header.clone();
        }
        let mut header = self.envelope.as_ref().or(env)?.header.clone()?;
        header.deliver_to = self.deliver_to.clone();
        Some(header)
    }

    /// The core metadata.
    pub fn item(&self) -> Result<OutboxItem, RelayError> {
        serde_json::from_slice(&self.item_json)
            .map_err(|e| RelayError::Corrupt { key: "o/…".into(), detail: e.to_string() })
    }
}

/// An envelope copy to route (a client's Send or a peer's transfer).
#[derive(Debug)]
pub struct RouteRequest {
    /// The header as received (hops of the relays before this one).
    pub header: pb::EnvelopeHeader,
    /// Its routing view.
    pub input: RouteInput,
    /// Every recipient of the context (audit).
    pub all_recipients: Vec<Address>,
    /// Local client or peer.
    pub origin: Origin,
    /// Identity URI of who handed it over (audit `peer`).
    pub from: String,
    /// The verified payload.
    pub payload: ReceivedPayload,
    /// Relay clock.
    pub now_ms: i64,
    /// The peer's transfer stream it came on (0 for a client), for the
    /// core's per-stream RETRY latch.
    pub stream: u64,
}

/// What happened to a routed envelope copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Persisted: in local mailboxes and/or outboxes; `refused` recipients
    /// got a REFUSED receipt.
    Handled {
        /// ACCEPTED / RECEIVED audit leaf.
        leaf_index: u64,
        /// This relay's acceptance time.
        at_ms: i64,
        /// `TransferAck` status for a peer.
        status: pb::TransferStatus,
        /// Recipients refused here (non-delivery receipts were queued).
        refused: Vec<(Address, Refusal)>,
    },
    /// Every recipient of the copy was handled before.
    Duplicate,
    /// Refused as a whole (for a peer, REFUSED receipts were queued).
    Refused(Refusal),
    /// Try again later; nothing stored.
    Retry(Refusal),
}

/// A receipt travelling towards its original sender.
#[derive(Debug)]
pub struct ReceiptRequest {
    /// The verified receipt.
    pub receipt: pb::Receipt,
    /// Its body's `original_sender`.
    pub original_sender: Address,
    /// Hops as received (empty for a receipt made here).
    pub hops: Vec<pb::Hop>,
    /// Local or a peer.
    pub origin: Origin,
    /// Relay clock.
    pub now_ms: i64,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().try_into().expect("32 bytes")
}

/// The id of a receipt: SHA-256 of its signed body.
pub fn receipt_id(receipt: &pb::Receipt) -> [u8; 32] {
    sha256(receipt.signed.as_ref().map(|s| s.body.as_slice()).unwrap_or_default())
}

fn put_seen(st: &mut Staged<'_>, seen: &SeenEntry) {
    let v = serde_json::to_vec(seen).expect("seen entries serialise");
    st.insert(keys::seen(&seen.key.to_bytes()), v);
}

/// What an outbox record carries besides its item.
enum OutboxCopy {
    /// An envelope with a header of its own.
    Header(pb::EnvelopeHeader),
    /// An envelope sent with the header of its `e/` record and this `deliver_to`.
    EnvelopeWith { deliver_to: Vec<String> },
    /// A receipt.
    Receipt(pb::ReceiptTransfer),
    /// The whole message: its envelope (the header sent with this
    /// `deliver_to`) and inline payload, stored nowhere else.
    Whole { deliver_to: Vec<String>, env: Box<StoredEnvelope>, payload: Vec<u8> },
}

fn put_outbox(
    st: &mut Staged<'_>,
    core: &RelayCore,
    peer: &str,
    seq: u64,
    copy: OutboxCopy,
) -> Result<(), Fatal> {
    let item = core.outbox(peer).and_then(|o| o.get(seq)).ok_or_else(|| {
        Fatal(RelayError::Other(format!("outbox item {peer}/{seq} vanished while staging")))
    })?;
    let item_json = serde_json::to_vec(item).expect("outbox items serialise");
    let mut rec = OutboxRecord { item_json, ..Default::default() };
    match copy {
        OutboxCopy::Header(h) => rec.header = Some(h),
        OutboxCopy::EnvelopeWith { deliver_to } => {
            rec.header_from_envelope = true;
            rec.deliver_to = deliver_to;
        }
        OutboxCopy::Receipt(r) => rec.receipt = Some(r),
        OutboxCopy::Whole { deliver_to, env, payload } => {
            rec.header_from_envelope = true;
            rec.deliver_to = deliver_to;
            rec.envelope = Some(*env);
            rec.payload = payload;
        }
    }
    st.insert(keys::outbox(peer, seq), rec.encode_to_vec());
    st.wake = true;
    Ok(())
}

/// A receipt body signed by this relay.
#[allow(clippy::too_many_arguments)]
pub(super) fn relay_receipt(
    ctx: &Ctx,
    kind: pb::ReceiptKind,
    msg_id: &[u8],
    original_sender: &str,
    subject: &str,
    refusal: &Refusal,
    digest: &[u8],
    now_ms: i64,
) -> pb::Receipt {
    let body = pb::ReceiptBody {
        version: 1,
        msg_id: msg_id.to_vec(),
        original_sender: original_sender.to_owned(),
        subject: subject.to_owned(),
        kind: kind as i32,
        reason: refusal.reason as i32,
        detail: format!("{} (at {})", refusal.detail, ctx.relay_uri).chars().take(300).collect(),
        at_ms: now_ms,
        signer: ctx.relay_uri.clone(),
        payload_sha256: digest.to_vec(),
    };
    (ctx.signer)(&body)
}

/// Routes a receipt through the core: into a local receipt box, or into a
/// peer's outbox. Returns the core's verdict.
pub(super) fn route_receipt(
    st: &mut Staged<'_>,
    core: &mut RelayCore,
    req: ReceiptRequest,
    after: &mut After,
) -> Result<ReceiptVerdict, Fatal> {
    let id = receipt_id(&req.receipt);
    let input = ReceiptInput {
        receipt_id: id,
        original_sender: req.original_sender.clone(),
        hops: req.hops,
        urgent: false,
    };
    let v = core.handle_receipt(req.now_ms, &input, &req.origin);
    tracing::debug!(to = %req.original_sender, verdict = ?v, "receipt routed");
    match &v {
        ReceiptVerdict::Local { inbox, seen } => {
            put_seen(st, seen);
            let to = inbox.to_string();
            st.insert(keys::receipt(&to, req.now_ms, &id), req.receipt.encode_to_vec());
            after.events.push((to, HubEvent::Receipt(req.receipt)));
        }
        ReceiptVerdict::Forward { peer, seq, seen } => {
            put_seen(st, seen);
            let mut hops = input.hops.clone();
            hops.push(core.table().hop(req.now_ms));
            let transfer = pb::ReceiptTransfer { receipt_id: id.to_vec(), receipt: Some(req.receipt), hops };
            put_outbox(st, core, peer, *seq, OutboxCopy::Receipt(transfer))?;
        }
        ReceiptVerdict::Undeliverable { refusal, seen } => {
            put_seen(st, seen);
            tracing::warn!(to = %req.original_sender, %refusal, "receipt undeliverable; dropped");
        }
        ReceiptVerdict::Refused(r) | ReceiptVerdict::Retry(r) => {
            tracing::info!(to = %req.original_sender, refusal = %r, "receipt not taken");
        }
        ReceiptVerdict::Duplicate => {}
    }
    Ok(v)
}

/// Inbound (or locally made) receipt.
pub(super) fn receipt(
    st: &mut Staged<'_>,
    core: Option<&mut RelayCore>,
    req: ReceiptRequest,
    after: &mut After,
) -> OpResult {
    let Some(core) = core else { return Ok(Err(RelayError::Other("federation is not running".into()))) };
    let v = route_receipt(st, core, req, after)?;
    Ok(Ok(Reply::Status(v.transfer_status())))
}

fn base_record(req: &RouteRequest, kind: pb::AuditKind) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: kind as i32,
        time_ms: req.now_ms,
        msg_id: req.input.msg_id.to_vec(),
        sender: req.input.sender.to_string(),
        payload_sha256: req.header.payload_sha256.clone(),
        size: req.header.payload_size,
        handling: req.input.handling as i32,
        priority: req.input.priority as i32,
        hop: req.header.hops.len() as u32,
        peer: req.from.clone(),
        ..Default::default()
    }
}

/// Audits a refusal of `rcpts` and queues their REFUSED receipts.
fn refuse_recipients(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: &mut RelayCore,
    req: &RouteRequest,
    refused: &[(Address, Refusal)],
    after: &mut After,
) -> Result<(), Fatal> {
    for (rcpt, r) in refused {
        let record = pb::AuditRecord {
            recipients: vec![rcpt.to_string()],
            reason: r.reason as i32,
            detail: r.detail.chars().take(200).collect(),
            ..base_record(req, pb::AuditKind::Refused)
        };
        st.audit(audit, &record)?;
        let sender = req.input.sender.to_string();
        let receipt = relay_receipt(
            ctx,
            pb::ReceiptKind::Refused,
            &req.input.msg_id,
            &sender,
            &rcpt.to_string(),
            r,
            &req.header.payload_sha256,
            req.now_ms,
        );
        let rr = ReceiptRequest {
            receipt,
            original_sender: req.input.sender.clone(),
            hops: vec![],
            origin: Origin::Local,
            now_ms: req.now_ms,
        };
        route_receipt(st, core, rr, after)?;
    }
    Ok(())
}

/// An envelope copy: the core decides, and the decision is staged.
pub(super) fn route(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: Option<&mut RelayCore>,
    mut req: RouteRequest,
    after: &mut After,
) -> OpResult {
    let Some(core) = core else { return Ok(Err(RelayError::Other("the relay core is not running".into()))) };
    let payload = std::mem::replace(&mut req.payload, ReceivedPayload::Inline(Vec::new()));
    let verdict = core.handle_envelope_on(req.now_ms, &req.input, &req.origin, req.stream);
    let status = verdict.transfer_status();
    let d = match verdict {
        Verdict::Handled(d) => d,
        Verdict::Duplicate => return Ok(Ok(Reply::Routed(RouteOutcome::Duplicate))),
        Verdict::Retry(r) => return Ok(Ok(Reply::Routed(RouteOutcome::Retry(r)))),
        Verdict::Refused(r) => {
            if matches!(req.origin, Origin::Peer(_)) {
                let all: Vec<(Address, Refusal)> =
                    req.input.copy_recipients().iter().map(|a| (a.clone(), r.clone())).collect();
                refuse_recipients(st, audit, ctx, core, &req, &all, after)?;
            }
            return Ok(Ok(Reply::Routed(RouteOutcome::Refused(r))));
        }
    };
    put_seen(st, &d.seen);
    let sender = req.input.sender.to_string();
    let mk = keys::msg_key(&sender, &req.input.msg_id);
    let kind = match req.origin {
        Origin::Local => pb::AuditKind::Accepted,
        Origin::Peer(_) => pb::AuditKind::Received,
    };
    let accepted = pb::AuditRecord {
        recipients: req.all_recipients.iter().map(|a| a.to_string()).collect(),
        ..base_record(&req, kind)
    };
    let leaf_index = st.audit(audit, &accepted)?;

    // Mailbox room: a full mailbox refuses that recipient (receipt), not the copy.
    let mut refused = d.refused.clone();
    let mut local = Vec::new();
    // Case work: broadcast policy of this network, escalation copies held.
    let mut screened = d.local.clone();
    let (sender_addr, id, now) = (&req.input.sender, req.input.msg_id, req.now_ms);
    let held = super::casework::screen_local(
        st,
        core,
        &req.header,
        sender_addr,
        id,
        now,
        &mut screened,
        &mut refused,
    )?;
    for a in &screened {
        // Handling code H0: law-enforcement members only (their directory entry says so).
        if req.input.handling == pb::HandlingCode::H0 {
            let dkey = keys::directory(&a.to_string());
            let le = st.get(&dkey)?.and_then(|v| {
                use prost::Message;
                let e = pb::DirectoryEntry::decode(v.as_ref()).ok()?;
                Some(pb::DirectoryEntryBody::decode(e.signed?.body.as_slice()).ok()?.law_enforcement)
            });
            if let Err(r) =
                crate::core::policy::check_h0(pb::HandlingCode::H0 as i32, std::slice::from_ref(a), |_| le)
            {
                refused.push((a.clone(), r));
                continue;
            }
        }
        match super::ops::mailbox_room(st, ctx, &a.to_string()) {
            Ok(true) => local.push(a.clone()),
            Ok(false) => refused.push((
                a.clone(),
                Refusal::new(pb::RefusalReason::StoreFull, format!("the mailbox of {a} is full")),
            )),
            Err(e) => return Err(Fatal(e)),
        }
    }

    let mut header = req.header.clone();
    header.hops.push(core.table().hop(req.now_ms));
    header.deliver_to.clear();
    let ekey = keys::envelope(&mk);
    let existing: Option<StoredEnvelope> = match st.get(&ekey)? {
        Some(v) => Some(decode(&ekey, &v)?),
        None => None,
    };
    let stores_something = !local.is_empty() || !d.forwards.is_empty() || !held.is_empty();
    // Only forwarded, as one copy, with an inline payload: the outbox
    // record holds the whole message (no `e/`, no `p/`).
    let whole = existing.is_none()
        && local.is_empty()
        && held.is_empty()
        && d.forwards.len() == 1
        && matches!(payload, ReceivedPayload::Inline(_));
    let mut whole_payload = None;
    let mut env = match existing {
        Some(e) => e,
        None => {
            let (payload_file, keep) = if stores_something {
                match payload {
                    ReceivedPayload::Inline(bytes) if whole => {
                        whole_payload = Some(bytes);
                        (String::new(), None)
                    }
                    ReceivedPayload::Inline(bytes) => {
                        st.insert(keys::payload(&mk), bytes);
                        (String::new(), None)
                    }
                    ReceivedPayload::File(f) => (f.name.clone(), Some(f)),
                }
            } else {
                (String::new(), None)
            };
            after.keep.extend(keep);
            if stores_something {
                st.insert(
                    keys::dedup(&mk),
                    DedupRecord { expires_at_ms: req.input.expires_at_ms, accepted_leaf: leaf_index }
                        .encode()
                        .to_vec(),
                );
                st.insert(keys::expiry(req.input.expires_at_ms, &mk), Vec::new());
            }
            StoredEnvelope {
                header: Some(header.clone()),
                received_at_ms: req.now_ms,
                expires_at_ms: req.input.expires_at_ms,
                recipients: vec![],
                pending: vec![],
                payload_file,
                payload_size: req.header.payload_size,
                accepted_leaf: leaf_index,
                sender: sender.clone(),
                msg_id: req.input.msg_id.to_vec(),
                handling: req.input.handling as i32,
                priority: req.input.priority as i32,
                forwards: vec![],
            }
        }
    };

    if !local.is_empty() {
        let names: Vec<String> = local.iter().map(|a| a.to_string()).collect();
        let delivered =
            pb::AuditRecord { recipients: names.clone(), ..base_record(&req, pb::AuditKind::Delivered) };
        st.audit(audit, &delivered)?;
        env.recipients.extend(names.iter().cloned());
        env.pending.extend(names.iter().cloned());
        put_in_mailboxes(st, &mk, &header, &names, req.now_ms, after)?;
    }
    for a in &held {
        env.recipients.push(a.to_string());
        env.pending.push(a.to_string());
    }
    // Copies share the stored header unless an earlier arrival stored a
    // different one (other hops): then each carries its own.
    let shares_header = env.header.as_ref() == Some(&header);
    for f in &d.forwards {
        let deliver_to: Vec<String> = f.deliver_to.iter().map(|a| a.to_string()).collect();
        env.forwards.push(format!("{}/{}", f.peer, f.seq));
        let copy = match whole_payload.take() {
            // The record takes the envelope: nothing stores it under `e/`.
            Some(payload) => {
                OutboxCopy::Whole { deliver_to, env: Box::new(std::mem::take(&mut env)), payload }
            }
            None if shares_header => OutboxCopy::EnvelopeWith { deliver_to },
            None => OutboxCopy::Header(pb::EnvelopeHeader { deliver_to, ..header.clone() }),
        };
        put_outbox(st, core, &f.peer, f.seq, copy)?;
    }
    if stores_something && !whole {
        st.insert(ekey, env.encode_to_vec());
    }
    refuse_recipients(st, audit, ctx, core, &req, &refused, after)?;
    // With every recipient refused, a peer gets REFUSED (receipts are on their way).
    let status = if stores_something { pb::TransferStatus::Stored } else { status };
    Ok(Ok(Reply::Routed(RouteOutcome::Handled { leaf_index, at_ms: req.now_ms, status, refused })))
}

/// What [`release_copy`] removed.
pub(super) struct Released {
    /// The outbox record, if it was there and decoded (its envelope, when
    /// it held the message whole, is in `envelope`).
    pub(super) record: Option<OutboxRecord>,
    /// The envelope as it was, also when the record held it whole.
    pub(super) envelope: Option<StoredEnvelope>,
}

/// Removes outbox record `peer/seq` and drops its `forwards` mark from the
/// envelope, which goes too (with its payload) when nothing else needs it.
pub(super) fn release_copy(
    st: &mut Staged<'_>,
    item: &OutboxItem,
    peer: &str,
    seq: u64,
    after: &mut After,
) -> Result<Released, Fatal> {
    let okey = keys::outbox(peer, seq);
    let record = match st.get(&okey)? {
        Some(v) => match decode::<OutboxRecord>(&okey, &v) {
            Ok(rec) => Some(rec),
            Err(e) => {
                tracing::error!(error = %e, "removing an outbox record that does not decode");
                None
            }
        },
        None => None,
    };
    release_record(st, item, peer, seq, record, after)
}

/// [`release_copy`] for a caller that has already read and decoded the
/// record (`None`: it is not there).
pub(super) fn release_record(
    st: &mut Staged<'_>,
    item: &OutboxItem,
    peer: &str,
    seq: u64,
    mut record: Option<OutboxRecord>,
    after: &mut After,
) -> Result<Released, Fatal> {
    st.remove(keys::outbox(peer, seq));
    if let Some(whole) = record.as_mut().and_then(|r| r.envelope.take()) {
        return Ok(Released { record, envelope: Some(whole) });
    }
    let ItemId::Envelope { sender, msg_id } = &item.id else {
        return Ok(Released { record, envelope: None });
    };
    let mk = keys::msg_key(&sender.to_string(), msg_id);
    let ekey = keys::envelope(&mk);
    let Some(v) = st.get(&ekey)? else { return Ok(Released { record, envelope: None }) };
    let mut env: StoredEnvelope = decode(&ekey, &v)?;
    let mark = format!("{peer}/{seq}");
    env.forwards.retain(|f| *f != mark);
    let envelope = Some(env.clone());
    settle_envelope(st, &mk, env, after);
    Ok(Released { record, envelope })
}

pub(super) fn item_record(
    env: Option<&StoredEnvelope>,
    item: &OutboxItem,
    kind: pb::AuditKind,
    peer: &str,
    now_ms: i64,
) -> Option<pb::AuditRecord> {
    let ItemId::Envelope { sender, msg_id } = &item.id else { return None };
    let h = env.and_then(|e| e.header.as_ref());
    Some(pb::AuditRecord {
        version: 1,
        kind: kind as i32,
        time_ms: now_ms,
        msg_id: msg_id.to_vec(),
        sender: sender.to_string(),
        recipients: item.recipients.iter().map(|a| a.to_string()).collect(),
        peer: peer.to_owned(),
        payload_sha256: h.map(|h| h.payload_sha256.clone()).unwrap_or_default(),
        size: env.map(|e| e.payload_size).unwrap_or_default(),
        handling: env.map(|e| e.handling).unwrap_or_default(),
        priority: env.map(|e| e.priority).unwrap_or_default(),
        hop: h.map(|h| h.hops.len().saturating_sub(1) as u32).unwrap_or_default(),
        ..Default::default()
    })
}

/// The peer acked an outbox item (STORED, DUPLICATE or REFUSED): delete it
/// with its FORWARDED audit record.
pub(super) fn outbox_done(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    peer: &str,
    removed: Removed,
    status: pb::TransferStatus,
    now_ms: i64,
    after: &mut After,
) -> OpResult {
    let env = release_copy(st, &removed.item, peer, removed.seq, after)?.envelope;
    if let Some(mut r) = item_record(env.as_ref(), &removed.item, pb::AuditKind::Forwarded, peer, now_ms) {
        if status != pb::TransferStatus::Stored {
            r.detail = format!("peer answered {}", status.as_str_name());
        }
        st.audit(audit, &r)?;
    }
    Ok(Ok(Reply::Done))
}

/// An outbox item expired undelivered: delete it, audit EXPIRED, and send
/// EXPIRED receipts (signed by this relay) back to the sender.
pub(super) fn outbox_expired(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    ctx: &Ctx,
    core: Option<&mut RelayCore>,
    expired: Expired,
    now_ms: i64,
    after: &mut After,
) -> OpResult {
    let Some(core) = core else { return Ok(Err(RelayError::Other("the relay core is not running".into()))) };
    let Expired { peer, seq, item } = expired;
    let env = release_copy(st, &item, &peer, seq, after)?.envelope;
    if let Some(mut r) = item_record(env.as_ref(), &item, pb::AuditKind::Expired, &peer, now_ms) {
        r.reason = pb::RefusalReason::Expired as i32;
        r.detail = format!("expired in the outbox for {peer}");
        st.audit(audit, &r)?;
        if let ItemId::Envelope { sender, msg_id } = &item.id {
            let refusal = Refusal::new(
                pb::RefusalReason::Expired,
                format!("expired undelivered in the outbox for {peer}"),
            );
            for rcpt in &item.recipients {
                let receipt = relay_receipt(
                    ctx,
                    pb::ReceiptKind::Expired,
                    msg_id,
                    &sender.to_string(),
                    &rcpt.to_string(),
                    &refusal,
                    &r.payload_sha256,
                    now_ms,
                );
                let rr = ReceiptRequest {
                    receipt,
                    original_sender: sender.clone(),
                    hops: vec![],
                    origin: Origin::Local,
                    now_ms,
                };
                route_receipt(st, core, rr, after)?;
            }
        }
    }
    Ok(Ok(Reply::Done))
}

/// Seen entries the core forgot.
pub(super) fn forget_seen(st: &mut Staged<'_>, gone: Vec<SeenKey>) -> OpResult {
    for k in gone {
        st.remove(keys::seen(&k.to_bytes()));
    }
    Ok(Ok(Reply::Done))
}

/// Seen entries, and (peer, seq, item) of every outbox item.
pub(crate) type Restored = (Vec<SeenEntry>, Vec<(String, u64, OutboxItem)>);

/// Everything the core must restore at start: seen entries and, per peer,
/// outbox items in sequence order.
pub(crate) fn load(tree: &sled::Tree) -> Result<Restored, RelayError> {
    let mut seen = Vec::new();
    for kv in tree.scan_prefix(keys::SEEN) {
        let (k, v) = kv.map_err(RelayError::sled("scanning the seen-set"))?;
        let e: SeenEntry = serde_json::from_slice(&v)
            .map_err(|e| RelayError::Corrupt { key: keys::show(&k), detail: e.to_string() })?;
        seen.push(e);
    }
    let mut items = Vec::new();
    for kv in tree.scan_prefix(keys::OUTBOX) {
        let (k, v) = kv.map_err(RelayError::sled("scanning the outboxes"))?;
        let Some((peer, seq)) = keys::split_outbox(&k) else {
            return Err(RelayError::Corrupt { key: keys::show(&k), detail: "bad outbox key".into() });
        };
        let rec: OutboxRecord = decode(&k, &v)?;
        items.push((peer, seq, rec.item()?));
    }
    Ok((seen, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(deliver_to: &[&str]) -> pb::EnvelopeHeader {
        pb::EnvelopeHeader {
            context: b"ctx".to_vec(),
            deliver_to: deliver_to.iter().map(|s| s.to_string()).collect(),
            hops: vec![pb::Hop {
                relay: "relay-carin".into(),
                network: "carin".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_outbox_record_sends_the_envelope_header_with_its_own_deliver_to() {
        let env = StoredEnvelope { header: Some(header(&[])), ..Default::default() };
        let slim = OutboxRecord {
            header_from_envelope: true,
            deliver_to: vec!["bob@arinsa".into()],
            ..Default::default()
        };
        let slim = OutboxRecord::decode(slim.encode_to_vec().as_slice()).unwrap();
        assert_eq!(slim.envelope_header(Some(&env)), Some(header(&["bob@arinsa"])));
        assert_eq!(slim.envelope_header(None), None, "no envelope, no header");
        assert!(slim.needs_stored_envelope());
        // A record holding its message whole needs no stored envelope.
        let whole = OutboxRecord { envelope: Some(env.clone()), ..slim.clone() };
        assert!(!whole.needs_stored_envelope());
        assert_eq!(whole.envelope_header(None), Some(header(&["bob@arinsa"])));
        // A record written before the slim form carries its whole header.
        let old = OutboxRecord { header: Some(header(&["eve@arinsa"])), ..Default::default() };
        let old = OutboxRecord::decode(old.encode_to_vec().as_slice()).unwrap();
        assert!(!old.header_from_envelope && !old.needs_stored_envelope());
        assert_eq!(old.envelope_header(Some(&env)), Some(header(&["eve@arinsa"])));
        assert_eq!(old.envelope_header(None), Some(header(&["eve@arinsa"])));
    }
}
