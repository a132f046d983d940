//! `LinkHandle`: what the driver uses to send to one peer. Each request is
//! its own bidirectional stream on the peer's current connection; the call
//! returns the peer's answer from the same stream.

use std::sync::Arc;

use focal_proto::pb;
use focal_proto::pb::frame::Kind;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use super::FederationError;
use super::conn::ConnCtx;
use super::events::RemotePeer;
use super::link::{LinkStatus, PeerSlot};
use super::pipeline::TransferStream;
use super::wire::{FrameReader, ReadFail, WriteFail, frame, kind_name, stream_code, write_frame};
use crate::config::PeerConfig;

/// Sends to one configured peer. Cheap to clone; stays valid across
/// reconnects (each call uses whichever connection is current when it
/// starts, and fails with `NotConnected` if there is none).
///
/// Ordering: calls are independent streams. Two calls in flight at once
/// may be processed by the peer in either order; a caller that needs FIFO
/// (the outbox, per peer) awaits each answer before the next call.
#[derive(Clone)]
pub struct LinkHandle {
    pub(crate) slot: Arc<PeerSlot>,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle").field("peer", &self.slot.config.name).finish()
    }
}

impl LinkHandle {
    /// The peer's configuration.
    pub fn peer(&self) -> &PeerConfig {
        &self.slot.config
    }

    /// The link's status now.
    pub fn status(&self) -> LinkStatus {
        self.slot.status.borrow().clone()
    }

