//! One pipelined transfer stream to a peer: the items the sender task
//! hands over are written on it in that order, and the peer's answers,
//! which come back in the same order, are recorded as they arrive (the
//! outbox's ack or retry, the store's deletion with its FORWARDED record).
//!
//! The stream ends when the sender task drops its queue (the outbox moved
//! to a new stream number, after a RETRY or a lost link, or nothing was in
//! flight on it for a while), once every item written is answered. An item
//! that cannot be written, or gets no answer (the stream or the link
//! failed), goes back to the outbox as unknown (which moves the outbox to a
//! new stream number); so does every item queued after it on this stream,
//! since none may overtake it.

use focal_proto::pb;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::Relaying;
use super::sender::{Load, answered, gone, load, reader, record};
use crate::core::outbox::{ItemId, Transmit};
use crate::federation::{LinkHandle, TransferAcks};

/// Runs one pipelined stream until it ends (see the module docs).
pub(super) async fn run(
    r: &Relaying,
    peer: &str,
    link: &LinkHandle,
    mut items: mpsc::UnboundedReceiver<Transmit>,
) {
    let Some(first) = items.recv().await else { return };
    let (mut writer, acks) = match link.open_transfer_stream().await {
        Ok(s) => s.split(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot open a transfer stream");
            items.close();
            answered(r, peer, &first, None).await;
            while let Some(t) = items.recv().await {
                answered(r, peer, &t, None).await;
            }
            return;
        }
    };
    let (sent, written) = mpsc::unbounded_channel::<Transmit>();
    let writing = async move {
        let mut next = Some(first);
        let mut broken = false;
        loop {
            let t = match next.take() {
                Some(t) => t,
                None => match items.recv().await {
                    Some(t) => t,
                    None => break,
                },
            };
            if broken {
                answered(r, peer, &t, None).await;
                continue;
            }
            match load(r, peer, &t).await {
                Err(why) => gone(r, peer, &t, why.0),
                Ok(Load::Envelope(header, src)) => match writer.send_envelope(header, reader(src)).await {
                    Ok(()) => {
                        let _ = sent.send(t);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "pipelined transfer failed");
                        broken = true;
                        items.close();
                        answered(r, peer, &t, None).await;
                    }
                },
                // Not readable now, or not an envelope (never pipelined):
                // later items must not overtake it.
                Ok(Load::Later | Load::Receipt(_)) => {
                    broken = true;
                    items.close();
                    answered(r, peer, &t, None).await;
                }
            }
        }
        writer.finish();
    };
    tokio::join!(writing, record_answers(r, peer, acks, written));
}

/// Reads the answer to each item written, in order, and records it.
async fn record_answers(
    r: &Relaying,
    peer: &str,
    mut acks: TransferAcks,
    mut written: mpsc::UnboundedReceiver<Transmit>,
) {
    let mut deleting = FuturesUnordered::new();
    let mut failed = false;
    loop {
        let t = tokio::select! {
            biased;
            Some(()) = deleting.next(), if !deleting.is_empty() => continue,
            t = written.recv() => match t {
                Some(t) => t,
                None => break,
            },
        };
        let status = if failed {
            None
        } else {
            match acks.next_ack().await {
                Ok(ack) if answers(&ack, &t) => {
                    tracing::debug!(seq = t.seq, status = ?ack.status(), detail = ack.detail, "transfer acked");
                    Some(ack.status())
                }
                Ok(ack) => {
                    tracing::warn!(
                        seq = t.seq,
                        ?ack,
                        "a pipelined answer names another envelope; stream dropped"
                    );
                    failed = true;
                    None
                }
                Err(e) => {
                    tracing::debug!(seq = t.seq, error = %e, "no answer on the pipelined stream");
                    failed = true;
                    None
                }
            }
        };
        if let Some(d) = record(r, peer, &t, status) {
            deleting.push(d);
        }
    }
    while deleting.next().await.is_some() {}
}

/// Whether `ack` is the answer to item `t`.
fn answers(ack: &pb::TransferAck, t: &Transmit) -> bool {
    match &t.id {
        ItemId::Envelope { sender, msg_id } => {
            ack.msg_id == msg_id.as_slice() && ack.sender == sender.to_string()
        }
        ItemId::Receipt { .. } => false,
    }
}
