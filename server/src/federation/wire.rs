//! Frames on QUIC streams: an incremental, rate-limited, time-bounded frame
//! reader over a `quinn::RecvStream`, a frame writer, the application error
//! codes used to close connections and streams, and certificate identity
//! extraction from a handshaken connection.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use focal_proto::frame::{self, FrameDecoder};
use focal_proto::{Identity, pb};
use tokio::time::{Instant, Sleep};

use super::policy::TokenBucket;

/// Application error codes of `focal-fed/1` connection closes.
pub mod close_code {
    /// Normal shutdown of a relay.
    pub const SHUTDOWN: u32 = 0;
    /// The certificate is a valid relay certificate, but that relay is not a
    /// configured peer.
    pub const UNCONFIGURED: u32 = 1;
    /// The hello was refused (wrong version, name or networks).
    pub const HELLO_REFUSED: u32 = 2;
    /// The dialled peer's certificate names another relay than configured.
    pub const IDENTITY_MISMATCH: u32 = 3;
    /// Oversized, malformed or unexpected frame, or a chunk/size violation.
    pub const PROTOCOL_VIOLATION: u32 = 4;
    /// Closed in favour of another connection to the same peer.
    pub const DUPLICATE: u32 = 5;
    /// Closed because it stopped answering while the peer dialled anew.
    pub const STALE: u32 = 6;
    /// Closed because the peer's certificate is no longer accepted after a
    /// CRL or trust reload (revoked, its CA removed, expired).
    pub const REVOKED: u32 = 7;

    /// Human name of a code, for logs and events.
    pub fn name(code: u64) -> &'static str {
        match code {
            0 => "shutdown",
            1 => "unconfigured relay",
            2 => "hello refused",
            3 => "identity mismatch",
            4 => "protocol violation",
            5 => "duplicate connection",
            6 => "stale connection",
            7 => "certificate revoked",
            _ => "unknown",
        }
    }
}

/// Application error codes of stream resets and stops.
pub mod stream_code {
    /// The receiver answered without reading the rest (e.g. duplicate).
    pub const DONE: u32 = 0;
    /// The stream made no progress within `stream_idle_timeout`.
    pub const TIMEOUT: u32 = 0x10;
    /// The sender abandoned the transfer (its payload source failed or gave
    /// a size other than the header's).
    pub const ABORTED: u32 = 0x11;
}

/// Why reading a frame failed.
#[derive(Debug, Clone)]
pub(crate) enum ReadFail {
    /// The peer broke the framing (oversized, malformed, truncated): the
    /// whole connection is to be closed.
    Violation(String),
    /// The stream or connection went away (reset, connection lost).
    Gone(String),
    /// No progress within the idle timeout.
    Timeout,
}

impl std::fmt::Display for ReadFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFail::Violation(s) => write!(f, "protocol violation: {s}"),
            ReadFail::Gone(s) => write!(f, "stream lost: {s}"),
            ReadFail::Timeout => f.write_str("stream made no progress in time"),
        }
    }
}

/// Shared per-connection frame rate limiter.
pub(crate) type Limiter = Arc<Mutex<TokenBucket>>;

const READ_BUF: usize = 64 * 1024;

/// Reads length-prefixed frames from one stream. Never buffers more than
/// one frame of at most `max_frame` bytes plus one read.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    dec: FrameDecoder,
    buf: Vec<u8>,
    eof: bool,
    limiter: Option<Limiter>,
    throttle: Option<(Pin<Box<Sleep>>, pb::Frame)>,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    /// True while the timer measures a wait for the peer (armed at the first
    /// `Pending` read, disarmed by data): time our own consumer spends
    /// elsewhere never counts against the peer.
    waiting: bool,
}

