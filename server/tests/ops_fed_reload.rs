//! Reload and the QUIC federation, through two real relays (carin and
//! arinsa, in-process, peers of each other on loopback):
//!
//! - a CRL revoking arinsa's RELAY certificate, loaded on carin by
//!   `Admin.Reload`, closes the live federation connection (arinsa sees the
//!   close code "certificate revoked"), the reload report names it, and
//!   arinsa's new connections are refused (audited CERTIFICATE_REFUSED);
//! - a rotated relay certificate and key, loaded by `Admin.Reload`, are
//!   presented to the next QUIC handshake, while the established link keeps
//!   running (no disconnect, messages still flow over it).

mod common;
mod ops_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use focal_certs::{Credentials, IssueRequest};
use focal_proto::pb::admin_client::AdminClient;
use focal_proto::{NetworkId, Role, pb};
use ops_support::*;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(90);

/// Issues (again) `net`'s relay certificate `relay-<net>` into the files the
/// config of `pki.relay_config` points at; returns its serial.
fn reissue_relay_cert(pki: &Pki, net: &str) -> String {
    let mut req = IssueRequest::new(Role::Relay, &format!("relay-{net}"));
    req.dns = vec!["localhost".into()];
    req.ips = vec!["127.0.0.1".parse().unwrap()];
    let issued = pki.cas[net].issue(&req).unwrap();
    let stem = format!("{net}-relay-relay-{net}");
    std::fs::write(pki.path(&format!("{stem}.pem")), &issued.cert_pem).unwrap();
    std::fs::write(pki.path(&format!("{stem}.key")), issued.key_pem.as_str()).unwrap();
    issued.serial_hex
}

struct Pair {
    pki: Pki,
    _data: Vec<tempfile::TempDir>,
    carin: OpsRelay,
    arinsa: OpsRelay,
    ports: (u16, u16),
    arinsa_serial: String,
}

