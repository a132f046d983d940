//! What peers send us ([`InboundHandler`]) and what happens on their links.
//!
//! An envelope is checked before anything is stored, in this order, each
//! failure answered REFUSED (and audited) with no receipt, since nothing
//! about the sender can be trusted yet: the context parses; the sender
//! certificate chains to the CA of the SENDER's network (so a peer cannot
//! forge senders of other networks, including its own CA minting them) and
//! its identity is the context's sender, role fp; the sender's signature;
//! the last hop is the peer that delivered it, with that peer's network.
//! Then policy and dedup in the core (a cheap duplicate check first, so a
//! duplicate's payload is not read), the payload is streamed into the store
//! while its SHA-256 is checked, and the routing decision is persisted in
//! one batch (mailboxes, onward outboxes, REFUSED receipts, audit) and
//! fsynced; only then the ack goes back. On a pipelined transfer stream the
//! envelope is queued for the store and the next one is read while the
//! store commits (see `federation::pipeline`); the core's RETRY latch per
//! stream keeps a later envelope from being stored after a refused one.

use std::sync::Arc;
use std::time::SystemTime;

use focal_proto::envelope;
use focal_proto::{Address, NetworkId, Role, pb};
use prost::Message;
use rustls_pki_types::CertificateDer;

use super::Relaying;
use crate::core::relay::Origin;
use crate::core::routing::RouteInput;
use crate::federation::{BoxFuture, EnvelopeAnswer, InboundHandler, InboundPayload, LinkEvent, RemotePeer};
use crate::rpc::now_ms;
use crate::store::fed::{ReceiptRequest, RouteOutcome, RouteRequest, receipt_id};

/// The relay's `InboundHandler`.
#[derive(Clone, Debug)]
pub struct Inbound {
    r: Arc<Relaying>,
}

impl Inbound {
    /// A handler over the driver state.
    pub fn new(r: Arc<Relaying>) -> Self {
        Inbound { r }
    }
}

fn ack(
    header: &pb::EnvelopeHeader,
    status: pb::TransferStatus,
    detail: impl Into<String>,
) -> pb::TransferAck {
    let (msg_id, sender) = envelope::parse_context(&header.context)
        .map(|c| (c.msg_id.to_vec(), c.sender.to_string()))
        .unwrap_or_default();
    let detail = detail.into();
    if status == pb::TransferStatus::Retry {
        // The peer keeps it and sends it again after a backoff step.
        tracing::info!(detail, "envelope answered RETRY");
    }
    pb::TransferAck { msg_id, sender, status: status as i32, detail }
}

impl Inbound {
    fn refuse(
        &self,
        from: &RemotePeer,
        header: &pb::EnvelopeHeader,
        reason: pb::RefusalReason,
        detail: String,
    ) -> pb::TransferAck {
        tracing::warn!(peer = %from.identity, detail, "envelope from a peer refused");
        let ctx = envelope::parse_context(&header.context).ok();
        self.r.audit(pb::AuditRecord {
            version: 1,
            kind: pb::AuditKind::Refused as i32,
            time_ms: now_ms(),
            msg_id: ctx.as_ref().map(|c| c.msg_id.to_vec()).unwrap_or_default(),
            sender: ctx.as_ref().map(|c| c.sender.to_string()).unwrap_or_default(),
            peer: from.identity.uri(),
            payload_sha256: if header.payload_sha256.len() == 32 {
                header.payload_sha256.clone()
            } else {
                vec![]
            },
            size: header.payload_size,
            hop: header.hops.len() as u32,
            reason: reason as i32,
            detail: detail.chars().take(200).collect(),
            ..Default::default()
        });
        ack(header, pb::TransferStatus::Refused, detail)
    }

