//! Helpers of the operations tests: a relay started with `serve_with` (so
//! the test holds its operator state), with the metrics listener on
//! 127.0.0.1:0; a raw HTTP scraper; Admin clients; members whose serial is
//! known (to revoke them).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use focal_certs::{Credentials, IssueRequest, Revoked};
use focal_proto::Role;
use focal_proto::pb::admin_client::AdminClient;
use focal_relay::admin::OpsState;
use focal_relay::config::RelayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::common::{Pki, channel};

/// A relay config of `net` with the metrics listener on 127.0.0.1:0.
pub fn config_with_metrics(pki: &Pki, net: &str, data: &Path, extra: &str) -> PathBuf {
    let path = pki.relay_config(net, data, extra);
    let text = std::fs::read_to_string(&path).unwrap();
    let text =
        text.replacen("grpc = \"127.0.0.1:0\"\n", "grpc = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n", 1);
    std::fs::write(&path, text).unwrap();
    path
}

/// A relay running in-process, with its operator state.
pub struct OpsRelay {
    pub addr: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub config: RelayConfig,
    pub ops: Arc<OpsState>,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), focal_relay::RelayError>>>,
}

impl OpsRelay {
    pub async fn start(config_path: &Path) -> OpsRelay {
        let config = RelayConfig::load(config_path).unwrap();
        let listeners = focal_relay::Listeners::bind(&config).await.unwrap();
        let addr = listeners.grpc.local_addr().unwrap();
        let metrics = listeners.metrics.as_ref().map(|l| l.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let options = focal_relay::ServeOptions { reload: None, ready: Some(ready_tx) };
        let join = tokio::spawn(focal_relay::serve_with(
            config.clone(),
            listeners,
            async move {
                let _ = rx.await;
            },
            options,
        ));
        let ops = match ready_rx.await {
            Ok(ops) => ops,
            Err(_) => panic!("the relay did not start: {:?}", join.await),
        };
        OpsRelay { addr, metrics, config, ops, shutdown: Some(tx), join: Some(join) }
    }

    pub async fn stop(&mut self) -> Result<(), focal_relay::RelayError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.join.take() {
            Some(j) => j.await.unwrap(),
            None => Ok(()),
        }
    }
}

/// `GET <path>` over plain HTTP/1.1; returns (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP head");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample `name` (with its labels exactly as rendered,
/// e.g. `focal_mailbox_depth{mailbox="b@carin"}`).
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// An Admin client for `role`/`name` of `net`, connected to the relay of `relay_net`.
pub async fn admin_client(
    pki: &Pki,
    net: &str,
    role: Role,
    name: &str,
    relay_net: &str,
    addr: SocketAddr,
) -> Result<AdminClient<Channel>, tonic::transport::Error> {
    let creds = pki.creds(net, role, name);
    let ch = channel(pki.trust(), &creds, relay_net, addr).await?;
    Ok(AdminClient::new(ch))
}

/// A member issued by `net`'s CA, with its serial (for revocation).
pub fn member(pki: &Pki, net: &str, name: &str) -> (Credentials, String) {
    let issued = pki.cas[net].issue(&IssueRequest::new(Role::Fp, name)).unwrap();
    let creds = Credentials::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    (creds, issued.serial_hex)
}

/// Rewrites `net`'s CRL file revoking `serials`.
pub fn revoke(pki: &Pki, net: &str, serials: &[&str], crl_number: u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let revoked: Vec<Revoked> =
        serials.iter().map(|s| Revoked { serial_hex: s.to_string(), revoked_at: now - 1 }).collect();
    let crl = pki.cas[net].crl(&revoked, crl_number, 30).unwrap();
    let path = pki.path(&format!("{net}-crl.pem"));
    std::fs::write(path, crl).unwrap();
}

/// A loopback UDP port free now (bound, then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A relay config of `net` on federation port `port` with `peer_net`'s
/// relay (`relay-<peer_net>`) as a peer at `peer_port`.
pub fn fed_config(pki: &Pki, net: &str, data: &Path, port: u16, peer_net: &str, peer_port: u16) -> PathBuf {
    let extra = format!(
        "\n[limits]\nshutdown_grace_secs = 2\n\n[[peers]]\nname = \"relay-{peer_net}\"\nnetwork = \"{peer_net}\"\naddress = \"127.0.0.1:{peer_port}\"\ndefault_route = false\n"
    );
    pki.federated_relay_config(net, data, &extra, port)
}
