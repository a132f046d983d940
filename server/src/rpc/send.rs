//! `Relay.Send`: header first, then payload chunks. The checks run in this
//! order and each refusal has its own code:
//!
//! 1. caller role fp (PERMISSION_DENIED);
//! 2. the first message is a header whose context parses (INVALID_ARGUMENT
//!    naming the field), with a 32-byte payload digest and no relay fields;
//! 3. context sender == caller address (PERMISSION_DENIED);
//! 4. sender_cert verifies and is the caller's identity (INVALID_ARGUMENT /
//!    PERMISSION_DENIED);
//! 5. the signature (INVALID_ARGUMENT "bad signature"); then the H2 rule for
//!    forwards leaving this network (PERMISSION_DENIED "HANDLING: ...",
//!    reason HANDLING; see `docs/HANDLING.md`);
//!    Then escalation pairs (INVALID_ARGUMENT) and, for a broadcast to
//!    another network, `broadcast.allow_send` (PERMISSION_DENIED naming it);
//! 6. expiry and clock skew (FAILED_PRECONDITION), lifetime (INVALID_ARGUMENT);
//! 7. size, store space, send rate (RESOURCE_EXHAUSTED);
//! 8. duplicate (sender, msg id) (ALREADY_EXISTS);
//! 9. a next hop for every recipient network (FAILED_PRECONDITION "no
//!    federation route to <net>"); recipients refused later, here (policy,
//!    loop) or by another relay (e.g. a network the hub does not know), get
//!    a signed REFUSED non-delivery receipt in the sender's receipts while
//!    the Send is ACCEPTED;
//! 10. the payload streamed to the store while SHA-256 and size are computed
//!     and compared with the header (INVALID_ARGUMENT);
//!
//! then the group commit, and only after its fsync, ACCEPTED. Refusals from
//! step 3 on are written to the audit log (metadata only).

use std::collections::BTreeSet;
use std::time::Duration;

use focal_proto::envelope::{self, ValidContext};
use focal_proto::pb::{self, send_request::Part};
use focal_proto::{Identity, NetworkId};
use rustls_pki_types::CertificateDer;
use tonic::{Request, Status, Streaming};
use tracing::Instrument;

use super::{Shared, now_ms, require_fp};
use crate::RelayError;
use crate::core::relay::Origin;
use crate::core::routing::RouteInput;
use crate::route::route_remote;
use crate::store::fed::{RouteOutcome, RouteRequest};
use crate::store::payload::PayloadError;

/// A refusal, with the reason the audit record carries (None: not audited).
struct Refused {
    status: Status,
    reason: Option<pb::RefusalReason>,
}

fn refuse(status: Status, reason: pb::RefusalReason) -> Refused {
    Refused { status, reason: Some(reason) }
}

/// Largest `SendRequest` the relay decodes: a header whose context lists
/// [`focal_proto::envelope::MAX_RECIPIENTS`] addresses (about 250 KB with
/// the certificate), or a payload chunk of 64 KiB. tonic's default, 4 MiB,
/// let each stalled stream hold that much.
pub(crate) const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The client's next `SendRequest`, or DEADLINE_EXCEEDED when none comes
/// within `idle`.
async fn next_part(
    stream: &mut Streaming<pb::SendRequest>,
    idle: Duration,
) -> Result<Option<pb::SendRequest>, Status> {
    match tokio::time::timeout(idle, stream.message()).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no Send data from the client for {} s: the upload is abandoned",
            idle.as_secs()
        ))),
    }
}

/// A status that is not a relay decision (the client's stream failed).
fn unaudited(status: Status) -> Refused {
    Refused { status, reason: None }
}

