//! One established connection (hello done): its context (peer, the
//! peer's rate limiter, close reason) and the task that accepts the peer's request
//! streams and answers each on its own task through the `InboundHandler`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use focal_proto::pb;
use focal_proto::pb::frame::Kind;
use tokio::sync::Notify;
use tracing::Instrument;

use super::events::{LinkEvent, RemotePeer, Reporter};
use super::inbound::InboundHandler;
use super::reports::{LinkReports, serve_report_stream};
use super::tuning::Tuning;
use super::wire::{
    FrameReader, Limiter, ReadFail, close_code, describe_close, frame, kind_name, write_frame,
};

/// Longest close reason sent on the wire (it must fit in one packet).
const MAX_REASON: usize = 200;

/// An established connection to a configured peer.
pub(crate) struct ConnCtx {
    pub(crate) conn: quinn::Connection,
    pub(crate) peer: Arc<RemotePeer>,
    pub(crate) limiter: Limiter,
    pub(crate) reporter: Reporter,
    pub(crate) tuning: Arc<Tuning>,
    close_reason: Mutex<Option<String>>,
    violated: AtomicBool,
}

impl ConnCtx {
    /// The certificate chain the peer presented in the TLS handshake.
    pub(crate) fn peer_chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
            .map(|b| *b)
            .unwrap_or_default()
    }

    /// Why the trust in force now refuses the peer's certificate (`None`:
    /// it is accepted). A connection whose handshake passed under an older
    /// trust (a reload ran during its hello, or while it waited to be
    /// adopted) is checked again this way before it carries anything.
    pub(crate) fn refused_by(&self, trust: &focal_certs::TrustStore) -> Option<String> {
        let chain = self.peer_chain();
        let Some((end, rest)) = chain.split_first() else {
            return Some("no certificate chain".into());
        };
        focal_certs::verify_peer(trust, end, rest, std::time::SystemTime::now()).err().map(|e| e.to_string())
    }

    /// `limiter` is the peer's (shared by all its connections).
    pub(crate) fn new(
        conn: quinn::Connection,
        peer: RemotePeer,
        limiter: Limiter,
        reporter: Reporter,
        tuning: Arc<Tuning>,
    ) -> Self {
        ConnCtx {
            conn,
            peer: Arc::new(peer),
            limiter,
            reporter,
            tuning,
            close_reason: Mutex::new(None),
            violated: AtomicBool::new(false),
        }
    }

    /// Closes the connection with `code`, remembering `reason` (the first
    /// reason recorded wins) for the disconnect event.
    pub(crate) fn close(&self, code: u32, reason: &str) {
        {
            let mut r = self.close_reason.lock().expect("close reason lock");
            if r.is_none() {
                *r = Some(format!("{} (code {code}): {reason}", close_code::name(code.into())));
            }
        }
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.conn.close(quinn::VarInt::from_u32(code), &reason.as_bytes()[..end]);
    }

    /// Reports a protocol violation and closes the connection (once).
    pub(crate) fn violation(&self, detail: String) {
        if self.violated.swap(true, Ordering::SeqCst) || self.conn.close_reason().is_some() {
            return;
        }
        self.reporter.emit(LinkEvent::Violation {
            peer: self.peer.name().to_owned(),
            identity: self.peer.identity.clone(),
            connection_id: self.peer.connection_id,
            detail: detail.clone(),
        });
        self.close(close_code::PROTOCOL_VIOLATION, &detail);
    }

    /// Why the connection ended: our recorded reason, else quinn's.
    pub(crate) fn end_reason(&self, err: &quinn::ConnectionError) -> String {
        let recorded = self.close_reason.lock().expect("close reason lock").clone();
        recorded.map(|r| format!("closed by us: {r}")).unwrap_or_else(|| describe_close(err))
    }

    /// A frame reader for a stream of this connection, rate-limited by the
    /// connection's bucket.
    pub(crate) fn reader(&self, recv: quinn::RecvStream) -> FrameReader {
        FrameReader::new(
            recv,
            self.tuning.max_frame,
            self.tuning.stream_idle_timeout,
            Some(self.limiter.clone()),
        )
    }

    fn read_failed(&self, fail: ReadFail) {
        match fail {
            ReadFail::Violation(d) => self.violation(d),
            other => tracing::debug!(peer = self.peer.name(), "inbound stream: {other}"),
        }
    }
}

/// Counts in-flight inbound streams so that `close` can let them finish.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<(AtomicUsize, Notify)>);

pub(crate) struct InFlightGuard(InFlight);

impl InFlight {
    pub(crate) fn enter(&self) -> InFlightGuard {
        self.0.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Resolves when no stream is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.0.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.0.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.1.notify_waiters();
        }
    }
}

