//! `Relay.Fetch` and `Relay.Ack`: a recipient downloads one message's
//! payload (header first, then 64 KiB chunks from any offset, read from the
//! store chunk by chunk, never whole), and acknowledges it with a DELIVERED
//! receipt it signed, which the relay verifies and files for the sender.

use std::sync::Arc;

use focal_proto::pb::{self, fetch_response::Part};
use focal_proto::{Address, Identity};
use prost::Message;
use rustls_pki_types::CertificateDer;
use tonic::{Request, Status};

use super::{BoxStream, Shared, now_ms, parse_member, parse_msg_id, require_fp};
use crate::store::AckRequest;
use crate::store::payload::PayloadSource;
use crate::store::records::StoredEnvelope;

/// Bytes per Fetch chunk.
pub(crate) const FETCH_CHUNK: usize = 64 * 1024;

/// The message (sender, msg id) as held for `caller`: PERMISSION_DENIED if
/// the caller is not one of its recipients here, NOT_FOUND if it is not (or
/// no longer) in the caller's mailbox.
fn held_for(
    shared: &Shared,
    caller: &Identity,
    sender: &Address,
    msg_id: &[u8; 16],
) -> Result<StoredEnvelope, Status> {
    let owner = caller.address();
    let not_found = || {
        Status::not_found(format!(
            "message {} from {sender} is not in the mailbox of {owner} (unknown, acknowledged or expired)",
            hex::encode(msg_id)
        ))
    };
    let env = shared.store.envelope(sender, msg_id)?.ok_or_else(not_found)?;
    let me = owner.to_string();
    if !env.recipients.contains(&me) {
        return Err(Status::permission_denied(format!(
            "{owner} is not a recipient of message {} from {sender}",
            hex::encode(msg_id)
        )));
    }
    if !shared.store.in_mailbox(&owner, sender, msg_id)? {
        return Err(not_found());
    }
    Ok(env)
}

struct FetchState {
    header: Option<pb::EnvelopeHeader>,
    source: PayloadSource,
    done: bool,
}

pub(super) async fn fetch(
    shared: Arc<Shared>,
    req: Request<pb::FetchRequest>,
) -> Result<BoxStream<pb::FetchResponse>, Status> {
    let caller = require_fp(&req, "fetch messages")?;
    let r = req.into_inner();
    let msg_id = parse_msg_id("msg_id", &r.msg_id)?;
    let sender = parse_member("sender", &r.sender)?;
    let env = held_for(&shared, &caller, &sender, &msg_id)?;
    // Read first, then wait: a message whose batch is applied but not yet
    // fsynced is served only once it is durable.
    shared.store.durable_barrier().await?;
    if r.offset > env.payload_size {
        return Err(Status::out_of_range(format!(
            "offset {} is beyond the payload's {} bytes",
            r.offset, env.payload_size
        )));
    }
    let source = shared.store.payload(&env, r.offset).await?;
    tracing::info!(msg_id = %hex::encode(msg_id), to = %caller, offset = r.offset, "delivering (fetch)");
    let state = FetchState { header: env.header, source, done: false };
    Ok(Box::pin(futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(h) = st.header.take() {
            return Some((Ok(pb::FetchResponse { part: Some(Part::Header(h)) }), st));
        }
        match st.source.next_chunk(FETCH_CHUNK).await {
            Ok(Some(chunk)) => Some((Ok(pb::FetchResponse { part: Some(Part::Chunk(chunk)) }), st)),
            Ok(None) => None,
            Err(e) => {
                st.done = true;
                tracing::error!(error = %e, "payload read failed during fetch");
                Some((Err(Status::internal(format!("reading the payload failed: {e}"))), st))
            }
        }
    })))
}

pub(super) async fn ack(shared: &Shared, req: Request<pb::AckRequest>) -> Result<pb::AckResponse, Status> {
    let caller = require_fp(&req, "acknowledge messages")?;
    let r = req.into_inner();
    let msg_id = parse_msg_id("msg_id", &r.msg_id)?;
    let sender = parse_member("sender", &r.sender)?;
    let env = held_for(shared, &caller, &sender, &msg_id)?;

    let receipt = r.delivered.ok_or_else(|| {
        Status::invalid_argument("delivered: a DELIVERED receipt signed by the caller is required")
    })?;
    let blob =
        receipt.signed.as_ref().ok_or_else(|| Status::invalid_argument("delivered.signed: missing"))?;
    focal_proto::signed::verify_blob(focal_proto::signed::TAG_RECEIPT, blob)
        .map_err(|e| Status::invalid_argument(format!("delivered: {e}")))?;
    let signer = focal_certs::verify_peer(
        &shared.trust.current(),
        &CertificateDer::from(blob.signer_cert.clone()),
        &[],
        std::time::SystemTime::now(),
    )
    .map_err(|e| Status::invalid_argument(format!("delivered.signer_cert: {e}")))?;
    if signer.identity != caller {
        return Err(Status::permission_denied(format!(
            "the receipt is signed by {}, not by the caller {caller}",
            signer.identity
        )));
    }
    let body = pb::ReceiptBody::decode(blob.body.as_slice())
        .map_err(|e| Status::invalid_argument(format!("delivered.body: malformed ReceiptBody: {e}")))?;
    let me = caller.address().to_string();
    let digest = env.header.as_ref().map(|h| h.payload_sha256.as_slice()).unwrap_or_default();
    let mismatch = |field: &str, want: String| {
        Err(Status::invalid_argument(format!("delivered.body.{field}: must be {want} for this message")))
    };
    if body.version != 1 {
        return mismatch("version", "1".into());
    }
    if body.msg_id != msg_id {
        return mismatch("msg_id", hex::encode(msg_id));
    }
    if body.original_sender != sender.to_string() {
        return mismatch("original_sender", sender.to_string());
    }
    if body.subject != me {
        return mismatch("subject", me);
    }
    if body.kind() != pb::ReceiptKind::Delivered {
        return mismatch("kind", "RECEIPT_KIND_DELIVERED".into());
    }
    if body.signer != me {
        return mismatch("signer", me);
    }
    if body.payload_sha256 != digest {
        return mismatch("payload_sha256", format!("the message's digest {}", hex::encode(digest)));
    }

    shared
        .store
        .ack(AckRequest { recipient: caller.address(), sender, msg_id, receipt, now_ms: now_ms() })
        .await?;
    tracing::info!(msg_id = %hex::encode(msg_id), "acknowledged");
    Ok(pb::AckResponse {})
}