    async fn envelope_inner(
        &self,
        from: Arc<RemotePeer>,
        header: pb::EnvelopeHeader,
        payload: &mut InboundPayload,
    ) -> EnvelopeAnswer {
        use pb::RefusalReason as R;
        let ctx = match envelope::parse_context(&header.context) {
            Ok(c) => c,
            Err(e) => {
                return self.refuse(&from, &header, R::Unspecified, format!("context: {e}")).into();
            }
        };
        let cert = CertificateDer::from(header.sender_cert.as_slice());
        let verified = match focal_certs::verify_peer(&self.r.trust.current(), &cert, &[], SystemTime::now())
        {
            Ok(v) => v,
            Err(e) => {
                return self.refuse(&from, &header, R::BadSignature, format!("sender_cert: {e}")).into();
            }
        };
        if verified.identity.role != Role::Fp || verified.identity.address() != ctx.sender {
            let d = format!("sender_cert is of {}, not of the sender {}", verified.identity, ctx.sender);
            return self.refuse(&from, &header, R::BadSignature, d).into();
        }
        if envelope::verify_signature_with_key(&header, &verified.ed25519_public).is_err() {
            return self.refuse(&from, &header, R::BadSignature, "bad signature".into()).into();
        }
        match header.hops.last() {
            Some(h) if h.relay == from.name() && h.network == from.network().as_str() => {}
            other => {
                let d = format!(
                    "last hop {:?} is not the delivering peer {} of {}",
                    other.map(|h| format!("{}@{}", h.relay, h.network)),
                    from.name(),
                    from.network()
                );
                return self.refuse(&from, &header, R::Policy, d).into();
            }
        }
        let input = match RouteInput::from_pb(&ctx.ctx, &header) {
            Ok(i) => i,
            Err(e) => return self.refuse(&from, &header, R::Unspecified, e.to_string()).into(),
        };
        // Expired longer ago than clocks may disagree: no honest peer sends
        // it (its outbox expires items), so it is a replay. Refused here,
        // with a rate-limited audit record and no receipts: the core would
        // send a REFUSED receipt per recipient, which replaying old signed
        // envelopes could multiply at will.
        let skew_ms = (self.r.config.limits.max_clock_skew_secs as i64).saturating_mul(1000);
        let now = now_ms();
        if input.expires_at_ms.saturating_add(skew_ms) < now {
            let d = format!(
                "expired at {} ms, more than the clock skew before now ({now} ms): a replay",
                input.expires_at_ms
            );
            return self.refuse(&from, &header, R::Expired, d).into();
        }
        let seen = {
            let mut c = self.r.core();
            let seen = c.seen().unhandled(&input.key(), input.copy_recipients()).is_empty();
            if seen && let Some(o) = c.outbox_mut(from.name()) {
                o.handle_peer_activity(now_ms());
            }
            seen
        };
        if seen {
            // The peer drops its copy on DUPLICATE: the batch that stored
            // ours must be durable first.
            return match self.r.store.durable_barrier().await {
                Ok(()) => ack(&header, pb::TransferStatus::Duplicate, ""),
                Err(e) => ack(&header, pb::TransferStatus::Retry, e.to_string()),
            }
            .into();
        }
        // Too large: the core refuses it (with REFUSED receipts) before a
        // byte of the payload is read.
        let too_large = header.payload_size > self.r.config.limits.max_message_bytes;
        // Stream the payload into the store, checking size and digest.
        if too_large {
            let req = RouteRequest {
                header: header.clone(),
                input,
                all_recipients: ctx.recipients.clone(),
                origin: Origin::Peer(from.name().to_owned()),
                from: from.identity.uri(),
                payload: crate::store::payload::ReceivedPayload::Inline(Vec::new()),
                now_ms: now_ms(),
                stream: payload.stream_id(),
            };
            return (match self.r.store.route(req).await {
                Ok(RouteOutcome::Refused(r)) => ack(&header, pb::TransferStatus::Refused, r.to_string()),
                Ok(RouteOutcome::Retry(r)) => ack(&header, pb::TransferStatus::Retry, r.to_string()),
                Ok(RouteOutcome::Duplicate) => ack(&header, pb::TransferStatus::Duplicate, ""),
                // Not reachable: the core's size policy is the same limit.
                Ok(RouteOutcome::Handled { .. }) => {
                    tracing::error!("an oversized envelope was handled by the core");
                    ack(&header, pb::TransferStatus::Refused, "too large")
                }
                Err(e) => ack(&header, pb::TransferStatus::Retry, e.to_string()),
            })
            .into();
        }
        // The sink reserves the announced size, refusing it (StoreFull) if
        // the store has no room for it.
        let mut sink = match self.r.store.payload_sink(header.payload_size).await {
            Ok(s) => s,
            Err(e) => return ack(&header, pb::TransferStatus::Retry, e.to_string()).into(),
        };
        loop {
            match payload.next_chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = sink.write(&chunk).await {
                        return ack(&header, pb::TransferStatus::Retry, e.to_string()).into();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let detail = format!("payload stream: {e}");
                    return ack(&header, pb::TransferStatus::Retry, detail).into();
                }
            }
        }
        let received = match sink.finish(&header.payload_sha256).await {
            Ok(p) => p,
            Err(crate::store::payload::PayloadError::Store(e)) => {
                return ack(&header, pb::TransferStatus::Retry, e.to_string()).into();
            }
            Err(e) => {
                return self.refuse(&from, &header, R::BadSignature, e.to_string()).into();
            }
        };
        let req = RouteRequest {
            header: header.clone(),
            input,
            all_recipients: ctx.recipients.clone(),
            origin: Origin::Peer(from.name().to_owned()),
            from: from.identity.uri(),
            payload: received,
            now_ms: now_ms(),
            stream: payload.stream_id(),
        };
        // Queued now, in stream order; answered after its batch's fsync.
        let routed = match self.r.store.route_queued(req) {
            Ok(f) => f,
            Err(e) => return ack(&header, pb::TransferStatus::Retry, e.to_string()).into(),
        };
        let peer = from.name().to_owned();
        let span = tracing::Span::current();
        EnvelopeAnswer::Queued(Box::pin(tracing::Instrument::instrument(
            async move {
                match routed.await {
                    Ok(RouteOutcome::Handled { status, refused, .. }) => {
                        let detail = if refused.is_empty() {
                            String::new()
                        } else {
                            format!("{} recipient(s) refused; receipts follow", refused.len())
                        };
                        tracing::info!(msg_id = %hex::encode(ctx.msg_id), peer, ?status, "envelope received");
                        ack(&header, status, detail)
                    }
                    Ok(RouteOutcome::Duplicate) => ack(&header, pb::TransferStatus::Duplicate, ""),
                    Ok(RouteOutcome::Refused(r)) => ack(&header, pb::TransferStatus::Refused, r.to_string()),
                    Ok(RouteOutcome::Retry(r)) => ack(&header, pb::TransferStatus::Retry, r.to_string()),
                    Err(e) => ack(&header, pb::TransferStatus::Retry, e.to_string()),
                }
            },
            span,
        )))
    }

    async fn receipt_inner(&self, from: Arc<RemotePeer>, t: pb::ReceiptTransfer) -> pb::ReceiptAck {
        let refused = |detail: String| {
            tracing::warn!(peer = %from.identity, detail, "receipt from a peer refused");
            pb::ReceiptAck { receipt_id: t.receipt_id.clone(), status: pb::TransferStatus::Refused as i32 }
        };
        let Some(receipt) = t.receipt.clone() else { return refused("no receipt".into()) };
        let Some(blob) = receipt.signed.as_ref() else {
            return refused("receipt without signed blob".into());
        };
        if focal_proto::signed::verify_blob(focal_proto::signed::TAG_RECEIPT, blob).is_err() {
            return refused("bad receipt signature".into());
        }
        if receipt_id(&receipt).as_slice() != t.receipt_id.as_slice() {
            return refused("receipt_id is not the SHA-256 of the body".into());
        }
        let signer = match focal_certs::verify_peer(
            &self.r.trust.current(),
            &CertificateDer::from(blob.signer_cert.as_slice()),
            &[],
            SystemTime::now(),
        ) {
            Ok(v) => v.identity,
            Err(e) => return refused(format!("receipt signer: {e}")),
        };
        let body = match pb::ReceiptBody::decode(blob.body.as_slice()) {
            Ok(b) => b,
            Err(e) => return refused(format!("receipt body: {e}")),
        };
        let signer_ok = match body.kind() {
            pb::ReceiptKind::Delivered | pb::ReceiptKind::Read => {
                signer.role == Role::Fp && signer.address().to_string() == body.subject
            }
            _ => signer.role == Role::Relay,
        };
        if !signer_ok {
            return refused(format!("a {:?} receipt about {} signed by {signer}", body.kind(), body.subject));
        }
        if signer.role == Role::Relay {
            // Who may refuse, expire or escalate a copy: the relays on its
            // path. A copy goes to the recipient's network directly or
            // through one hub, so its receipt comes back signed by the
            // delivering peer or by the recipient's relay; any other
            // relay of the federation would be forging it.
            let subject_network = Address::parse(&body.subject).ok().map(|a| a.network().clone());
            if body.signer != signer.uri()
                || (signer.network != *from.network() && Some(&signer.network) != subject_network.as_ref())
            {
                return refused(format!(
                    "a {:?} receipt about {} signed by {signer} (as {:?}), a relay of neither the delivering peer's network {} nor the recipient's",
                    body.kind(),
                    body.subject,
                    body.signer,
                    from.network()
                ));
            }
        }
        let Ok(original_sender) = Address::parse_member(&body.original_sender) else {
            return refused(format!("original_sender {:?}", body.original_sender));
        };
        let req = ReceiptRequest {
            receipt,
            original_sender,
            hops: t.hops.clone(),
            origin: Origin::Peer(from.name().to_owned()),
            now_ms: now_ms(),
        };
        let status = match self.r.store.route_receipt(req).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "storing a receipt failed; RETRY");
                pb::TransferStatus::Retry
            }
        };
        tracing::info!(
            msg_id = %hex::encode(&body.msg_id),
            kind = ?body.kind(),
            peer = from.name(),
            ?status,
            "receipt received"
        );
        pb::ReceiptAck { receipt_id: t.receipt_id, status: status as i32 }
    }

    async fn directory_inner(&self, from: Arc<RemotePeer>, q: pb::DirectoryQuery) -> pb::DirectoryAnswer {
        let answer = |entries, error: String| pb::DirectoryAnswer { query_id: q.query_id, entries, error };
        let address = match Address::parse(&q.address) {
            Ok(a) => a,
            Err(e) => return answer(vec![], format!("address: {e}")),
        };
        if address.network() != &self.r.config.network {
            // A hub passes the query on (never back to the asking peer).
            return match self.r.directory.remote(&self.r, &address, Some(from.name())).await {
                Ok(entries) => answer(entries, String::new()),
                Err(e) => answer(vec![], e),
            };
        }
        let store = &self.r.store;
        let entries = if address.is_broadcast() {
            store.directory(100_000)
        } else {
            store.directory_entry(&address).map(|e| {
                e.into_iter()
                    .map(|e| crate::core::escalation::annotate(&self.r.config, &address, e))
                    .collect()
            })
        };
        match entries {
            Ok(v) if v.is_empty() => answer(v, "not found".into()),
            Ok(v) => answer(v, String::new()),
            Err(e) => answer(vec![], e.to_string()),
        }
    }

    fn link_event(&self, event: &LinkEvent) {
        let now = now_ms();
        match event {
            LinkEvent::Connected(p) => {
                let networks: Vec<NetworkId> =
                    p.hello.networks.iter().filter_map(|n| NetworkId::new(n).ok()).collect();
                {
                    let mut c = self.r.core();
                    if let Err(e) = c.handle_hello(p.name(), networks, now) {
                        tracing::warn!(error = %e, "hello not taken by the routing table");
                    }
                    c.handle_peer_stream(p.name());
                    if let Some(o) = c.outbox_mut(p.name()) {
                        o.handle_connected(now);
                    }
                }
                self.r.audit(pb::AuditRecord {
                    version: 1,
                    kind: pb::AuditKind::PeerConnected as i32,
                    time_ms: now,
                    peer: p.identity.uri(),
                    detail: format!("{} {}", if p.dialled_by_us { "dialled" } else { "accepted" }, p.address),
                    ..Default::default()
                });
            }
            LinkEvent::Disconnected { peer, .. } => {
                let mut c = self.r.core();
                c.handle_peer_stream(peer);
                if let Some(o) = c.outbox_mut(peer) {
                    o.handle_disconnected(now);
                }
            }
            LinkEvent::Refused(r) => self.r.audit(pb::AuditRecord {
                version: 1,
                kind: pb::AuditKind::PeerRefused as i32,
                time_ms: now,
                peer: r
                    .identity
                    .as_ref()
                    .map(|i| i.uri())
                    .or_else(|| r.peer.clone())
                    .unwrap_or_else(|| r.remote.to_string()),
                detail: format!("{:?} {:?}: {}", r.direction, r.kind, r.reason).chars().take(200).collect(),
                ..Default::default()
            }),
            LinkEvent::Violation { identity, detail, .. } => self.r.audit(pb::AuditRecord {
                version: 1,
                kind: pb::AuditKind::PeerRefused as i32,
                time_ms: now,
                peer: identity.uri(),
                detail: format!("protocol violation: {detail}").chars().take(200).collect(),
                ..Default::default()
            }),
        }
        self.r.kick();
    }
}