    /// A watch of the link's status (changes on connect, disconnect, dial
    /// failure and close).
    pub fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.slot.status.subscribe()
    }

    /// The peer on the current connection, if the link is up.
    pub fn remote(&self) -> Option<Arc<RemotePeer>> {
        self.slot.status.borrow().remote.clone()
    }

    /// Waits until the link is up (returns at once if it is).
    pub async fn wait_connected(&self) -> Result<Arc<RemotePeer>, FederationError> {
        let mut rx = self.watch();
        let s = rx.wait_for(|s| s.remote.is_some() || s.closed).await.map_err(|_| FederationError::Closed)?;
        s.remote.clone().ok_or(FederationError::Closed)
    }

    fn current(&self) -> Result<Arc<ConnCtx>, FederationError> {
        let s = self.slot.status.borrow();
        if s.closed {
            return Err(FederationError::Closed);
        }
        s.ctx.clone().ok_or_else(|| FederationError::NotConnected { peer: self.slot.config.name.clone() })
    }

    /// Transfers one envelope: `TransferStart{header}`, the payload read
    /// from `payload` in chunks of `Tuning::chunk_size` (one buffer, never
    /// the whole payload in memory), `TransferEnd`; then waits for the
    /// peer's `TransferAck` (sent after it persisted the envelope). The
    /// source must yield exactly `header.payload_size` bytes, otherwise the
    /// stream is reset and `PayloadSize` returned. Only a returned ack tells
    /// what the peer did; any error means "unknown, keep it and retry".
    pub async fn send_envelope<R>(
        &self,
        header: pb::EnvelopeHeader,
        mut payload: R,
    ) -> Result<pb::TransferAck, FederationError>
    where
        R: AsyncRead + Unpin,
    {
        let ctx = self.current()?;
        let (send, recv) = ctx.conn.open_bi().await.map_err(|e| lost(&ctx, e.to_string()))?;
        let mut send = ResetOnDrop::new(send);
        let mut buf = vec![0u8; ctx.tuning.chunk_size];
        match write_transfer(&ctx, &mut send, &mut buf, header, &mut payload).await {
            Ok(()) => send.finish(),
            // The peer answered before reading everything (duplicate,
            // refused): its ack is on the receive side.
            Err(Step::Write(WriteFail::Stream(quinn::WriteError::Stopped(_)))) => {}
            Err(e) => return Err(e.into_error(&ctx)),
        }
        read_answer(&ctx, recv, "TransferAck", |k| match k {
            Kind::TransferAck(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Sends a receipt towards its sender's relay; returns the peer's ack.
    pub async fn send_receipt(
        &self,
        receipt: pb::ReceiptTransfer,
    ) -> Result<pb::ReceiptAck, FederationError> {
        self.request(Kind::ReceiptTransfer(receipt), "ReceiptAck", |k| match k {
            Kind::ReceiptAck(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Asks the peer's directory.
    pub async fn query_directory(
        &self,
        query: pb::DirectoryQuery,
    ) -> Result<pb::DirectoryAnswer, FederationError> {
        self.request(Kind::DirectoryQuery(query), "DirectoryAnswer", |k| match k {
            Kind::DirectoryAnswer(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Asks the peer to witness (cosign) a checkpoint of our audit log.
    pub async fn request_cosign(
        &self,
        request: pb::CosignRequest,
    ) -> Result<pb::CosignResponse, FederationError> {
        self.request(Kind::CosignRequest(request), "CosignResponse", |k| match k {
            Kind::CosignResponse(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Round trip of a ping on its own stream (liveness, tests).
    pub async fn ping(&self, nonce: u64) -> Result<(), FederationError> {
        let pong = self
            .request(Kind::Ping(pb::Ping { nonce }), "Pong", |k| match k {
                Kind::Pong(p) => Some(p),
                _ => None,
            })
            .await?;
        if pong.nonce != nonce {
            return Err(FederationError::Protocol {
                peer: self.slot.config.name.clone(),
                detail: "pong with another nonce".into(),
            });
        }
        Ok(())
    }

    async fn request<T>(
        &self,
        req: Kind,
        what: &'static str,
        pick: impl FnOnce(Kind) -> Option<T>,
    ) -> Result<T, FederationError> {
        let ctx = self.current()?;
        let (mut send, recv) = ctx.conn.open_bi().await.map_err(|e| lost(&ctx, e.to_string()))?;
        match write_frame(&mut send, &frame(req), ctx.tuning.max_frame).await {
            Ok(()) => {}
            Err(WriteFail::Encode(e)) => return Err(FederationError::Encode(e)),
            Err(WriteFail::Stream(e)) => return Err(lost(&ctx, e.to_string())),
        }
        let _ = send.finish();
        read_answer(&ctx, recv, what, pick).await
    }

    /// Opens a transfer stream on the current connection: several envelopes
    /// one after the other, answered in order (see [`super::pipeline`]).
    pub async fn open_transfer_stream(&self) -> Result<TransferStream, FederationError> {
        TransferStream::open(self.current()?).await
    }
}

/// A send stream that is reset (`ABORTED`) when dropped before it was
/// finished: a transfer its sender cancels (an outbox item purged in
/// flight) must not reach the peer as a stream that merely ended, and the
/// reset tells the peer to discard what it has not received whole. (quinn
/// finishes a dropped stream by itself.)
pub(crate) struct ResetOnDrop {
    send: quinn::SendStream,
    finished: bool,
}

impl ResetOnDrop {
    pub(crate) fn new(send: quinn::SendStream) -> Self {
        ResetOnDrop { send, finished: false }
    }

    /// Ends the stream normally: everything written is delivered.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
        let _ = self.send.finish();
    }
}

impl std::ops::Deref for ResetOnDrop {
    type Target = quinn::SendStream;
    fn deref(&self) -> &quinn::SendStream {
        &self.send
    }
}

impl std::ops::DerefMut for ResetOnDrop {
    fn deref_mut(&mut self) -> &mut quinn::SendStream {
        &mut self.send
    }
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.send.reset(quinn::VarInt::from_u32(stream_code::ABORTED));
        }
    }
}

/// Why writing one envelope on a transfer stream failed.
pub(crate) enum Step {
    Write(WriteFail),
    Source(std::io::Error),
    Size { declared: u64, actual: u64 },
}

impl Step {
    /// The caller's error (the stream has been reset where that is needed).
    pub(crate) fn into_error(self, ctx: &ConnCtx) -> FederationError {
        match self {
            Step::Write(WriteFail::Encode(e)) => FederationError::Encode(e),
            Step::Write(WriteFail::Stream(e)) => lost(ctx, e.to_string()),
            Step::Source(e) => FederationError::PayloadSource(e),
            Step::Size { declared, actual } => FederationError::PayloadSize { declared, actual },
        }
    }
}

/// Writes one envelope: `TransferStart{header}`, the payload read from
/// `payload` in chunks of `buf.len()` bytes, `TransferEnd`. A payload that
/// fits in one chunk goes out in a single write with its frames. The source
/// must yield exactly `header.payload_size` bytes, else the stream is reset.
pub(crate) async fn write_transfer<R: AsyncRead + Unpin>(
    ctx: &ConnCtx,
    send: &mut quinn::SendStream,
    buf: &mut [u8],
    header: pb::EnvelopeHeader,
    mut payload: R,
) -> Result<(), Step> {
    let max = ctx.tuning.max_frame;
    let declared = header.payload_size;
    let encode = |f: &pb::Frame| {
        focal_proto::frame::encode(f, max).map_err(|e| Step::Write(WriteFail::Encode(e.to_string())))
    };
    let result = async {
        let mut out = encode(&frame(Kind::TransferStart(pb::TransferStart { header: Some(header) })))?;
        let mut total = 0u64;
        loop {
            let n = fill(&mut payload, buf).await.map_err(Step::Source)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > declared {
                return Err(Step::Size { declared, actual: total });
            }
            out.extend(encode(&frame(Kind::PayloadChunk(pb::PayloadChunk { data: buf[..n].to_vec() })))?);
            if total < declared {
                send.write_all(&out).await.map_err(|e| Step::Write(WriteFail::Stream(e)))?;
                out.clear();
            }
        }
        if total != declared {
            return Err(Step::Size { declared, actual: total });
        }
        out.extend(encode(&frame(Kind::TransferEnd(pb::TransferEnd {})))?);
        send.write_all(&out).await.map_err(|e| Step::Write(WriteFail::Stream(e)))
    }
    .await;
    if let Err(Step::Source(_) | Step::Size { .. } | Step::Write(WriteFail::Encode(_))) = &result {
        let _ = send.reset(quinn::VarInt::from_u32(stream_code::ABORTED));
    }
    result
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
async fn fill<R: AsyncRead + Unpin>(src: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = src.read(&mut buf[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

pub(crate) fn lost(ctx: &ConnCtx, detail: String) -> FederationError {
    let detail = match ctx.conn.close_reason() {
        Some(e) => ctx.end_reason(&e),
        None => detail,
    };
    FederationError::LinkLost { peer: ctx.peer.name().to_owned(), detail }
}

/// Reads the single answer frame of a request stream.
async fn read_answer<T>(
    ctx: &ConnCtx,
    recv: quinn::RecvStream,
    what: &'static str,
    pick: impl FnOnce(Kind) -> Option<T>,
) -> Result<T, FederationError> {
    let mut reader = FrameReader::new(recv, ctx.tuning.max_frame, ctx.tuning.response_timeout, None);
    let peer = ctx.peer.name().to_owned();
    match reader.next().await {
        Ok(Some(f)) => {
            let name = kind_name(&f);
            match f.kind.and_then(pick) {
                Some(t) => Ok(t),
                None => {
                    let detail = format!("answered with {name} where {what} was expected");
                    ctx.violation(detail.clone());
                    Err(FederationError::Protocol { peer, detail })
                }
            }
        }
        Ok(None) => Err(lost(ctx, format!("stream closed without a {what}"))),
        Err(ReadFail::Violation(detail)) => {
            ctx.violation(detail.clone());
            Err(FederationError::Protocol { peer, detail })
        }
        Err(ReadFail::Gone(d)) => Err(lost(ctx, d)),
        Err(ReadFail::Timeout) => Err(FederationError::Timeout { peer, what }),
    }
}
