//! Test helpers: a throwaway PKI made with `focal-certs`, a relay started
//! in-process on 127.0.0.1:0 with a temp data dir, mTLS gRPC clients, and
//! signed envelopes (the relay never decrypts, so payloads are random bytes
//! signed as ciphertext).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use focal_certs::{
    Credentials, ExpectedServer, IssueRequest, NetworkCa, SharedTrust, TrustBundle, TrustStore,
};
use focal_proto::envelope::{self, ContextParams};
use focal_proto::pb::relay_client::RelayClient;
use focal_proto::pb::{self, send_request::Part};
use focal_proto::{Address, NetworkId, Role};
use focal_relay::config::RelayConfig;
use hyper_util::rt::TokioIo;
use prost::Message;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint, Uri};

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// CAs of some networks, their bundle and (empty) CRLs, in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub cas: BTreeMap<String, NetworkCa>,
    pub bundle: PathBuf,
    pub crls: Vec<PathBuf>,
}

impl Pki {
    pub fn new(networks: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut cas = BTreeMap::new();
        let mut bundle = TrustBundle::default();
        let mut crls = Vec::new();
        for n in networks {
            let ca = NetworkCa::generate(&NetworkId::new(n).unwrap(), 3650).unwrap();
            bundle.insert(ca.network().clone(), ca.cert_der());
            let crl = dir.path().join(format!("{n}-crl.pem"));
            std::fs::write(&crl, ca.crl(&[], 1, 30).unwrap()).unwrap();
            crls.push(crl);
            cas.insert(n.to_string(), ca);
        }
        let bundle_path = dir.path().join("bundle.toml");
        std::fs::write(&bundle_path, bundle.to_toml()).unwrap();
        Pki { dir, cas, bundle: bundle_path, crls }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues and writes `<net>-<role>-<name>.pem/.key`; returns (cert, key) paths.
    pub fn issue_req(&self, net: &str, req: &IssueRequest) -> (PathBuf, PathBuf) {
        let issued = self.cas[net].issue(req).unwrap();
        let stem = format!("{net}-{}-{}", req.role, req.name);
        let (c, k) = (self.path(&format!("{stem}.pem")), self.path(&format!("{stem}.key")));
        std::fs::write(&c, &issued.cert_pem).unwrap();
        std::fs::write(&k, issued.key_pem.as_str()).unwrap();
        (c, k)
    }

    pub fn issue(&self, net: &str, role: Role, name: &str) -> (PathBuf, PathBuf) {
        let mut req = IssueRequest::new(role, name);
        if role == Role::Relay {
            req.dns = vec!["localhost".into()];
            req.ips = vec!["127.0.0.1".parse().unwrap()];
        }
        self.issue_req(net, &req)
    }

    pub fn creds(&self, net: &str, role: Role, name: &str) -> Credentials {
        let (c, k) = self.issue(net, role, name);
        Credentials::load(&c, &k).unwrap()
    }

    pub fn trust(&self) -> SharedTrust {
        let crls: Vec<&Path> = self.crls.iter().map(|p| p.as_path()).collect();
        SharedTrust::new(TrustStore::load(&self.bundle, &crls).unwrap())
    }

    /// Writes a relay config for `net` (relay `relay-<net>`) with `extra` TOML appended.
    pub fn relay_config(&self, net: &str, data: &Path, extra: &str) -> PathBuf {
        self.write_relay_config(net, data, "", extra)
    }

    /// As [`Pki::relay_config`], with a QUIC federation listener on
    /// 127.0.0.1:`federation_port` (0: the OS picks).
    pub fn federated_relay_config(
        &self,
        net: &str,
        data: &Path,
        extra: &str,
        federation_port: u16,
    ) -> PathBuf {
        self.write_relay_config(net, data, &format!("federation = \"127.0.0.1:{federation_port}\"\n"), extra)
    }

    fn write_relay_config(&self, net: &str, data: &Path, listen_extra: &str, extra: &str) -> PathBuf {
        let name = format!("relay-{net}");
        let (cert, key) = self.issue(net, Role::Relay, &name);
        let crls: Vec<String> = self.crls.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
        let text = format!(
            "network = \"{net}\"\nname = \"{name}\"\ndata_dir = {:?}\n\n[listen]\ngrpc = \"127.0.0.1:0\"\n{listen_extra}\n\
             [tls]\ncert = {:?}\nkey = {:?}\ntrust_bundle = {:?}\ncrls = [{}]\n{extra}\n",
            data.display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
            self.bundle.display().to_string(),
            crls.join(", ")
        );
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.path(&format!("relay-{net}-{n}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A relay running in-process.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub config: RelayConfig,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), focal_relay::RelayError>>>,
}

impl TestRelay {
    pub async fn start(config_path: &Path) -> TestRelay {
        let config = RelayConfig::load(config_path).unwrap();
        let listeners = focal_relay::Listeners::bind(&config).await.unwrap();
        let addr = listeners.grpc.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let join = tokio::spawn(focal_relay::serve(config.clone(), listeners, async move {
            let _ = rx.await;
        }));
        TestRelay { addr, config, shutdown: Some(tx), join: Some(join) }
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn stop(&mut self) -> Result<(), focal_relay::RelayError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.join.take() {
            Some(j) => j.await.unwrap(),
            None => Ok(()),
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Clone)]
struct Connector {
    tls: tokio_rustls::TlsConnector,
    addr: SocketAddr,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tonic::codegen::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(me.addr).await?;
            let name = ServerName::IpAddress(me.addr.ip().into());
            Ok(TokioIo::new(me.tls.connect(name, tcp).await?))
        })
    }
}

/// An mTLS gRPC channel to the relay of `network` at `addr`, as `creds`.
pub async fn channel(
    trust: SharedTrust,
    creds: &Credentials,
    network: &str,
    addr: SocketAddr,
) -> Result<Channel, tonic::transport::Error> {
    let server = ExpectedServer { network: NetworkId::new(network).unwrap(), role: Role::Relay };
    let config = focal_certs::client_config(creds, trust, focal_certs::ALPN_GRPC, server).unwrap();
    channel_with(config, addr).await
}

/// A gRPC channel to `addr` over any rustls client `config` (one connection
/// attempt, 10 s connect timeout); security tests pass hostile configs.
pub async fn channel_with(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Result<Channel, tonic::transport::Error> {
    let connector = Connector { tls: tokio_rustls::TlsConnector::from(config), addr };
    Endpoint::from_static("http://127.0.0.1")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(connector)
        .await
}

/// A focal point with its channel.
pub struct Fp {
    pub creds: Arc<Credentials>,
    pub addr: Address,
    pub channel: Channel,
}

impl Fp {
    pub async fn connect(pki: &Pki, net: &str, name: &str, relay: SocketAddr) -> Fp {
        Fp::connect_role(pki, net, Role::Fp, name, relay).await
    }

    pub async fn connect_role(pki: &Pki, net: &str, role: Role, name: &str, relay: SocketAddr) -> Fp {
        let creds = pki.creds(net, role, name);
        let channel = channel(pki.trust(), &creds, net, relay).await.unwrap();
        let addr = creds.identity.address();
        Fp { creds: Arc::new(creds), addr, channel }
    }

    pub fn relay(&self) -> RelayClient<Channel> {
        RelayClient::new(self.channel.clone()).max_decoding_message_size(8 << 20)
    }

    /// A signed envelope header for `payload` (random bytes standing for ciphertext).
    pub fn header(
        &self,
        to: &[&str],
        payload: &[u8],
        tweak: impl FnOnce(&mut ContextParams),
    ) -> pb::EnvelopeHeader {
        let now = now_ms();
        let mut params = ContextParams {
            msg_id: envelope::new_msg_id(),
            sender: self.addr.clone(),
            recipients: to.iter().map(|a| Address::parse(a).unwrap()).collect(),
            created_at_ms: now,
            expires_at_ms: now + 3_600_000,
            handling: pb::HandlingCode::H1,
            priority: pb::Priority::Normal,
            forward_of: None,
            broadcast_network: None,
        };
        tweak(&mut params);
        let context = envelope::build_context(&params).unwrap();
        let digest: [u8; 32] =
            ring::digest::digest(&ring::digest::SHA256, payload).as_ref().try_into().unwrap();
        let key = self.creds.signing_key().unwrap();
        pb::EnvelopeHeader {
            signature: envelope::sign(&key, &context, &digest),
            context,
            sender_cert: self.creds.cert_der().to_vec(),
            payload_sha256: digest.to_vec(),
            payload_size: payload.len() as u64,
            hops: vec![],
            deliver_to: vec![],
        }
    }

    pub async fn send_header(
        &self,
        header: pb::EnvelopeHeader,
        payload: &[u8],
    ) -> Result<pb::SendResponse, tonic::Status> {
        let mut msgs = vec![pb::SendRequest { part: Some(Part::Header(header)) }];
        msgs.extend(payload.chunks(100_000).map(|c| pb::SendRequest { part: Some(Part::Chunk(c.to_vec())) }));
        self.relay().send(tokio_stream::iter(msgs)).await.map(|r| r.into_inner())
    }

    pub async fn send(
        &self,
        to: &[&str],
        payload: &[u8],
    ) -> Result<(pb::SendResponse, pb::EnvelopeHeader), tonic::Status> {
        let header = self.header(to, payload, |_| {});
        let r = self.send_header(header.clone(), payload).await?;
        Ok((r, header))
    }

    /// Waiting messages (replay only).
    pub async fn inbox(&self) -> Vec<pb::MessageSummary> {
        let req = pb::InboxRequest { include_receipts: false, replay_only: true };
        let mut s = self.relay().inbox(req).await.unwrap().into_inner();
        let mut out = Vec::new();
        while let Some(ev) = s.message().await.unwrap() {
            match ev.event {
                Some(pb::inbox_event::Event::Message(m)) => out.push(m),
                Some(pb::inbox_event::Event::ReplayDone(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    /// Downloads a payload from `offset`.
    pub async fn fetch(
        &self,
        sender: &str,
        msg_id: &[u8],
        offset: u64,
    ) -> Result<(pb::EnvelopeHeader, Vec<u8>), tonic::Status> {
        let req = pb::FetchRequest { msg_id: msg_id.to_vec(), sender: sender.into(), offset };
        let mut s = self.relay().fetch(req).await?.into_inner();
        let mut header = None;
        let mut data = Vec::new();
        while let Some(part) = s.message().await? {
            match part.part {
                Some(pb::fetch_response::Part::Header(h)) => header = Some(h),
                Some(pb::fetch_response::Part::Chunk(c)) => {
                    assert!(c.len() <= 64 * 1024, "fetch chunks are at most 64 KiB");
                    data.extend(c)
                }
                None => {}
            }
        }
        Ok((header.expect("header first"), data))
    }

    /// A DELIVERED receipt for `header`'s message, signed by this focal point.
    pub fn delivered(&self, header: &pb::EnvelopeHeader) -> pb::Receipt {
        let ctx = envelope::parse_context(&header.context).unwrap();
        let body = pb::ReceiptBody {
            version: 1,
            msg_id: ctx.msg_id.to_vec(),
            original_sender: ctx.sender.to_string(),
            subject: self.addr.to_string(),
            kind: pb::ReceiptKind::Delivered as i32,
            at_ms: now_ms(),
            signer: self.addr.to_string(),
            payload_sha256: header.payload_sha256.clone(),
            ..Default::default()
        };
        self.sign_receipt(body)
    }

    pub fn sign_receipt(&self, body: pb::ReceiptBody) -> pb::Receipt {
        let key = self.creds.signing_key().unwrap();
        let blob = focal_proto::signed::sign_blob(
            focal_proto::signed::TAG_RECEIPT,
            body.encode_to_vec(),
            &key,
            self.creds.cert_der(),
        );
        pb::Receipt { signed: Some(blob) }
    }

    pub async fn ack(&self, header: &pb::EnvelopeHeader, receipt: pb::Receipt) -> Result<(), tonic::Status> {
        let ctx = envelope::parse_context(&header.context).unwrap();
        let req = pb::AckRequest {
            msg_id: ctx.msg_id.to_vec(),
            sender: ctx.sender.to_string(),
            delivered: Some(receipt),
        };
        self.relay().ack(req).await.map(drop)
    }
}

pub fn msg_id(header: &pb::EnvelopeHeader) -> Vec<u8> {
    envelope::parse_context(&header.context).unwrap().msg_id.to_vec()
}

pub fn random_bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(seed as u32 % 31) as u8 ^ seed)
        .collect()
}

/// Every record of the relay's audit log, read through `auditor`'s channel
/// (an auditor's connection).
pub async fn audit_records(auditor: &Channel) -> Vec<pb::AuditRecord> {
    let mut audit = pb::audit_client::AuditClient::new(auditor.clone());
    let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
    let size = info.checkpoint.unwrap().size;
    if size == 0 {
        return Vec::new();
    }
    let mut s = audit.get_entries(pb::EntriesRequest { start: 0, end: size }).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(e) = s.message().await.unwrap() {
        out.push(focal_proto::audit::decode_record(&e.leaf).unwrap());
    }
    out
}