impl InboundHandler for Inbound {
    fn envelope<'a>(
        &'a self,
        from: Arc<RemotePeer>,
        header: pb::EnvelopeHeader,
        payload: &'a mut InboundPayload,
    ) -> BoxFuture<'a, EnvelopeAnswer> {
        let msg_id = envelope::parse_context(&header.context).map(|c| c.msg_id).unwrap_or_default();
        let span = crate::rpc::message_span("transfer_in", &msg_id);
        Box::pin(tracing::Instrument::instrument(self.envelope_inner(from, header, payload), span))
    }

    fn receipt(&self, from: Arc<RemotePeer>, receipt: pb::ReceiptTransfer) -> BoxFuture<'_, pb::ReceiptAck> {
        Box::pin(self.receipt_inner(from, receipt))
    }

    fn directory_query(
        &self,
        from: Arc<RemotePeer>,
        query: pb::DirectoryQuery,
    ) -> BoxFuture<'_, pb::DirectoryAnswer> {
        Box::pin(self.directory_inner(from, query))
    }

    /// Cosigns the peer's checkpoint with this relay's witness key; the
    /// log key is the one in the peer's (mTLS-authenticated) Hello, under
    /// the origin of its certificate identity (a Hello claiming another
    /// relay's origin is refused).
    fn cosign(&self, from: Arc<RemotePeer>, request: pb::CosignRequest) -> BoxFuture<'_, pb::CosignResponse> {
        Box::pin(async move {
            match &self.r.witness {
                Some(w) => {
                    let resp = w.cosign_for_peer(&from.identity, &from.hello, &request).await;
                    if !resp.error.is_empty() {
                        tracing::warn!(peer = %from.identity, error = %resp.error, "cosign request refused");
                    }
                    resp
                }
                None => pb::CosignResponse {
                    cosignature_line: String::new(),
                    error: "witnessing is not offered by this relay".into(),
                },
            }
        })
    }

    fn event(&self, event: &LinkEvent) {
        self.link_event(event);
    }
}

/// The member category in `addr`'s directory entry at this relay (None: no
/// entry, or one that does not decode); for the H0 check of a local Send.
pub fn law_enforcement_of(store: &crate::store::Store, addr: &focal_proto::Address) -> Option<bool> {
    use prost::Message;
    let entry = store.directory_entry(addr).ok()??;
    let body = pb::DirectoryEntryBody::decode(entry.signed?.body.as_slice()).ok()?;
    Some(body.law_enforcement)
}
