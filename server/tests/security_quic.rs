//! Bad certificates against the QUIC federation listener
//! (`focal_relay::federation::Federation::start` on loopback), for the cases
//! the transport's own tests (federation_security.rs, certs/tests/quic.rs)
//! do not cover: expired, revoked, unknown CA, another network's CA
//! minting an identity of the network a configured peer serves, self-signed,
//! no clientAuth EKU, and a leaf used as a CA.
//!
//! The attacker claims `focal://carin/relay/relay-carin`, a peer the GFP
//! relay is configured to accept, and presents its certificate with the
//! right ALPN. Each case asserts: the handshake is refused (a
//! `LinkEvent::Refused` of kind Handshake with no identity), no hello is
//! answered, no link comes up and the handler saw nothing; and the trust
//! store's refusal hook (which a relay feeds into its audit log as
//! CERTIFICATE_REFUSED, see security_certs.rs) got the claimed identity and
//! the reason. The last test runs a whole relay and finds the refusals in
//! its audit log.

mod common;
mod federation_support;
mod security_support;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use focal_certs::{CertRefusal, IssueRequest, Revoked, SharedTrust};
use focal_proto::{Role, pb};
use focal_relay::federation::{Direction, Federation, LinkEvent, RefusalKind};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use security_support::{DAY, RawCert, attacker_config, chain_of, relay_params, rogue_ca, signed_by_ca};

const CLAIM: &str = "focal://carin/relay/relay-carin";

/// GFP's federation endpoint (peer relay-carin configured at an address
/// nobody serves), over `pki`'s trust with a recording refusal hook.
struct Gfp {
    relay: federation_support::Relay,
    refusals: Arc<Mutex<Vec<CertRefusal>>>,
    _idle: std::net::UdpSocket,
}

fn start_gfp(pki: &common::Pki) -> Gfp {
    let trust: SharedTrust = pki.trust();
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let sink = refusals.clone();
    trust.set_refusal_hook(Arc::new(move |r: &CertRefusal| sink.lock().unwrap().push(r.clone())));
    let creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let idle = federation_support::udp();
    let peers = vec![federation_support::peer("relay-carin", "carin", idle.local_addr().unwrap())];
    let socket = federation_support::udp();
    let addr = socket.local_addr().unwrap();
    let handler = Arc::new(federation_support::Recorder::default());
    let fed = Federation::start(
        socket,
        &creds,
        trust,
        federation_support::hello_of(&creds),
        &peers,
        handler.clone(),
        federation_support::tuning(),
    )
    .unwrap();
    let events = fed.subscribe();
    let relay = federation_support::Relay { fed, handler, events, addr, creds_name: "relay-gfp".into() };
    Gfp { relay, refusals, _idle: idle }
}

fn raw(issued: &focal_certs::IssuedCert) -> RawCert {
    RawCert {
        cert: CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap(),
        key_pair: rcgen::KeyPair::from_pem(&issued.key_pem).unwrap(),
    }
}

fn relay_req() -> IssueRequest {
    let mut req = IssueRequest::new(Role::Relay, "relay-carin");
    req.ips = vec!["127.0.0.1".parse().unwrap()];
    req.dns = vec!["localhost".into()];
    req
}

/// Dials GFP as relay-carin with `cert` and asserts the full refusal.
async fn assert_refused(gfp: &mut Gfp, cert: &RawCert, reason: &str) {
    assert_refused_chain(gfp, &[cert], reason).await
}

