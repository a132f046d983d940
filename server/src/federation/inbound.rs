//! The driver's side of inbound traffic: the `InboundHandler` trait the
//! relay implements (store, directory, audit witness) and `InboundPayload`,
//! the streamed payload of an inbound envelope transfer.
//!
//! The handler is called once per inbound request, concurrently for
//! different streams (at most `Tuning::max_inbound_streams` per peer). What
//! it returns is written back on the same stream, so an envelope is acked
//! only when its answer resolves: persist (fsync) first, then answer
//! `TRANSFER_STATUS_STORED`.
//!
//! A transfer stream may carry several envelopes one after the other
//! (`TransferStart`, chunks, `TransferEnd`, then the next `TransferStart`,
//! until the stream's end): the sender's pipelined stream. They are handed
//! to the handler in order, one at a time; its answers are written back in
//! the same order. The handler may queue an envelope for its store and
//! return an [`EnvelopeAnswer::Queued`] future, so the next envelope is read
//! while the store commits. After an immediate RETRY the rest of the stream
//! is not read (the sender retries what got no answer).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use focal_proto::pb;
use focal_proto::pb::frame::Kind;
use tokio::io::{AsyncRead, ReadBuf};

use super::conn::ConnCtx;
use super::events::{LinkEvent, RemotePeer};
use super::tuning::MAX_CHUNK;
use super::wire::{FrameReader, ReadFail, kind_name};

/// A boxed, sendable future (the handler trait needs no `async_trait`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer to one envelope of a transfer stream.
pub enum EnvelopeAnswer {
    /// Known now (refused, duplicate, or RETRY before anything was stored).
    Now(pb::TransferAck),
    /// Queued for the store: resolves once the envelope's batch is durable.
    /// Answers are written in stream order, so the handler must have queued
    /// the envelope (fixed its place among the stream's envelopes) before it
    /// returns this.
    Queued(BoxFuture<'static, pb::TransferAck>),
}

impl From<pb::TransferAck> for EnvelopeAnswer {
    fn from(ack: pb::TransferAck) -> Self {
        EnvelopeAnswer::Now(ack)
    }
}

impl std::fmt::Debug for EnvelopeAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeAnswer::Now(a) => f.debug_tuple("Now").field(a).finish(),
            EnvelopeAnswer::Queued(_) => f.write_str("Queued"),
        }
    }
}

/// What a relay does with requests arriving from its peers. Implementations
/// must not block the thread; they may take as long as they need (a slow
/// handler only slows the stream it serves, and flow control slows that
/// peer).
pub trait InboundHandler: Send + Sync + 'static {
    /// An envelope transfer: `header` as sent, `payload` streamed from the
    /// peer (exactly `header.payload_size` bytes, in chunks of at most
    /// 64 KiB, never all in memory). Read it to the end (`next_chunk` returns
    /// `Ok(None)` only after a complete, well-formed transfer), persist,
    /// then answer. Returning early (duplicate, refused) is fine: the rest
    /// of the payload is skipped (a large rest ends the stream instead).
    /// [`InboundPayload::stream_id`] tells envelopes of one stream from
    /// those of another.
    fn envelope<'a>(
        &'a self,
        from: Arc<RemotePeer>,
        header: pb::EnvelopeHeader,
        payload: &'a mut InboundPayload,
    ) -> BoxFuture<'a, EnvelopeAnswer>;

    /// A receipt travelling back towards its sender.
    fn receipt(&self, from: Arc<RemotePeer>, receipt: pb::ReceiptTransfer) -> BoxFuture<'_, pb::ReceiptAck>;

    /// A directory lookup for a member (or `*@network`) of this network.
    fn directory_query(
        &self,
        from: Arc<RemotePeer>,
        query: pb::DirectoryQuery,
    ) -> BoxFuture<'_, pb::DirectoryAnswer>;

    /// A request to witness (cosign) the peer's audit-log checkpoint.
    fn cosign(&self, from: Arc<RemotePeer>, request: pb::CosignRequest) -> BoxFuture<'_, pb::CosignResponse>;

    /// Every link event, synchronously, before it is broadcast: the place to
    /// write peer-refused / violation audit records. Must return quickly
    /// (hand off to a bounded channel); it runs on link tasks.
    fn event(&self, event: &LinkEvent) {
        let _ = event;
    }
}

#[derive(Debug)]
enum State {
    Streaming,
    Complete,
    Failed(io::ErrorKind, String),
}

/// What follows an envelope on a transfer stream.
#[derive(Debug)]
pub(crate) enum Next {
    /// Another envelope (the payload now streams its bytes).
    Envelope(pb::EnvelopeHeader),
    /// The clean end of the stream.
    End,
    /// The peer broke the protocol or the stream failed (already reported).
    Failed,
}

/// The payload of one inbound envelope transfer, read from its QUIC stream
/// as the handler asks for it (`next_chunk`, or `tokio::io::AsyncRead`).
///
/// Enforced here, each a protocol violation that closes the connection:
/// chunks of 1..=64 KiB, no more bytes than the header's `payload_size`,
/// exactly that many at `TransferEnd`, no other frame; after `TransferEnd`
/// only the next `TransferStart` or the end of the stream.
/// A stream the peer resets, or one that stalls for
/// `Tuning::stream_idle_timeout`, yields an error (`ConnectionReset`,
/// `TimedOut`), never a silent short payload.
pub struct InboundPayload {
    reader: FrameReader,
    ctx: Arc<ConnCtx>,
    declared: u64,
    received: u64,
    state: State,
    current: Vec<u8>,
    pos: usize,
    stream_id: u64,
}