pub(super) async fn send(
    shared: &Shared,
    req: Request<Streaming<pb::SendRequest>>,
) -> Result<pb::SendResponse, Status> {
    let caller = require_fp(&req, "send messages")?;
    let idle = Duration::from_secs(shared.config.limits.upload_idle_secs);
    let mut stream = req.into_inner();
    let header = match next_part(&mut stream, idle).await? {
        Some(pb::SendRequest { part: Some(Part::Header(h)) }) => h,
        Some(_) => return Err(Status::invalid_argument("the first SendRequest must carry the header")),
        None => return Err(Status::invalid_argument("empty Send: no header")),
    };
    let ctx = envelope::parse_context(&header.context)
        .map_err(|e| Status::invalid_argument(format!("context: {e}")))?;
    if header.payload_sha256.len() != 32 {
        return Err(Status::invalid_argument(format!(
            "payload_sha256: must be 32 bytes, got {}",
            header.payload_sha256.len()
        )));
    }
    if !header.hops.is_empty() {
        return Err(Status::invalid_argument("hops: must be empty when a focal point sends"));
    }
    if !header.deliver_to.is_empty() {
        return Err(Status::invalid_argument("deliver_to: must be empty when a focal point sends"));
    }

    let now = now_ms();
    let span = super::message_span("send", &ctx.msg_id);
    match checked(shared, &caller, &ctx, header.clone(), stream, now).instrument(span.clone()).await {
        Ok(r) => Ok(r),
        Err(Refused { status, reason }) => {
            let _in_span = span.enter();
            if let Some(reason) = reason {
                shared.store.audit_nowait(pb::AuditRecord {
                    version: 1,
                    kind: pb::AuditKind::Refused as i32,
                    time_ms: now,
                    msg_id: ctx.msg_id.to_vec(),
                    // The caller, from its certificate: a header claiming
                    // another sender must not write records under that
                    // sender's name (the claim is in the detail).
                    sender: caller.address().to_string(),
                    recipients: ctx.recipients.iter().map(|a| a.to_string()).collect(),
                    peer: caller.uri(),
                    payload_sha256: header.payload_sha256.clone(),
                    size: header.payload_size,
                    handling: ctx.ctx.handling,
                    priority: ctx.ctx.priority,
                    reason: reason as i32,
                    detail: status.message().chars().take(200).collect(),
                    ..Default::default()
                });
            }
            tracing::info!(msg_id = %hex::encode(ctx.msg_id), code = ?status.code(), reason = status.message(), "send refused");
            Err(status)
        }
    }
}