/// Same, presenting `chain` (leaf first).
async fn assert_refused_chain(gfp: &mut Gfp, chain: &[&RawCert], reason: &str) {
    let tls = attacker_config(chain_of(chain), focal_certs::ALPN_FEDERATION);
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = quinn::ClientConfig::new(Arc::new(quic));
    // TLS 1.3: the client may finish before the server refuses; then the
    // connection dies before any hello is answered.
    match endpoint.connect_with(cfg, gfp.relay.addr, "localhost").unwrap().await {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(conn) => {
            let hello = pb::Hello {
                protocol_version: 1,
                relay: "relay-carin".into(),
                networks: vec!["carin".into()],
                log_origin: "focal/carin/relay-carin".into(),
                log_key: vec![7; 32],
                witness_key: vec![],
            };
            let answer = federation_support::raw_hello(&conn, hello).await;
            assert!(answer.is_err(), "hello answered over a refused certificate: {answer:?}");
        }
    }
    let ev = federation_support::wait_event(&mut gfp.relay.events, "handshake refused", |e| {
        matches!(e, LinkEvent::Refused(r) if r.kind == RefusalKind::Handshake && r.direction == Direction::Inbound)
    })
    .await;
    let LinkEvent::Refused(r) = ev else { unreachable!() };
    assert!(r.identity.is_none(), "{r:?}");
    let h = &gfp.relay.handler;
    assert!(!h.events().iter().any(|e| matches!(e, LinkEvent::Connected(_))), "a link came up");
    assert!(h.envelopes().is_empty() && h.requests.lock().unwrap().is_empty(), "the handler saw traffic");
    let seen = gfp.refusals.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s.claimed.as_deref() == Some(CLAIM) && s.reason.contains(reason)),
        "no refusal of {CLAIM} with {reason:?}: {seen:?}"
    );
    endpoint.close(0u32.into(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_an_expired_relay_certificate() {
    federation_support::init();
    let pki = common::Pki::new(&["carin", "gfp"]);
    let mut gfp = start_gfp(&pki);
    let mut req = relay_req();
    req.not_before = SystemTime::now() - 3 * DAY;
    req.not_after = SystemTime::now() - DAY;
    let cert = raw(&pki.cas["carin"].issue(&req).unwrap());
    assert_refused(&mut gfp, &cert, "expired").await;
    gfp.relay.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_a_revoked_relay_certificate() {
    federation_support::init();
    let pki = common::Pki::new(&["carin", "gfp"]);
    let issued = pki.cas["carin"].issue(&relay_req()).unwrap();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let revoked = [Revoked { serial_hex: issued.serial_hex.clone(), revoked_at: now - 60 }];
    std::fs::write(&pki.crls[0], pki.cas["carin"].crl(&revoked, 2, 30).unwrap()).unwrap();
    let mut gfp = start_gfp(&pki);
    assert_refused(&mut gfp, &raw(&issued), "revoked").await;
    gfp.relay.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_a_relay_certificate_of_an_unknown_ca() {
    federation_support::init();
    let pki = common::Pki::new(&["carin", "gfp"]);
    let mut gfp = start_gfp(&pki);
    let cert = signed_by_ca(&rogue_ca("carin"), &relay_params(CLAIM));
    assert_refused(&mut gfp, &cert, "not trusted").await;
    gfp.relay.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_another_networks_ca_minting_a_peer_identity() {
    federation_support::init();
    let pki = common::Pki::new(&["carin", "gfp", "arinsa"]);
    let mut gfp = start_gfp(&pki);
    // ARINSA's CA (in the bundle) signs the identity of CARIN's relay; so
    // does the listener's own (GFP) CA.
    for ca in ["arinsa", "gfp"] {
        let cert = signed_by_ca(&pki.cas[ca], &relay_params(CLAIM));
        assert_refused(&mut gfp, &cert, &format!("issued by the {ca} CA, not the carin CA")).await;
    }
    gfp.relay.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_a_self_signed_relay_certificate() {
    federation_support::init();
    let pki = common::Pki::new(&["carin", "gfp"]);
    let mut gfp = start_gfp(&pki);
    let cert = security_support::self_signed(&relay_params(CLAIM));
    assert_refused(&mut gfp, &cert, "not trusted").await;
    gfp.relay.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_a_relay_certificate_without_client_auth_eku() {
    federation_support::init();
    let pki = common::Pki::new(&["carin", "gfp"]);
    let mut gfp = start_gfp(&pki);
    // A dialling relay is a TLS client: serverAuth alone does not do.
    let mut params = relay_params(CLAIM);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = signed_by_ca(&pki.cas["carin"], &params);
    assert_refused(&mut gfp, &cert, "not valid for TLS client authentication").await;
    gfp.relay.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_a_leaf_used_as_a_ca() {
    federation_support::init();
    let pki = common::Pki::new(&["carin", "gfp"]);
    let mut gfp = start_gfp(&pki);
    let fp =
        signed_by_ca(&pki.cas["carin"], &security_support::leaf_params(Some("focal://carin/fp/nl-fiod")));
    let child = security_support::signed_by_leaf(&fp, &relay_params(CLAIM));
    let tls_chain = [&child, &fp];
    assert_refused_chain(&mut gfp, &tls_chain, "not trusted").await;
    gfp.relay.fed.close().await;
}

/// The same refusals against a whole running relay (`focal_relay::serve`
/// with `listen.federation`): its federation endpoint shares the trust store
/// whose refusal hook feeds the audit log, so each refused certificate is a
/// CERTIFICATE_REFUSED record naming the claim and the reason, read by an
/// auditor; besides the link layer's PEER_REFUSED records nothing else is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refusals_reach_a_running_relays_audit_log() {
    common::init();
    let pki = common::Pki::new(&["gfp", "carin", "arinsa"]);
    // Revoked before the relay loads its CRLs (crls[1] is carin's).
    let revoked_cert = pki.cas["carin"].issue(&relay_req()).unwrap();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let revoked = [Revoked { serial_hex: revoked_cert.serial_hex.clone(), revoked_at: now - 60 }];
    std::fs::write(&pki.crls[1], pki.cas["carin"].crl(&revoked, 2, 30).unwrap()).unwrap();

    let idle = federation_support::udp();
    let data = tempfile::tempdir().unwrap();
    let peer = format!(
        "[[peers]]\nname = \"relay-carin\"\nnetwork = \"carin\"\naddress = \"{}\"\n",
        idle.local_addr().unwrap()
    );
    let path = pki.federated_relay_config("gfp", data.path(), &peer, 0);
    let config = focal_relay::config::RelayConfig::load(&path).unwrap();
    let listeners = focal_relay::Listeners::bind(&config).await.unwrap();
    let grpc = listeners.grpc.local_addr().unwrap();
    let quic = listeners.federation.as_ref().unwrap().local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(focal_relay::serve(config, listeners, async move {
        let _ = stopped.await;
    }));
    let auditor = common::Fp::connect_role(&pki, "gfp", Role::Auditor, "aud", grpc).await;

    let mut expired_req = relay_req();
    expired_req.not_before = SystemTime::now() - 3 * DAY;
    expired_req.not_after = SystemTime::now() - DAY;
    let cases = [
        (raw(&pki.cas["carin"].issue(&expired_req).unwrap()), "expired"),
        (raw(&revoked_cert), "revoked"),
        (signed_by_ca(&rogue_ca("carin"), &relay_params(CLAIM)), "not trusted"),
        (signed_by_ca(&pki.cas["arinsa"], &relay_params(CLAIM)), "issued by the arinsa CA, not the carin CA"),
    ];
    for (cert, reason) in &cases {
        let tls = attacker_config(chain_of(&[cert]), focal_certs::ALPN_FEDERATION);
        let cfg = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
        ));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        if let Ok(conn) = endpoint.connect_with(cfg, quic, "localhost").unwrap().await {
            let hello = pb::Hello {
                protocol_version: 1,
                relay: "relay-carin".into(),
                networks: vec!["carin".into()],
                ..Default::default()
            };
            assert!(federation_support::raw_hello(&conn, hello).await.is_err(), "{reason}: hello answered");
        }
        let records = security_support::wait_refused(&auditor.channel, reason, |r| {
            r.peer == CLAIM && r.detail.contains(reason)
        })
        .await;
        // The link layer also logs its refusal (PEER_REFUSED); nothing else.
        for r in &records {
            let k = r.kind();
            assert!(
                k == pb::AuditKind::CertificateRefused || k == pb::AuditKind::PeerRefused,
                "{reason}: {r:?}"
            );
        }
        endpoint.close(0u32.into(), b"");
    }
    let _ = stop.send(());
    relay.await.unwrap().unwrap();
}