impl std::fmt::Debug for InboundPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundPayload")
            .field("declared", &self.declared)
            .field("received", &self.received)
            .field("state", &self.state)
            .finish()
    }
}

impl InboundPayload {
    pub(crate) fn new(reader: FrameReader, ctx: Arc<ConnCtx>, declared: u64, stream_id: u64) -> Self {
        InboundPayload {
            reader,
            ctx,
            declared,
            received: 0,
            state: State::Streaming,
            current: Vec::new(),
            pos: 0,
            stream_id,
        }
    }

    /// The QUIC stream this envelope came on (unique among the streams of
    /// its connection): envelopes with the same id are one pipelined stream.
    pub fn stream_id(&self) -> u64 {
        self.stream_id
    }

    /// Skips what the handler left unread of this envelope, if at most
    /// `max` bytes remain; false if more remain or the stream failed.
    pub(crate) async fn skip_rest(&mut self, max: u64) -> bool {
        if self.declared.saturating_sub(self.received) > max {
            return false;
        }
        self.current.clear();
        self.pos = 0;
        loop {
            match self.next_chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// After a complete envelope: reads what follows it on the stream.
    /// A stall of `stream_idle_timeout` here is the end of the stream.
    pub(crate) async fn next_envelope(&mut self) -> Next {
        debug_assert!(self.is_complete());
        match self.reader.next().await {
            Ok(None) => Next::End,
            Ok(Some(pb::Frame { kind: Some(Kind::TransferStart(start)) })) => match start.header {
                Some(header) => {
                    self.declared = header.payload_size;
                    self.received = 0;
                    self.state = State::Streaming;
                    self.current.clear();
                    self.pos = 0;
                    Next::Envelope(header)
                }
                None => {
                    self.ctx.violation("TransferStart without a header".into());
                    Next::Failed
                }
            },
            Ok(Some(f)) => {
                self.ctx.violation(format!("{} after TransferEnd", kind_name(&f)));
                Next::Failed
            }
            Err(ReadFail::Violation(d)) => {
                self.ctx.violation(d);
                Next::Failed
            }
            Err(ReadFail::Gone(_) | ReadFail::Timeout) => Next::Failed,
        }
    }

    /// Stops reading the stream (the peer's writes fail with STOPPED).
    pub(crate) fn stop(&mut self, code: u32) {
        self.reader.stop(code);
    }

    /// The size announced in the header (`payload_size`).
    pub fn declared_size(&self) -> u64 {
        self.declared
    }

    /// Payload bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// True once `TransferEnd` arrived with exactly the declared size.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// The next chunk of payload; `Ok(None)` at the end of a complete
    /// transfer. Do not mix with partial `AsyncRead` reads (bytes already
    /// handed out by `poll_read` are not repeated; the rest of a partly read
    /// chunk comes first).
    pub async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.pos < self.current.len() {
            let rest = self.current.split_off(self.pos);
            self.current.clear();
            self.pos = 0;
            return Ok(Some(rest));
        }
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn fail(&mut self, kind: io::ErrorKind, detail: String) -> io::Error {
        if kind == io::ErrorKind::InvalidData {
            self.ctx.violation(detail.clone());
        }
        self.state = State::Failed(kind, detail.clone());
        io::Error::new(kind, detail)
    }

    fn violation(&mut self, detail: impl Into<String>) -> Poll<io::Result<Option<Vec<u8>>>> {
        Poll::Ready(Err(self.fail(io::ErrorKind::InvalidData, detail.into())))
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Vec<u8>>>> {
        match &self.state {
            State::Complete => return Poll::Ready(Ok(None)),
            State::Failed(kind, detail) => return Poll::Ready(Err(io::Error::new(*kind, detail.clone()))),
            State::Streaming => {}
        }
        let frame = match ready!(self.reader.poll_frame(cx)) {
            Ok(f) => f,
            Err(ReadFail::Violation(d)) => return self.violation(d),
            Err(ReadFail::Gone(d)) => {
                let e = self.fail(io::ErrorKind::ConnectionReset, format!("transfer abandoned: {d}"));
                return Poll::Ready(Err(e));
            }
            Err(ReadFail::Timeout) => {
                let e = self.fail(io::ErrorKind::TimedOut, "transfer stalled: no data in time".into());
                return Poll::Ready(Err(e));
            }
        };
        match frame {
            None => self.violation("transfer stream ended before TransferEnd"),
            Some(pb::Frame { kind: Some(Kind::PayloadChunk(c)) }) => {
                let len = c.data.len();
                if len == 0 || len > MAX_CHUNK {
                    return self.violation(format!("payload chunk of {len} bytes (allowed 1..={MAX_CHUNK})"));
                }
                self.received += len as u64;
                if self.received > self.declared {
                    return self.violation(format!(
                        "payload exceeds the declared payload_size of {} bytes",
                        self.declared
                    ));
                }
                Poll::Ready(Ok(Some(c.data)))
            }
            Some(pb::Frame { kind: Some(Kind::TransferEnd(_)) }) => {
                if self.received != self.declared {
                    return self.violation(format!(
                        "TransferEnd after {} payload bytes, header declared {}",
                        self.received, self.declared
                    ));
                }
                self.state = State::Complete;
                Poll::Ready(Ok(None))
            }
            Some(f) => self.violation(format!("unexpected {} in an envelope transfer", kind_name(&f))),
        }
    }
}

impl AsyncRead for InboundPayload {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.current.len() {
                let n = (this.current.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.current[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            match ready!(this.poll_chunk(cx)) {
                Ok(Some(chunk)) => {
                    this.current = chunk;
                    this.pos = 0;
                }
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