impl FrameReader {
    pub(crate) fn new(
        recv: quinn::RecvStream,
        max_frame: usize,
        idle: Duration,
        limiter: Option<Limiter>,
    ) -> Self {
        FrameReader {
            recv,
            dec: FrameDecoder::new(max_frame),
            buf: vec![0; READ_BUF],
            eof: false,
            limiter,
            throttle: None,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<pb::Frame>, ReadFail> {
        poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Stops the peer's sending on this stream (we will read no more).
    pub(crate) fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(code));
    }

    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<pb::Frame>, ReadFail>> {
        loop {
            if let Some((sleep, _)) = &mut self.throttle {
                ready!(sleep.as_mut().poll(cx));
                let (_, frame) = self.throttle.take().expect("checked above");
                return Poll::Ready(Ok(Some(frame)));
            }
            match self.dec.next_frame() {
                Err(e) => return Poll::Ready(Err(ReadFail::Violation(e.to_string()))),
                Ok(Some(frame)) => {
                    let wait = match &self.limiter {
                        Some(l) => l.lock().expect("limiter lock").take(std::time::Instant::now()),
                        None => Duration::ZERO,
                    };
                    if wait.is_zero() {
                        return Poll::Ready(Ok(Some(frame)));
                    }
                    self.throttle = Some((Box::pin(tokio::time::sleep(wait)), frame));
                    continue;
                }
                Ok(None) => {}
            }
            if self.eof {
                return Poll::Ready(match self.dec.finish() {
                    Ok(()) => Ok(None),
                    Err(e) => Err(ReadFail::Violation(e.to_string())),
                });
            }
            // Read no more than the current frame still needs (or a prefix).
            let want = match self.dec.next_len() {
                Ok(Some(len)) => (frame::LEN_PREFIX + len).saturating_sub(self.dec.buffered()),
                Ok(None) => frame::LEN_PREFIX - self.dec.buffered(),
                Err(e) => return Poll::Ready(Err(ReadFail::Violation(e.to_string()))),
            }
            .clamp(1, READ_BUF);
            match self.recv.poll_read(cx, &mut self.buf[..want]) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    self.dec.push(&self.buf[..n]);
                    self.waiting = false;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ReadFail::Gone(e.to_string()))),
                Poll::Pending => {
                    if !self.waiting {
                        self.waiting = true;
                        let deadline = Instant::now() + self.idle;
                        self.idle_timer.as_mut().reset(deadline);
                    }
                    ready!(self.idle_timer.as_mut().poll(cx));
                    self.stop(stream_code::TIMEOUT);
                    return Poll::Ready(Err(ReadFail::Timeout));
                }
            }
        }
    }
}

/// Encodes and writes one frame.
pub(crate) async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &pb::Frame,
    max_frame: usize,
) -> Result<(), WriteFail> {
    let bytes = frame::encode(frame, max_frame).map_err(|e| WriteFail::Encode(e.to_string()))?;
    send.write_all(&bytes).await.map_err(WriteFail::Stream)
}

/// Why writing a frame failed.
#[derive(Debug)]
pub(crate) enum WriteFail {
    /// Our own frame did not fit (a bug or an oversized header/answer).
    Encode(String),
    /// The stream was stopped or the connection lost.
    Stream(quinn::WriteError),
}

impl std::fmt::Display for WriteFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteFail::Encode(s) => write!(f, "cannot encode frame: {s}"),
            WriteFail::Stream(e) => write!(f, "write failed: {e}"),
        }
    }
}

/// Wraps a frame kind.
pub(crate) fn frame(kind: pb::frame::Kind) -> pb::Frame {
    pb::Frame { kind: Some(kind) }
}

/// Short name of a frame kind, for violation reports.
pub(crate) fn kind_name(frame: &pb::Frame) -> &'static str {
    use pb::frame::Kind;
    match &frame.kind {
        None => "empty frame",
        Some(Kind::Hello(_)) => "Hello",
        Some(Kind::TransferStart(_)) => "TransferStart",
        Some(Kind::PayloadChunk(_)) => "PayloadChunk",
        Some(Kind::TransferEnd(_)) => "TransferEnd",
        Some(Kind::TransferAck(_)) => "TransferAck",
        Some(Kind::ReceiptTransfer(_)) => "ReceiptTransfer",
        Some(Kind::ReceiptAck(_)) => "ReceiptAck",
        Some(Kind::DirectoryQuery(_)) => "DirectoryQuery",
        Some(Kind::DirectoryAnswer(_)) => "DirectoryAnswer",
        Some(Kind::CosignRequest(_)) => "CosignRequest",
        Some(Kind::CosignResponse(_)) => "CosignResponse",
        Some(Kind::Ping(_)) => "Ping",
        Some(Kind::Pong(_)) => "Pong",
        Some(Kind::LinkReport(_)) => "LinkReport",
    }
}

/// The verified certificate identity of a handshaken connection.
pub(crate) fn peer_identity(conn: &quinn::Connection) -> Result<Identity, String> {
    let any = conn.peer_identity().ok_or("the peer presented no certificate")?;
    let certs = any
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .map_err(|_| "unexpected peer identity type".to_owned())?;
    let leaf = certs.first().ok_or("the peer presented an empty certificate chain")?;
    focal_certs::identity_of_cert(leaf.as_ref()).map_err(|e| format!("peer certificate identity: {e}"))
}

/// Describes how a connection ended, decoding our application close codes.
pub(crate) fn describe_close(err: &quinn::ConnectionError) -> String {
    match err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let code = c.error_code.into_inner();
            format!(
                "closed by peer ({}, code {code}): {}",
                close_code::name(code),
                String::from_utf8_lossy(&c.reason)
            )
        }
        other => other.to_string(),
    }
}
