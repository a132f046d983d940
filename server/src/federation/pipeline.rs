//! Transfer streams that carry several envelopes one after the other: the
//! receiving loop ([`serve_transfers`]) and the sending half
//! ([`TransferStream`], opened by `LinkHandle::open_transfer_stream`).
//!
//! On the wire a transfer stream is `TransferStart`, payload chunks,
//! `TransferEnd`, repeated, then the end of the stream; the answers are one
//! `TransferAck` per envelope, in the same order, then the end of the
//! answer stream. A stream with one envelope is what every transfer was
//! before pipelining, so a single transfer is the same on the wire.
//!
//! The receiver reads envelope after envelope and hands each to the
//! handler; an answer the store will give later (after its fsync) waits in
//! a bounded queue of pending answers while the next envelope is read, so
//! one fsync covers many envelopes of the stream. The answers are written
//! strictly in order. After an immediate RETRY, or when the handler leaves
//! more than [`SKIP_MAX`] bytes of a payload unread, the receiver reads no
//! further: what the sender gets no answer for, it sends again.

use std::sync::Arc;

use focal_proto::pb;
use focal_proto::pb::frame::Kind;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use super::FederationError;
use super::conn::ConnCtx;
use super::inbound::{BoxFuture, EnvelopeAnswer, InboundHandler, InboundPayload, Next};
use super::outbound::{ResetOnDrop, lost, write_transfer};
use super::wire::{FrameReader, ReadFail, frame, kind_name, stream_code, write_frame};

/// Answers a receiver keeps pending on one stream; beyond it the receiver
/// stops reading until the oldest is written (flow control slows the sender).
pub const MAX_PENDING_ANSWERS: usize = 256;

/// Largest rest of a payload the receiver skips after an early answer to
/// go on with the stream's next envelope; a larger rest ends the stream.
pub const SKIP_MAX: u64 = 1024 * 1024;

/// Serves one transfer stream whose first envelope is `first`.
pub(crate) async fn serve_transfers(
    ctx: Arc<ConnCtx>,
    handler: Arc<dyn InboundHandler>,
    mut send: quinn::SendStream,
    reader: FrameReader,
    first: pb::EnvelopeHeader,
    stream_id: u64,
) {
    let (answers, mut pending) = mpsc::channel::<BoxFuture<'static, pb::TransferAck>>(MAX_PENDING_ANSWERS);
    let from = ctx.peer.clone();
    let mut payload = InboundPayload::new(reader, ctx.clone(), first.payload_size, stream_id);
    let reading = async move {
        let mut header = first;
        loop {
            let answer = handler.envelope(from.clone(), header, &mut payload).await;
            let (answer, stop): (BoxFuture<'static, pb::TransferAck>, bool) = match answer {
                EnvelopeAnswer::Now(ack) => {
                    let stop = ack.status() == pb::TransferStatus::Retry;
                    (Box::pin(std::future::ready(ack)), stop)
                }
                EnvelopeAnswer::Queued(f) => (f, false),
            };
            if answers.send(answer).await.is_err() || stop {
                break;
            }
            if !payload.is_complete() && !payload.skip_rest(SKIP_MAX).await {
                break;
            }
            match payload.next_envelope().await {
                Next::Envelope(h) => header = h,
                Next::End | Next::Failed => break,
            }
        }
        // Whatever the peer sends after this is not read: its writes fail
        // and it retries what got no answer.
        payload.stop(stream_code::DONE);
    };
    let writing = async {
        while let Some(answer) = pending.recv().await {
            let ack = answer.await;
            if let Err(e) = write_frame(&mut send, &frame(Kind::TransferAck(ack)), ctx.tuning.max_frame).await
            {
                tracing::debug!(peer = ctx.peer.name(), "cannot answer a transfer: {e}");
                return;
            }
        }
        let _ = send.finish();
    };
    tokio::join!(reading, writing);
}

/// The sending half of a transfer stream: envelopes go out in the order
/// they are written; [`TransferStream::next_ack`] returns their answers in
/// the same order. Writing and reading may run concurrently (split with
/// [`TransferStream::split`]).
pub struct TransferStream {
    writer: TransferWriter,
    acks: TransferAcks,
}

/// Writes envelopes on a transfer stream.
pub struct TransferWriter {
    ctx: Arc<ConnCtx>,
    /// Reset if dropped unfinished (the sender cancelled the stream).
    send: ResetOnDrop,
    buf: Vec<u8>,
}

/// Reads a transfer stream's answers.
pub struct TransferAcks {
    ctx: Arc<ConnCtx>,
    reader: FrameReader,
}

impl TransferStream {
    pub(crate) async fn open(ctx: Arc<ConnCtx>) -> Result<Self, FederationError> {
        let (send, recv) = ctx.conn.open_bi().await.map_err(|e| lost(&ctx, e.to_string()))?;
        let reader = FrameReader::new(recv, ctx.tuning.max_frame, ctx.tuning.response_timeout, None);
        let buf = vec![0u8; ctx.tuning.chunk_size];
        Ok(TransferStream {
            writer: TransferWriter { ctx: ctx.clone(), send: ResetOnDrop::new(send), buf },
            acks: TransferAcks { ctx, reader },
        })
    }

    /// The two halves, to write and read concurrently.
    pub fn split(self) -> (TransferWriter, TransferAcks) {
        (self.writer, self.acks)
    }
}

impl TransferWriter {
    /// Writes one envelope (its header, then `payload`, which must yield
    /// exactly `header.payload_size` bytes). An error means the stream is
    /// unusable: nothing more can be written on it.
    pub async fn send_envelope<R>(
        &mut self,
        header: pb::EnvelopeHeader,
        payload: R,
    ) -> Result<(), FederationError>
    where
        R: AsyncRead + Unpin,
    {
        match write_transfer(&self.ctx, &mut self.send, &mut self.buf, header, payload).await {
            Ok(()) => Ok(()),
            Err(e) => Err(e.into_error(&self.ctx)),
        }
    }

    /// Ends the stream: the peer answers what it got, then closes its side.
    /// (Dropped without this, the stream is reset.)
    pub fn finish(mut self) {
        self.send.finish();
    }
}

impl TransferAcks {
    /// The answer to the oldest envelope not answered yet. Call once per
    /// envelope written, in order; an error means the stream ended or broke
    /// without that answer (the outcome is unknown: send it again).
    pub async fn next_ack(&mut self) -> Result<pb::TransferAck, FederationError> {
        let ctx = &self.ctx;
        let peer = ctx.peer.name().to_owned();
        match self.reader.next().await {
            Ok(Some(pb::Frame { kind: Some(Kind::TransferAck(a)) })) => Ok(a),
            Ok(Some(f)) => {
                let detail = format!("answered a transfer with {}", kind_name(&f));
                ctx.violation(detail.clone());
                Err(FederationError::Protocol { peer, detail })
            }
            Ok(None) => Err(lost(ctx, "the transfer stream ended before this answer".into())),
            Err(ReadFail::Violation(detail)) => {
                ctx.violation(detail.clone());
                Err(FederationError::Protocol { peer, detail })
            }
            Err(ReadFail::Gone(d)) => Err(lost(ctx, d)),
            Err(ReadFail::Timeout) => Err(FederationError::Timeout { peer, what: "TransferAck" }),
        }
    }
}
