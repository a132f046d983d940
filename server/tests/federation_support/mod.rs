//! Shared helpers of the federation transport tests: a throwaway PKI made
//! with `focal_certs` in a temp dir, a recording `InboundHandler`, relays on
//! loopback, generated payload readers, and a raw QUIC client for playing a
//! misbehaving peer.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use focal_certs::{
    Credentials, ExpectedServer, IssueRequest, NetworkCa, SharedTrust, TrustBundle, TrustStore,
};
use focal_proto::{NetworkId, Role, pb};
use focal_relay::config::PeerConfig;
use focal_relay::federation::{
    BoxFuture, EnvelopeAnswer, Federation, FederationHandle, InboundHandler, InboundPayload, LinkEvent,
    RemotePeer, Tuning,
};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{broadcast, oneshot};

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Test deadline for anything that should happen "soon".
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn net(s: &str) -> NetworkId {
    NetworkId::new(s).unwrap()
}

/// A PKI of several networks, files in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    cas: BTreeMap<NetworkId, NetworkCa>,
    pub trust: SharedTrust,
}

impl Pki {
    pub fn new(networks: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut cas = BTreeMap::new();
        let mut bundle = TrustBundle::default();
        for n in networks {
            let ca = NetworkCa::generate(&net(n), 30).unwrap();
            std::fs::write(dir.path().join(format!("{n}-ca.pem")), ca.cert_pem()).unwrap();
            bundle.insert(net(n), ca.cert_der());
            cas.insert(net(n), ca);
        }
        let bundle_path = dir.path().join("bundle.toml");
        std::fs::write(&bundle_path, bundle.to_toml()).unwrap();
        let store = TrustStore::load(&bundle_path, &[]).unwrap();
        Pki { dir, cas, trust: SharedTrust::new(store) }
    }