/// Accepts the peer's streams until the connection ends. quinn admits at
/// most `max_inbound_streams` request (bidirectional) streams and
/// `reports::MAX_REPORT_STREAMS` link-report (unidirectional) streams at
/// once; each gets its own task.
pub(crate) async fn serve_connection(
    ctx: Arc<ConnCtx>,
    handler: Arc<dyn InboundHandler>,
    inflight: InFlight,
    reports: LinkReports,
) {
    loop {
        tokio::select! {
            bi = ctx.conn.accept_bi() => {
                let Ok((send, recv)) = bi else { break };
                let guard = inflight.enter();
                let span = tracing::debug_span!("fed_stream", id = %recv.id());
                tokio::spawn(serve_stream(ctx.clone(), handler.clone(), send, recv, guard).instrument(span));
            }
            uni = ctx.conn.accept_uni() => {
                let Ok(recv) = uni else { break };
                let span = tracing::debug_span!("fed_report", id = %recv.id());
                tokio::spawn(serve_report_stream(ctx.clone(), reports.clone(), recv).instrument(span));
            }
        }
    }
}

/// Reads the end of a request stream: nothing may follow the request.
async fn expect_end(ctx: &ConnCtx, reader: &mut FrameReader, what: &str) -> bool {
    match reader.next().await {
        Ok(None) => true,
        Ok(Some(f)) => {
            ctx.violation(format!("{} after {what} on a request stream", kind_name(&f)));
            false
        }
        Err(e) => {
            ctx.read_failed(e);
            false
        }
    }
}

async fn serve_stream(
    ctx: Arc<ConnCtx>,
    handler: Arc<dyn InboundHandler>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    _guard: InFlightGuard,
) {
    let stream_id = recv.id();
    let mut reader = ctx.reader(recv);
    let first = match reader.next().await {
        Ok(Some(f)) => f,
        Ok(None) => return ctx.violation("stream ended before its first frame".into()),
        Err(e) => return ctx.read_failed(e),
    };
    let from = ctx.peer.clone();
    let reply = match first.kind {
        Some(Kind::TransferStart(start)) => {
            let Some(header) = start.header else {
                return ctx.violation("TransferStart without a header".into());
            };
            let id = stream_id.index();
            return super::pipeline::serve_transfers(ctx, handler, send, reader, header, id).await;
        }
        Some(Kind::ReceiptTransfer(r)) => {
            if !expect_end(&ctx, &mut reader, "ReceiptTransfer").await {
                return;
            }
            Kind::ReceiptAck(handler.receipt(from, r).await)
        }
        Some(Kind::DirectoryQuery(q)) => {
            if !expect_end(&ctx, &mut reader, "DirectoryQuery").await {
                return;
            }
            Kind::DirectoryAnswer(handler.directory_query(from, q).await)
        }
        Some(Kind::CosignRequest(r)) => {
            if !expect_end(&ctx, &mut reader, "CosignRequest").await {
                return;
            }
            Kind::CosignResponse(handler.cosign(from, r).await)
        }
        Some(Kind::Ping(p)) => {
            if !expect_end(&ctx, &mut reader, "Ping").await {
                return;
            }
            Kind::Pong(pb::Pong { nonce: p.nonce })
        }
        other => {
            let name = kind_name(&pb::Frame { kind: other });
            return ctx.violation(format!("unexpected {name} as the first frame of a stream"));
        }
    };
    if let Err(e) = write_frame(&mut send, &frame(reply), ctx.tuning.max_frame).await {
        tracing::debug!(peer = ctx.peer.name(), "cannot answer inbound stream: {e}");
        return;
    }
    let _ = send.finish();
}

/// Sends a ping on its own stream and waits for the pong (bounded by the
/// caller). Used to tell a live connection from a stale one.
pub(crate) async fn ping(ctx: &ConnCtx, nonce: u64) -> Result<(), String> {
    let (mut send, recv) = ctx.conn.open_bi().await.map_err(|e| e.to_string())?;
    let ping = frame(Kind::Ping(pb::Ping { nonce }));
    write_frame(&mut send, &ping, ctx.tuning.max_frame).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(recv, ctx.tuning.max_frame, ctx.tuning.probe_timeout, None);
    match reader.next().await {
        Ok(Some(pb::Frame { kind: Some(Kind::Pong(p)) })) if p.nonce == nonce => Ok(()),
        Ok(Some(f)) => Err(format!("answered a ping with {}", kind_name(&f))),
        Ok(None) => Err("ping stream closed without a pong".into()),
        Err(e) => Err(e.to_string()),
    }
}
