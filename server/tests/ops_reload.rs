//! Reload without downtime: a new CRL revoking a member closes that
//! member's live connection (its Inbox stream ends) while another member's
//! stream keeps receiving; a revoked member cannot reconnect; a bad CRL
//! fails the reload and changes nothing; a rotated relay certificate serves
//! the next handshake; and the real binary reloads on SIGHUP.

mod common;
mod ops_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use focal_certs::{Credentials, ExpectedServer, IssueRequest};
use focal_proto::pb::relay_client::RelayClient;
use focal_proto::{NetworkId, Role, pb};
use ops_support::*;
use tonic::Streaming;

/// Opens a live Inbox stream and reads up to replay_done.
async fn live_inbox(ch: tonic::transport::Channel) -> Streaming<pb::InboxEvent> {
    let req = pb::InboxRequest { include_receipts: false, replay_only: false };
    let mut s = RelayClient::new(ch).inbox(req).await.unwrap().into_inner();
    loop {
        match s.message().await.unwrap().unwrap().event {
            Some(pb::inbox_event::Event::ReplayDone(_)) => return s,
            Some(_) => {}
            None => panic!("empty event"),
        }
    }
}

/// The stream has ended (error or end) within 10 s.
async fn ended(s: &mut Streaming<pb::InboxEvent>) -> String {
    match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
        Ok(Ok(None)) => "end of stream".into(),
        Ok(Err(status)) => format!("{status:?}"),
        Ok(Ok(Some(ev))) => panic!("stream still delivering: {ev:?}"),
        Err(_) => panic!("stream still open 10 s after the reload"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_reload_closes_the_revoked_members_stream_only() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = OpsRelay::start(&pki.relay_config("carin", data.path(), "")).await;

    let (alice, alice_serial) = member(&pki, "carin", "alice");
    let (bob, _) = member(&pki, "carin", "bob");
    let alice_ch = channel(pki.trust(), &alice, "carin", relay.addr).await.unwrap();
    let bob_ch = channel(pki.trust(), &bob, "carin", relay.addr).await.unwrap();
    let mut alice_inbox = live_inbox(alice_ch).await;
    let mut bob_inbox = live_inbox(bob_ch).await;
    let carol = Fp::connect(&pki, "carin", "carol", relay.addr).await;
    let mut admin = admin_client(&pki, "carin", Role::Admin, "ops", "carin", relay.addr).await.unwrap();

    // A reload that fails (a file that is not a CRL) changes nothing.
    let crl_path = pki.path("carin-crl.pem");
    let good_crl = std::fs::read(&crl_path).unwrap();
    std::fs::write(&crl_path, "not a CRL").unwrap();
    let err = admin.reload(pb::ReloadRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("nothing changed") && err.message().contains("carin-crl.pem"),
        "{}",
        err.message()
    );
    std::fs::write(&crl_path, good_crl).unwrap();

    revoke(&pki, "carin", &[&alice_serial], 2);
    let ack = admin.reload(pb::ReloadRequest {}).await.unwrap().into_inner();
    assert!(ack.detail.contains("closed 1 connection(s)"), "{}", ack.detail);
    assert!(ack.detail.contains("focal://carin/fp/alice"), "{}", ack.detail);

    let why = ended(&mut alice_inbox).await;
    tracing::info!(%why, "alice's stream ended");

    // Bob's stream continues and gets a message sent after the reload.
    let (_, header) = carol.send(&["bob@carin"], &random_bytes(300, 3)).await.unwrap();
    let ev =
        tokio::time::timeout(Duration::from_secs(10), bob_inbox.message()).await.unwrap().unwrap().unwrap();
    match ev.event {
        Some(pb::inbox_event::Event::Message(m)) => {
            assert_eq!(m.header.unwrap().context, header.context)
        }
        other => panic!("expected a message, got {other:?}"),
    }

    // Alice cannot come back.
    let refused = match channel(pki.trust(), &alice, "carin", relay.addr).await {
        Err(_) => true,
        Ok(ch) => RelayClient::new(ch).receipts(pb::ReceiptsRequest { since_ms: 0 }).await.is_err(),
    };
    assert!(refused, "a revoked member reconnected");

    let c = relay.ops.metrics.counters();
    assert_eq!((c.reloads, c.reload_failures, c.connections_closed_on_reload), (1, 1, 1));
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_relay_certificate_serves_the_next_handshake() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = OpsRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    let alice = Fp::connect(&pki, "carin", "alice", relay.addr).await;

    let mut req = IssueRequest::for_days(Role::Relay, "relay-carin", 20);
    req.ips = vec!["127.0.0.1".parse().unwrap()];
    let issued = pki.cas["carin"].issue(&req).unwrap();
    std::fs::write(&relay.config.tls.cert, &issued.cert_pem).unwrap();
    std::fs::write(&relay.config.tls.key, issued.key_pem.as_str()).unwrap();
    relay.ops.reloader.reload().await.unwrap();

    // The next handshake presents the new certificate.
    let creds = pki.creds("carin", Role::Fp, "dave");
    let server = ExpectedServer { network: NetworkId::new("carin").unwrap(), role: Role::Relay };
    let config = focal_certs::client_config(&creds, pki.trust(), focal_certs::ALPN_GRPC, server).unwrap();
    let tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(relay.addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let new = Credentials::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
    assert_eq!(served.as_ref(), new.cert_der().as_ref());
    drop(tls); // an idle TLS connection would hold shutdown for its grace period

    // The old connection still works; the status shows the new date, and
    // it is within the warning period.
    alice.send(&["bob@carin"], &random_bytes(10, 1)).await.unwrap();
    let dated = relay.ops.reloader.dated().read().unwrap().clone();
    let relay_cert = dated.iter().find(|d| d.what == "relay certificate").unwrap();
    assert!(relay_cert.days_left(focal_relay::expiry::unix_now()) < focal_relay::expiry::WARN_DAYS);
    relay.stop().await.unwrap();
}

/// The next log line containing `needle`.
async fn next_with(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("log line in time")
            .expect("relay still running");
        if line.contains(needle) {
            return line;
        }
    }
}

/// The real binary: SIGHUP reloads the CRL and ends the revoked member's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_crl_of_a_running_relay() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let config = pki.relay_config("carin", data.path(), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_focal-relay"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = next_with(&mut rx, "focal-relay listening grpc=").await;
    let addr: std::net::SocketAddr =
        listening.split("grpc=").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();

    let (alice, serial) = member(&pki, "carin", "alice");
    let ch = channel(pki.trust(), &alice, "carin", addr).await.unwrap();
    let mut inbox = live_inbox(ch).await;
    revoke(&pki, "carin", &[&serial], 2);
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let done = next_with(&mut rx, "reload complete").await;
    assert!(done.contains("closed 1 connection"), "{done}");
    ended(&mut inbox).await;

    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
}