    /// Issues a certificate of `role`/`name` in `network` (with loopback
    /// SANs), writes it to the temp dir and loads it back.
    pub fn creds(&self, network: &str, role: Role, name: &str) -> Credentials {
        let mut req = IssueRequest::new(role, name);
        req.ips = vec!["127.0.0.1".parse().unwrap()];
        req.dns = vec!["localhost".into()];
        let issued = self.cas[&net(network)].issue(&req).unwrap();
        let cert = self.dir.path().join(format!("{network}-{role}-{name}.pem"));
        let key = self.dir.path().join(format!("{network}-{role}-{name}.key"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, issued.key_pem.as_bytes()).unwrap();
        Credentials::load(&cert, &key).unwrap()
    }
}

pub fn hello_of(creds: &Credentials) -> pb::Hello {
    pb::Hello {
        protocol_version: 1,
        relay: creds.identity.name.clone(),
        networks: vec![creds.identity.network.to_string()],
        log_origin: format!("focal/{}/{}", creds.identity.network, creds.identity.name),
        log_key: vec![7; 32],
        witness_key: vec![],
    }
}

pub fn peer(name: &str, network: &str, addr: SocketAddr) -> PeerConfig {
    PeerConfig { name: name.into(), network: net(network), address: addr.to_string(), default_route: false }
}

/// Short timers for tests (nothing here is asserted on time).
pub fn tuning() -> Tuning {
    Tuning {
        redial_base: Duration::from_millis(50),
        redial_max: Duration::from_millis(500),
        probe_timeout: Duration::from_millis(1500),
        handshake_timeout: Duration::from_secs(5),
        close_grace: Duration::from_secs(2),
        ..Tuning::default()
    }
}

pub fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// Binds `addr` again after its previous owner closed, waiting for the
/// old endpoint to release it.
pub async fn rebind(addr: SocketAddr) -> UdpSocket {
    let start = tokio::time::Instant::now();
    loop {
        match UdpSocket::bind(addr) {
            Ok(s) => return s,
            Err(e) if start.elapsed() < DEADLINE => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

/// What the recording handler saw of one envelope.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub context: Vec<u8>,
    pub size: u64,
    pub sha256: Vec<u8>,
    pub chunks: usize,
    pub largest_chunk: usize,
    pub complete: bool,
}

/// Records envelopes (hashing the streamed payload) and answers requests.
#[derive(Default)]
pub struct Recorder {
    pub envelopes: Mutex<Vec<Received>>,
    pub events: Mutex<Vec<LinkEvent>>,
    pub requests: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn envelopes(&self) -> Vec<Received> {
        self.envelopes.lock().unwrap().clone()
    }
    pub fn events(&self) -> Vec<LinkEvent> {
        self.events.lock().unwrap().clone()
    }
}

impl InboundHandler for Recorder {
    fn envelope<'a>(
        &'a self,
        from: Arc<RemotePeer>,
        header: pb::EnvelopeHeader,
        payload: &'a mut InboundPayload,
    ) -> BoxFuture<'a, EnvelopeAnswer> {
        Box::pin(async move {
            // Answered at once without reading the payload: "retry-…" as a
            // full store does, "dup-…" as a store that already has it.
            let early = [
                (&b"retry"[..], "retry", pb::TransferStatus::Retry, "store full"),
                (&b"dup"[..], "duplicate", pb::TransferStatus::Duplicate, "already stored"),
            ];
            if let Some((_, what, status, detail)) =
                early.iter().find(|(p, ..)| header.context.starts_with(p))
            {
                self.requests.lock().unwrap().push(format!("{what} of {} bytes", payload.declared_size()));
                return pb::TransferAck {
                    msg_id: header.context,
                    sender: from.name().to_owned(),
                    status: *status as i32,
                    detail: (*detail).into(),
                }
                .into();
            }
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut chunks = 0;
            let mut largest = 0;
            let result = loop {
                match payload.next_chunk().await {
                    Ok(Some(c)) => {
                        chunks += 1;
                        largest = largest.max(c.len());
                        ctx.update(&c);
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            let sha = ctx.finish().as_ref().to_vec();
            let complete = payload.is_complete();
            let ok = result.is_ok() && sha == header.payload_sha256;
            self.envelopes.lock().unwrap().push(Received {
                from: from.name().to_owned(),
                context: header.context.clone(),
                size: payload.received(),
                sha256: sha,
                chunks,
                largest_chunk: largest,
                complete,
            });
            pb::TransferAck {
                msg_id: header.context,
                sender: from.name().to_owned(),
                status: if ok { pb::TransferStatus::Stored } else { pb::TransferStatus::Retry } as i32,
                detail: match result {
                    Ok(()) if ok => String::new(),
                    Ok(()) => "digest mismatch".into(),
                    Err(e) => e.to_string(),
                },
            }
            .into()
        })
    }

    fn receipt(&self, from: Arc<RemotePeer>, receipt: pb::ReceiptTransfer) -> BoxFuture<'_, pb::ReceiptAck> {
        self.requests.lock().unwrap().push(format!("receipt from {}", from.name()));
        Box::pin(async move {
            pb::ReceiptAck { receipt_id: receipt.receipt_id, status: pb::TransferStatus::Stored as i32 }
        })
    }

    fn directory_query(
        &self,
        from: Arc<RemotePeer>,
        query: pb::DirectoryQuery,
    ) -> BoxFuture<'_, pb::DirectoryAnswer> {
        self.requests.lock().unwrap().push(format!("directory {} from {}", query.address, from.name()));
        Box::pin(async move {
            pb::DirectoryAnswer { query_id: query.query_id, entries: vec![], error: "not found".into() }
        })
    }

    fn cosign(&self, from: Arc<RemotePeer>, request: pb::CosignRequest) -> BoxFuture<'_, pb::CosignResponse> {
        self.requests.lock().unwrap().push(format!("cosign from {}", from.name()));
        Box::pin(async move {
            pb::CosignResponse {
                cosignature_line: format!("— witness {}", request.old_size),
                error: String::new(),
            }
        })
    }

    fn event(&self, event: &LinkEvent) {
        self.events.lock().unwrap().push(event.clone());
    }
}

/// A relay's federation endpoint under test.
pub struct Relay {
    pub fed: FederationHandle,
    pub handler: Arc<Recorder>,
    pub events: broadcast::Receiver<LinkEvent>,
    pub addr: SocketAddr,
    pub creds_name: String,
}

pub fn start(
    creds: &Credentials,
    pki: &Pki,
    socket: UdpSocket,
    peers: Vec<PeerConfig>,
    tuning: Tuning,
) -> Relay {
    let handler = Arc::new(Recorder::default());
    let addr = socket.local_addr().unwrap();
    let fed =
        Federation::start(socket, creds, pki.trust.clone(), hello_of(creds), &peers, handler.clone(), tuning)
            .unwrap();
    let events = fed.subscribe();
    Relay { fed, handler, events, addr, creds_name: creds.identity.name.clone() }
}

/// Two relays, carin and gfp, configured as each other's peer, with
/// `tuning` on both, settled on one connection.
pub struct Pair {
    pub pki: Pki,
    pub carin_creds: Credentials,
    pub gfp_creds: Credentials,
    pub carin: Relay,
    pub gfp: Relay,
}

impl Pair {
    pub async fn start(tuning: Tuning) -> Pair {
        let pki = Pki::new(&["carin", "gfp"]);
        let carin_creds = pki.creds("carin", Role::Relay, "relay-carin");
        let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
        let (cs, gs) = (udp(), udp());
        let (ca, ga) = (cs.local_addr().unwrap(), gs.local_addr().unwrap());
        let carin = start(&carin_creds, &pki, cs, vec![peer("relay-gfp", "gfp", ga)], tuning.clone());
        let gfp = start(&gfp_creds, &pki, gs, vec![peer("relay-carin", "carin", ca)], tuning);
        settle(&carin, &carin.fed.link("relay-gfp").unwrap(), &gfp, &gfp.fed.link("relay-carin").unwrap())
            .await;
        Pair { pki, carin_creds, gfp_creds, carin, gfp }
    }
}

/// Waits for an event matching `pred` (skipping others).
pub async fn wait_event(
    rx: &mut broadcast::Receiver<LinkEvent>,
    what: &str,
    pred: impl Fn(&LinkEvent) -> bool,
) -> LinkEvent {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event channel: {e}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, fut).await.unwrap_or_else(|_| panic!("no event: {what}"))
}