async fn pair() -> Pair {
    let pki = Pki::new(&["carin", "arinsa"]);
    let (pc, pa) = (free_udp_port(), free_udp_port());
    let (dc, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cc = fed_config(&pki, "carin", dc.path(), pc, "arinsa", pa);
    let ca = fed_config(&pki, "arinsa", da.path(), pa, "carin", pc);
    let arinsa_serial = reissue_relay_cert(&pki, "arinsa");
    let carin = OpsRelay::start(&cc).await;
    let arinsa = OpsRelay::start(&ca).await;
    Pair { pki, _data: vec![dc, da], carin, arinsa, ports: (pc, pa), arinsa_serial }
}

async fn admin(pki: &Pki, net: &str, addr: SocketAddr) -> AdminClient<Channel> {
    admin_client(pki, net, Role::Admin, "ops", net, addr).await.unwrap()
}

/// Polls `peer`'s status on the relay behind `admin` until `cond` holds.
async fn wait_peer(
    admin: &mut AdminClient<Channel>,
    peer: &str,
    what: &str,
    cond: impl Fn(&pb::PeerStatus) -> bool,
) -> pb::PeerStatus {
    let start = Instant::now();
    loop {
        let s = admin.status(pb::StatusRequest {}).await.unwrap().into_inner();
        let p = s.peers.into_iter().find(|p| p.name == peer).expect("peer listed");
        if cond(&p) {
            return p;
        }
        assert!(start.elapsed() < DEADLINE, "{what}: still {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends alice@carin -> bob@arinsa and waits until bob's mailbox holds it.
async fn deliver(pki: &Pki, carin: SocketAddr, arinsa: SocketAddr, seed: u8) {
    let alice = Fp::connect(pki, "carin", "alice", carin).await;
    let bob = Fp::connect(pki, "arinsa", "bob", arinsa).await;
    let (_, h) = alice.send(&["bob@arinsa"], &random_bytes(500, seed)).await.unwrap();
    let start = Instant::now();
    while !bob.inbox().await.iter().any(|m| m.header.as_ref().map(msg_id) == Some(msg_id(&h))) {
        assert!(start.elapsed() < DEADLINE, "message {seed} not delivered to bob@arinsa");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn audit_log(pki: &Pki, net: &str, addr: SocketAddr) -> Vec<pb::AuditRecord> {
    let auditor = Fp::connect_role(pki, net, Role::Auditor, "auditor", addr).await;
    audit_records(&auditor.channel).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_relays_federation_link_is_closed_and_refused() {
    init();
    let mut p = pair().await;
    let mut carin = admin(&p.pki, "carin", p.carin.addr).await;
    let mut arinsa = admin(&p.pki, "arinsa", p.arinsa.addr).await;
    wait_peer(&mut carin, "relay-arinsa", "link up", |s| s.state == "connected").await;
    deliver(&p.pki, p.carin.addr, p.arinsa.addr, 1).await;

    revoke(&p.pki, "arinsa", &[&p.arinsa_serial], 2);
    let ack = carin.reload(pb::ReloadRequest {}).await.unwrap().into_inner();
    assert!(ack.detail.contains("closed 1 connection(s)"), "{}", ack.detail);
    assert!(ack.detail.contains("focal://arinsa/relay/relay-arinsa"), "{}", ack.detail);
    assert!(ack.detail.contains("revoked"), "{}", ack.detail);

    // arinsa sees its connection closed by carin with the revocation code.
    let s = wait_peer(&mut arinsa, "relay-carin", "revocation close seen", |s| {
        s.last_disconnect.contains("certificate revoked")
    })
    .await;
    assert!(s.last_disconnect.contains("code 7"), "{}", s.last_disconnect);

    // New connections of the revoked relay are refused at the handshake
    // (audited by carin), and the link does not come back.
    let start = Instant::now();
    let refusal = loop {
        let log = audit_log(&p.pki, "carin", p.carin.addr).await;
        if let Some(r) = log.into_iter().find(|r| {
            r.kind == pb::AuditKind::CertificateRefused as i32
                && r.peer.contains("focal://arinsa/relay/relay-arinsa")
        }) {
            break r;
        }
        assert!(start.elapsed() < DEADLINE, "no refusal of the revoked relay audited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(refusal.detail.to_lowercase().contains("revoked"), "{}", refusal.detail);
    let s = wait_peer(&mut carin, "relay-arinsa", "status", |_| true).await;
    assert_ne!(s.state, "connected", "{s:?}");

    p.carin.stop().await.unwrap();
    p.arinsa.stop().await.unwrap();
}

/// Distrusting a whole network: its CA is taken out of the trust bundle and
/// the relay reloaded, while `tls.crls` (not re-read by a reload) still
/// lists that network's CRL. The reload used to refuse the bundle over that
/// CRL and keep the old trust, the distrusted CA included; now the CRL is
/// left out and the network's relay is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_taken_out_of_the_bundle_is_disconnected_by_a_reload() {
    init();
    let mut p = pair().await;
    let mut carin = admin(&p.pki, "carin", p.carin.addr).await;
    wait_peer(&mut carin, "relay-arinsa", "link up", |s| s.state == "connected").await;
    deliver(&p.pki, p.carin.addr, p.arinsa.addr, 1).await;

    let mut bundle = focal_certs::TrustBundle::default();
    bundle.insert(NetworkId::new("carin").unwrap(), p.pki.cas["carin"].cert_der());
    std::fs::write(&p.pki.bundle, bundle.to_toml()).unwrap();
    let ack = carin.reload(pb::ReloadRequest {}).await.expect("the reload is not refused over arinsa's CRL");
    let detail = ack.into_inner().detail;
    assert!(detail.contains("closed 1 connection(s)"), "{detail}");
    assert!(detail.contains("focal://arinsa/relay/relay-arinsa"), "{detail}");
    let s = wait_peer(&mut carin, "relay-arinsa", "status", |_| true).await;
    assert_ne!(s.state, "connected", "{s:?}");

    p.carin.stop().await.unwrap();
    p.arinsa.stop().await.unwrap();
}

/// The certificate a QUIC handshake with the federation port presents.
async fn presented_cert(pki: &Pki, port: u16) -> Vec<u8> {
    let creds = pki.creds("arinsa", Role::Relay, "relay-probe");
    let carin = NetworkId::new("carin").unwrap();
    let cfg =
        focal_relay::federation::client_config(&creds, pki.trust(), &carin, &Default::default()).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint.connect_with(cfg, ([127, 0, 0, 1], port).into(), "localhost").unwrap().await.unwrap();
    let chain =
        conn.peer_identity().unwrap().downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>().unwrap();
    conn.close(0u32.into(), b"probe done");
    endpoint.wait_idle().await;
    chain[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_relay_certificate_serves_new_quic_connections_only() {
    init();
    let mut p = pair().await;
    let mut carin = admin(&p.pki, "carin", p.carin.addr).await;
    let mut arinsa = admin(&p.pki, "arinsa", p.arinsa.addr).await;
    wait_peer(&mut carin, "relay-arinsa", "link up", |s| s.state == "connected").await;
    deliver(&p.pki, p.carin.addr, p.arinsa.addr, 1).await;
    let before_c = wait_peer(&mut carin, "relay-arinsa", "status", |_| true).await;
    let before_a = wait_peer(&mut arinsa, "relay-carin", "status", |_| true).await;

    let old = presented_cert(&p.pki, p.ports.0).await;
    reissue_relay_cert(&p.pki, "carin");
    let new_pem = std::fs::read(p.pki.path("carin-relay-relay-carin.pem")).unwrap();
    let new_key = std::fs::read(p.pki.path("carin-relay-relay-carin.key")).unwrap();
    let new =
        Credentials::from_pem(&String::from_utf8(new_pem).unwrap(), &String::from_utf8(new_key).unwrap())
            .unwrap()
            .cert_der()
            .to_vec();
    assert_ne!(old, new);
    let ack = carin.reload(pb::ReloadRequest {}).await.unwrap().into_inner();
    assert!(ack.detail.contains("closed 0 connection(s)"), "{}", ack.detail);
    assert_eq!(presented_cert(&p.pki, p.ports.0).await, new, "a new handshake gets the reloaded certificate");

    // The established link was not dropped: traffic still flows and
    // neither side saw another disconnect.
    deliver(&p.pki, p.carin.addr, p.arinsa.addr, 2).await;
    let after_c = wait_peer(&mut carin, "relay-arinsa", "status", |_| true).await;
    let after_a = wait_peer(&mut arinsa, "relay-carin", "status", |_| true).await;
    assert_eq!(after_c.state, "connected");
    assert_eq!(after_c.last_disconnect, before_c.last_disconnect, "{after_c:?}");
    assert_eq!(after_a.last_disconnect, before_a.last_disconnect, "{after_a:?}");

    p.carin.stop().await.unwrap();
    p.arinsa.stop().await.unwrap();
}
