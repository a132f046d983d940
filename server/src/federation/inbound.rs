//! The driver's side of inbound traffic: the `InboundHandler` trait the
//! relay implements (store, directory, audit witness) and `InboundPayload`,
//! the streamed payload of an inbound envelope transfer.
//!
//! The handler is called once per inbound request stream, concurrently for
//! different streams (at most `Tuning::max_inbound_streams` per peer). What
//! it returns is written back on the same stream, so an envelope is acked
//! only when `envelope` returns: persist (fsync) first, then return
//! `TRANSFER_STATUS_STORED`.

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

/// What a relay does with requests arriving from its peers. Implementations
/// must not block the thread; they may take as long as they need (a slow
/// handler only slows the stream it serves, and flow control slows that
/// peer).
pub trait InboundHandler: Send + Sync + 'static {
    /// An envelope transfer: `header` as sent, `payload` streamed from the
    /// peer (exactly `header.payload_size` bytes, in chunks of at most
    /// 64 KiB, never all in memory). Read it to the end (`next_chunk` returns
    /// `Ok(None)` only after a complete, well-formed transfer), persist,
    /// then return the ack. Returning early (duplicate, refused) is fine:
    /// the rest of the payload is discarded (the stream is stopped).
    fn envelope(
        &self,
        from: Arc<RemotePeer>,
        header: pb::EnvelopeHeader,
        payload: InboundPayload,
    ) -> BoxFuture<'_, pb::TransferAck>;

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
    EndSeen,
    Complete,
    Failed(io::ErrorKind, String),
}

/// The payload of one inbound envelope transfer, read from its QUIC stream
/// as the handler asks for it (`next_chunk`, or `tokio::io::AsyncRead`).
///
/// Enforced here, each a protocol violation that closes the connection:
/// chunks of 1..=64 KiB, no more bytes than the header's `payload_size`,
/// exactly that many at `TransferEnd`, nothing after it, no other frame.
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
    pub(crate) fn new(reader: FrameReader, ctx: Arc<ConnCtx>, declared: u64) -> Self {
        InboundPayload {
            reader,
            ctx,
            declared,
            received: 0,
            state: State::Streaming,
            current: Vec::new(),
            pos: 0,
        }
    }

    /// The size announced in the header (`payload_size`).
    pub fn declared_size(&self) -> u64 {
        self.declared
    }

    /// Payload bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// True once `TransferEnd` and the end of stream arrived with exactly
    /// the declared size.
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
        loop {
            match &self.state {
                State::Complete => return Poll::Ready(Ok(None)),
                State::Failed(kind, detail) => {
                    return Poll::Ready(Err(io::Error::new(*kind, detail.clone())));
                }
                State::Streaming | State::EndSeen => {}
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
            let end_seen = matches!(self.state, State::EndSeen);
            match frame {
                None if end_seen => {
                    self.state = State::Complete;
                    return Poll::Ready(Ok(None));
                }
                None => return self.violation("transfer stream ended before TransferEnd"),
                Some(f) if end_seen => return self.violation(format!("{} after TransferEnd", kind_name(&f))),
                Some(pb::Frame { kind: Some(Kind::PayloadChunk(c)) }) => {
                    let len = c.data.len();
                    if len == 0 || len > MAX_CHUNK {
                        return self
                            .violation(format!("payload chunk of {len} bytes (allowed 1..={MAX_CHUNK})"));
                    }
                    self.received += len as u64;
                    if self.received > self.declared {
                        return self.violation(format!(
                            "payload exceeds the declared payload_size of {} bytes",
                            self.declared
                        ));
                    }
                    return Poll::Ready(Ok(Some(c.data)));
                }
                Some(pb::Frame { kind: Some(Kind::TransferEnd(_)) }) => {
                    if self.received != self.declared {
                        return self.violation(format!(
                            "TransferEnd after {} payload bytes, header declared {}",
                            self.received, self.declared
                        ));
                    }
                    self.state = State::EndSeen;
                }
                Some(f) => {
                    return self.violation(format!("unexpected {} in an envelope transfer", kind_name(&f)));
                }
            }
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