/// Polls `cond` until it holds (for state without a signal, e.g. the
/// endpoint's connection count).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deterministic payload bytes.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

pub fn pattern_sha256(len: u64) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(pos + k as u64);
        }
        ctx.update(&buf[..n]);
        pos += n as u64;
    }
    ctx.finish().as_ref().to_vec()
}

/// Generates `len` pattern bytes without holding them; optionally stops at
/// `gate_at` until `gate` fires (telling `reached` when it gets there).
pub struct PatternReader {
    pos: u64,
    len: u64,
    gate_at: Option<u64>,
    reached: Option<oneshot::Sender<()>>,
    gate: Option<Pin<Box<oneshot::Receiver<()>>>>,
}

impl PatternReader {
    pub fn new(len: u64) -> Self {
        PatternReader { pos: 0, len, gate_at: None, reached: None, gate: None }
    }
    /// A reader that pauses at `at` bytes until the returned sender fires;
    /// the returned receiver fires when the pause begins.
    pub fn gated(len: u64, at: u64) -> (Self, oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (gate_tx, gate_rx) = oneshot::channel();
        let r = PatternReader {
            pos: 0,
            len,
            gate_at: Some(at),
            reached: Some(reached_tx),
            gate: Some(Box::pin(gate_rx)),
        };
        (r, reached_rx, gate_tx)
    }
}

impl AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let mut end = this.len;
        if let Some(at) = this.gate_at {
            if this.pos == at {
                if let Some(r) = this.reached.take() {
                    let _ = r.send(());
                }
                if let Some(g) = this.gate.as_mut() {
                    match g.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(_) => {
                            this.gate = None;
                            this.gate_at = None;
                        }
                    }
                }
            } else if this.pos < at {
                end = at;
            }
        }
        let n = ((end - this.pos) as usize).min(buf.remaining());
        let start = this.pos;
        let dst = buf.initialize_unfilled_to(n);
        for (k, b) in dst.iter_mut().enumerate() {
            *b = pattern_byte(start + k as u64);
        }
        buf.advance(n);
        this.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

use std::future::Future;

/// A header for a `len`-byte pattern payload (opaque to the transport).
pub fn header(tag: &str, len: u64) -> pb::EnvelopeHeader {
    pb::EnvelopeHeader {
        context: tag.as_bytes().to_vec(),
        payload_sha256: pattern_sha256(len),
        payload_size: len,
        ..Default::default()
    }
}

/// A bare QUIC client presenting `creds` with `alpn`, expecting a relay of
/// `server_network`: for playing peers that misbehave.
pub async fn raw_connect(
    creds: &Credentials,
    pki: &Pki,
    alpn: &[u8],
    server_network: &str,
    server: SocketAddr,
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let tls = focal_certs::client_config(
        creds,
        pki.trust.clone(),
        alpn,
        ExpectedServer { network: net(server_network), role: Role::Relay },
    )
    .map_err(|e| e.to_string())?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
    let cfg = quinn::ClientConfig::new(Arc::new(quic));
    let conn = endpoint
        .connect_with(cfg, server, "127.0.0.1")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok((endpoint, conn))
}

/// Sends `hello` on the first stream and reads the answer frame.
pub async fn raw_hello(conn: &quinn::Connection, hello: pb::Hello) -> Result<pb::Frame, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let f = pb::Frame { kind: Some(pb::frame::Kind::Hello(hello)) };
    send.write_all(&focal_proto::frame::encode(&f, 1 << 20).unwrap()).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    let bytes = recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())?;
    focal_proto::frame::decode_exact(&bytes, 1 << 20).map_err(|e| e.to_string())
}

/// The application close code of a closed connection, once it is closed.
pub async fn close_code_of(conn: &quinn::Connection) -> Option<u64> {
    let err = tokio::time::timeout(DEADLINE, conn.closed()).await.expect("connection not closed in time");
    match err {
        quinn::ConnectionError::ApplicationClosed(c) => Some(c.error_code.into_inner()),
        _ => None,
    }
}

/// Waits until two relays agree on exactly one connection between them
/// (after a simultaneous dial one of the two is closed; a transfer started
/// before that may fail and would be retried by a real driver).
pub async fn settle(
    a: &Relay,
    a_to_b: &focal_relay::federation::LinkHandle,
    b: &Relay,
    b_to_a: &focal_relay::federation::LinkHandle,
) {
    eventually("the two relays agree on one connection", || match (a_to_b.remote(), b_to_a.remote()) {
        (Some(x), Some(y)) => {
            x.dialled_by_us != y.dialled_by_us
                && a.fed.open_connections() == 1
                && b.fed.open_connections() == 1
        }
        _ => false,
    })
    .await;
}