async fn checked(
    shared: &Shared,
    caller: &Identity,
    ctx: &ValidContext,
    header: pb::EnvelopeHeader,
    mut stream: Streaming<pb::SendRequest>,
    now: i64,
) -> Result<pb::SendResponse, Refused> {
    use pb::RefusalReason as R;
    let limits = &shared.config.limits;
    let caller_addr = caller.address();
    if ctx.sender != caller_addr {
        return Err(refuse(
            Status::permission_denied(format!(
                "envelope sender {} is not the caller {caller_addr}",
                ctx.sender
            )),
            R::Policy,
        ));
    }

    let cert = CertificateDer::from(header.sender_cert.clone());
    let verified =
        focal_certs::verify_peer(&shared.trust.current(), &cert, &[], std::time::SystemTime::now())
            .map_err(|e| refuse(Status::invalid_argument(format!("sender_cert: {e}")), R::BadSignature))?;
    if &verified.identity != caller {
        return Err(refuse(
            Status::permission_denied(format!(
                "sender_cert is the certificate of {}, not of the caller {caller}",
                verified.identity
            )),
            R::Policy,
        ));
    }

    envelope::verify_signature_with_key(&header, &verified.ed25519_public)
        .map_err(|_| refuse(Status::invalid_argument("bad signature"), R::BadSignature))?;

    // Handling code H2: a forward leaving this network needs the originator's release.
    crate::core::policy::check_forward(
        &shared.config.network,
        &ctx.ctx,
        &ctx.recipients,
        &shared.trust.current(),
        std::time::SystemTime::now(),
        now,
    )
    .map_err(|r| refuse(Status::permission_denied(r.detail), r.reason))?;
    // Case work: escalation pairs well formed; broadcast allowed for this sender.
    crate::core::escalation::escalations_of(&ctx.ctx)
        .map_err(|r| refuse(Status::invalid_argument(format!("escalations: {}", r.detail)), r.reason))?;
    if !ctx.ctx.broadcast_network.is_empty() {
        let target = NetworkId::new(&ctx.ctx.broadcast_network).map_err(|e| {
            refuse(Status::invalid_argument(format!("broadcast_network: {e}")), R::Unspecified)
        })?;
        crate::core::broadcast::BroadcastPolicy::from_config(
            &shared.config.network,
            &shared.config.broadcast,
        )
        .map(|p| p.check_send(&ctx.sender, &target))
        .map_err(|e| unaudited(Status::internal(e.to_string())))?
        .map_err(|r| refuse(Status::permission_denied(r.detail), r.reason))?;
    }
    // Handling code H0: only law-enforcement members of this network may receive it.
    let local: Vec<_> =
        ctx.recipients.iter().filter(|a| a.network() == &shared.config.network).cloned().collect();
    crate::core::policy::check_h0(c_handling(ctx), &local, |a| {
        crate::relaying::inbound::law_enforcement_of(&shared.store, a)
    })
    .map_err(|r| refuse(Status::permission_denied(r.detail), r.reason))?;

    let c = &ctx.ctx;
    if c.expires_at_ms <= now {
        return Err(refuse(
            Status::failed_precondition(format!(
                "message expired: expires_at_ms {} is not after the relay clock {now}",
                c.expires_at_ms
            )),
            R::Expired,
        ));
    }
    let skew_ms = limits.max_clock_skew_secs as i64 * 1000;
    if c.created_at_ms > now + skew_ms {
        return Err(refuse(
            Status::failed_precondition(format!(
                "created_at_ms {} is {} ms ahead of the relay clock (max clock skew {} s)",
                c.created_at_ms,
                c.created_at_ms - now,
                limits.max_clock_skew_secs
            )),
            R::Policy,
        ));
    }
    let lifetime_ms = c.expires_at_ms.saturating_sub(c.created_at_ms);
    if lifetime_ms > limits.max_lifetime_secs as i64 * 1000 {
        return Err(refuse(
            Status::invalid_argument(format!(
                "lifetime of {} s exceeds this relay's maximum of {} s",
                lifetime_ms / 1000,
                limits.max_lifetime_secs
            )),
            R::Policy,
        ));
    }

    if header.payload_size > limits.max_message_bytes {
        return Err(refuse(
            Status::resource_exhausted(format!(
                "payload of {} bytes exceeds this relay's maximum of {} bytes",
                header.payload_size, limits.max_message_bytes
            )),
            R::TooLarge,
        ));
    }
    shared.store.check_space(header.payload_size).map_err(|e| refuse(e.into(), R::StoreFull))?;
    if !shared.allow_send(&caller_addr.to_string(), now) {
        return Err(refuse(
            Status::resource_exhausted(format!(
                "rate limit: more than {} sends per minute from {caller_addr}",
                limits.sends_per_minute
            )),
            R::RateLimited,
        ));
    }

    let dup = shared.store.dedup(&ctx.sender, &ctx.msg_id).map_err(|e| unaudited(e.into()))?;
    if dup.is_some() {
        // A retry takes ALREADY_EXISTS as acceptance: the batch holding the
        // first copy must be durable first.
        shared.store.durable_barrier().await.map_err(|e| unaudited(e.into()))?;
        let e = RelayError::Duplicate { sender: ctx.sender.to_string(), msg_id: hex::encode(ctx.msg_id) };
        return Err(refuse(e.into(), R::Unspecified));
    }

    // Routing: when this relay has no next hop at all for a recipient's
    // network (no direct peer, no default route), the whole Send is refused
    // here, before its payload is read, so the sender learns it at once and
    // nothing is half-delivered. Refusals decided later (policy, a loop, a
    // network unknown to the hub) reach the sender as signed REFUSED
    // receipts while the Send itself is ACCEPTED.
    let own = &shared.config.network;
    let remote: BTreeSet<&NetworkId> =
        ctx.recipients.iter().map(|a| a.network()).filter(|n| *n != own).collect();
    for net in remote {
        route_remote(&shared.routes, net)
            .map_err(|e| refuse(Status::failed_precondition(e.to_string()), R::UnknownNetwork))?;
    }
    let input = RouteInput::from_pb(&ctx.ctx, &header)
        .map_err(|e| refuse(Status::invalid_argument(e.to_string()), R::Unspecified))?;

    let mut sink = shared.store.payload_sink(header.payload_size).await.map_err(|e| unaudited(e.into()))?;
    let idle = Duration::from_secs(shared.config.limits.upload_idle_secs);
    while let Some(msg) = next_part(&mut stream, idle).await.map_err(unaudited)? {
        match msg.part {
            Some(Part::Chunk(chunk)) => sink.write(&chunk).await.map_err(payload_refusal)?,
            Some(Part::Header(_)) => {
                return Err(refuse(Status::invalid_argument("a second header in one Send"), R::Unspecified));
            }
            None => {
                return Err(refuse(Status::invalid_argument("empty SendRequest (no part)"), R::Unspecified));
            }
        }
    }
    let payload = sink.finish(&header.payload_sha256).await.map_err(payload_refusal)?;

    // A large upload takes a while: the relay's acceptance time is now.
    let now = now_ms();
    let outcome = shared
        .store
        .route(RouteRequest {
            header,
            input,
            all_recipients: ctx.recipients.clone(),
            origin: Origin::Local,
            from: caller.uri(),
            payload,
            now_ms: now,
            stream: 0,
        })
        .await
        .map_err(|e| unaudited(e.into()))?;
    let (leaf_index, at_ms) = match outcome {
        RouteOutcome::Handled { leaf_index, at_ms, refused, .. } => {
            if !refused.is_empty() {
                tracing::info!(msg_id = %hex::encode(ctx.msg_id), refused = refused.len(), "some recipients refused; REFUSED receipts stored");
            }
            (leaf_index, at_ms)
        }
        RouteOutcome::Duplicate => {
            let e = RelayError::Duplicate { sender: ctx.sender.to_string(), msg_id: hex::encode(ctx.msg_id) };
            return Err(refuse(e.into(), R::Unspecified));
        }
        RouteOutcome::Refused(r) => {
            let status = match r.reason {
                R::Policy => Status::permission_denied(r.to_string()),
                R::TooLarge | R::RateLimited | R::StoreFull => Status::resource_exhausted(r.to_string()),
                _ => Status::failed_precondition(r.to_string()),
            };
            return Err(refuse(status, r.reason));
        }
        RouteOutcome::Retry(r) => return Err(refuse(Status::resource_exhausted(r.to_string()), r.reason)),
    };
    tracing::info!(msg_id = %hex::encode(ctx.msg_id), leaf = leaf_index, "accepted");
    Ok(pb::SendResponse {
        msg_id: ctx.msg_id.to_vec(),
        accepted_at_ms: at_ms,
        audit_leaf_index: leaf_index,
        relay: shared.config.name.clone(),
    })
}

fn c_handling(ctx: &ValidContext) -> i32 {
    ctx.ctx.handling
}

fn payload_refusal(e: PayloadError) -> Refused {
    match e {
        PayloadError::Store(e) => unaudited(e.into()),
        e @ PayloadError::DigestMismatch => {
            refuse(Status::invalid_argument(e.to_string()), pb::RefusalReason::BadSignature)
        }
        e => refuse(Status::invalid_argument(e.to_string()), pb::RefusalReason::Unspecified),
    }
}
