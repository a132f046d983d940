//! Bad-certificate matrix against the relay's gRPC listener (a real relay
//! in-process on 127.0.0.1, real TLS, real sled): each case is its own test.
//!
//! For each case an attacker's client (any chain, any ALPN, accepting any
//! server) tries to Send a message signed with its certificate's key to
//! `b@carin`. Every case asserts:
//! - the attempt fails at the connection or as a transport error (never as
//!   an application status: a PermissionDenied would mean the request
//!   reached a handler);
//! - no application data was processed: `b`'s mailbox is empty and the
//!   audit log holds nothing but CERTIFICATE_REFUSED records;
//! - the refusal is in the audit log (CERTIFICATE_REFUSED, with the claimed
//!   identity and the verifier's reason), read through an auditor client.
//!
//! Where the TLS layer never sees a certificate (no certificate, TLS 1.2
//! offered, wrong ALPN) nothing can be audited by the certificate verifier;
//! those tests assert the refusal and no processing, then use a second,
//! audited refusal as an ordering point to show the log holds no record of
//! any other kind. (The relay logs those handshakes through `tracing` only.)

mod common;
mod security_support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::*;
use focal_certs::{IssueRequest, Revoked};
use focal_proto::{Role, pb};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use security_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALPN: &[u8] = focal_certs::ALPN_GRPC;

struct Bench {
    pki: Pki,
    _data: tempfile::TempDir,
    relay: TestRelay,
    auditor: Fp,
    b: Fp,
}

impl Bench {
    /// A CARIN relay (ARINSA in the bundle too); `before` runs on the PKI
    /// before the relay loads it (e.g. to write a CRL).
    async fn start(before: impl FnOnce(&Pki)) -> Bench {
        init();
        let pki = Pki::new(&["carin", "arinsa"]);
        before(&pki);
        let data = tempfile::tempdir().unwrap();
        let relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;
        let auditor = Fp::connect_role(&pki, "carin", Role::Auditor, "aud", relay.addr).await;
        let b = Fp::connect(&pki, "carin", "b", relay.addr).await;
        Bench { pki, _data: data, relay, auditor, b }
    }

    fn addr(&self) -> SocketAddr {
        self.relay.addr
    }

    /// The attacker sends a message from `a@carin` to `b@carin`, signed by `cert`.
    async fn attack(&self, chain: &[&RawCert], alpn: &[u8]) -> String {
        let payload = random_bytes(500, 1);
        let header = forged_header(chain[0], "a@carin", &["b@carin"], &payload);
        let r = try_send(attacker_config(chain_of(chain), alpn), self.addr(), header, &payload).await;
        r.expect_err("the relay accepted a message over a refused certificate")
    }

    /// Nothing was processed: b's mailbox is empty, and the log holds only
    /// certificate refusals.
    async fn assert_nothing_processed(&self, records: &[pb::AuditRecord]) {
        assert!(self.b.inbox().await.is_empty(), "a message reached b's mailbox");
        for r in records {
            assert_eq!(r.kind(), pb::AuditKind::CertificateRefused, "application record in the log: {r:?}");
        }
    }

    /// Asserts a CERTIFICATE_REFUSED record naming `peer` (claimed identity,
    /// "" if none) whose detail contains `reason`, and nothing processed.
    async fn assert_audited(&self, peer: &str, reason: &str) {
        let records =
            wait_refused(&self.auditor.channel, reason, |r| r.peer == peer && r.detail.contains(reason))
                .await;
        // The claim is marked unverified, with the address it came from.
        let r = records.iter().rev().find(|r| r.peer == peer && r.detail.contains(reason)).unwrap();
        assert!(r.detail.starts_with("certificate not verified from 127.0.0.1: "), "{r:?}");
        self.assert_nothing_processed(&records).await;
    }

    /// For refusals the certificate verifier never sees: makes an audited
    /// refusal afterwards (an unknown CA's certificate for
    /// `focal://carin/fp/sentinel`) and, once it is in the log, checks that
    /// nothing was processed. Returns the records before the sentinel's.
    async fn assert_not_processed_unaudited(&mut self) -> Vec<pb::AuditRecord> {
        let sentinel = signed_by_ca(&rogue_ca("carin"), &leaf_params(Some("focal://carin/fp/sentinel")));
        self.attack(&[&sentinel], ALPN).await;
        let records =
            wait_refused(&self.auditor.channel, "sentinel", |r| r.peer == "focal://carin/fp/sentinel").await;
        self.assert_nothing_processed(&records).await;
        records.into_iter().take_while(|r| r.peer != "focal://carin/fp/sentinel").collect()
    }

    async fn stop(mut self) {
        self.relay.stop().await.unwrap();
    }
}

/// An issued certificate as a [`RawCert`].
fn raw_issued(issued: &focal_certs::IssuedCert) -> RawCert {
    RawCert {
        cert: CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap(),
        key_pair: rcgen::KeyPair::from_pem(&issued.key_pem).unwrap(),
    }
}

fn issue(pki: &Pki, net: &str, req: &IssueRequest) -> RawCert {
    raw_issued(&pki.cas[net].issue(req).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_no_client_certificate() {
    let mut bench = Bench::start(|_| {}).await;
    let payload = random_bytes(500, 1);
    let legit = issue(&bench.pki, "carin", &IssueRequest::new(Role::Fp, "a"));
    let header = forged_header(&legit, "a@carin", &["b@carin"], &payload);
    // TLS 1.3: the client may finish its side before the server refuses; the
    // refusal then surfaces at the first RPC (alert CertificateRequired).
    let e = try_send(attacker_config(None, ALPN), bench.addr(), header, &payload).await.unwrap_err();
    assert!(!e.is_empty());
    let before = bench.assert_not_processed_unaudited().await;
    assert!(before.is_empty(), "rustls refuses a missing certificate before any verifier runs: {before:?}");
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_self_signed_certificate() {
    let bench = Bench::start(|_| {}).await;
    let cert = self_signed(&leaf_params(Some("focal://carin/fp/a")));
    bench.attack(&[&cert], ALPN).await;
    bench.assert_audited("focal://carin/fp/a", "not trusted").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_an_unknown_ca() {
    let bench = Bench::start(|_| {}).await;
    let cert = signed_by_ca(&rogue_ca("carin"), &leaf_params(Some("focal://carin/fp/a")));
    bench.attack(&[&cert], ALPN).await;
    bench.assert_audited("focal://carin/fp/a", "not trusted").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_another_networks_ca_claiming_this_network() {
    let bench = Bench::start(|_| {}).await;
    // The ARINSA CA (in the bundle) signs a CARIN identity.
    let cert = signed_by_ca(&bench.pki.cas["arinsa"], &leaf_params(Some("focal://carin/fp/a")));
    bench.attack(&[&cert], ALPN).await;
    bench.assert_audited("focal://carin/fp/a", "issued by the arinsa CA, not the carin CA").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_an_expired_certificate() {
    let bench = Bench::start(|_| {}).await;
    let mut req = IssueRequest::new(Role::Fp, "a");
    req.not_before = SystemTime::now() - 3 * DAY;
    req.not_after = SystemTime::now() - DAY;
    let cert = issue(&bench.pki, "carin", &req);
    bench.attack(&[&cert], ALPN).await;
    bench.assert_audited("focal://carin/fp/a", "expired").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_not_yet_valid_certificate() {
    let bench = Bench::start(|_| {}).await;
    let mut req = IssueRequest::new(Role::Fp, "a");
    req.not_before = SystemTime::now() + DAY;
    req.not_after = SystemTime::now() + 3 * DAY;
    let cert = issue(&bench.pki, "carin", &req);
    bench.attack(&[&cert], ALPN).await;
    bench.assert_audited("focal://carin/fp/a", "is not valid before").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_revoked_certificate() {
    let issued = std::sync::Mutex::new(None);
    let bench = Bench::start(|pki| {
        let cert = pki.cas["carin"].issue(&IssueRequest::new(Role::Fp, "a")).unwrap();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let revoked = [Revoked { serial_hex: cert.serial_hex.clone(), revoked_at: now - 60 }];
        std::fs::write(&pki.crls[0], pki.cas["carin"].crl(&revoked, 2, 30).unwrap()).unwrap();
        *issued.lock().unwrap() = Some(cert);
    })
    .await;
    let cert = raw_issued(issued.lock().unwrap().as_ref().unwrap());
    bench.attack(&[&cert], ALPN).await;
    bench.assert_audited("focal://carin/fp/a", "revoked").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_relay_certificate_on_the_client_api() {
    let bench = Bench::start(|_| {}).await;
    let mut req = IssueRequest::new(Role::Relay, "relay-rogue");
    req.ips = vec!["127.0.0.1".parse().unwrap()];
    let cert = issue(&bench.pki, "carin", &req);
    bench.attack(&[&cert], ALPN).await;
    bench.assert_audited("focal://carin/relay/relay-rogue", "role relay not accepted here").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_certificate_without_client_auth_eku() {
    let bench = Bench::start(|_| {}).await;
    for (i, ekus) in [vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth], vec![]].into_iter().enumerate() {
        let uri = format!("focal://carin/fp/eku{i}");
        let mut params = leaf_params(Some(&uri));
        params.extended_key_usages = ekus;
        let cert = signed_by_ca(&bench.pki.cas["carin"], &params);
        bench.attack(&[&cert], ALPN).await;
        bench.assert_audited(&uri, "not valid for TLS client authentication").await;
    }
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_missing_or_malformed_san_uri() {
    let bench = Bench::start(|_| {}).await;
    let ca = &bench.pki.cas["carin"];
    let no_san = signed_by_ca(ca, &leaf_params(None));
    bench.attack(&[&no_san], ALPN).await;
    bench.assert_audited("", "no subjectAltName extension").await;
    // No identity can be claimed from a malformed URI: the records name none,
    // and each URI is refused with its own reason.
    let uris = ["focal://carin/superuser/x", "focal://CARIN/fp/x", "focal://carin/fp"];
    for (i, uri) in uris.into_iter().enumerate() {
        let cert = signed_by_ca(ca, &leaf_params(Some(uri)));
        bench.attack(&[&cert], ALPN).await;
        let start = std::time::Instant::now();
        loop {
            let records = audit_records(&bench.auditor.channel).await;
            let reasons: std::collections::BTreeSet<_> = records
                .iter()
                .filter(|r| r.peer.is_empty() && r.detail.contains("malformed SAN URI"))
                .map(|r| r.detail.clone())
                .collect();
            if reasons.len() > i {
                bench.assert_nothing_processed(&records).await;
                break;
            }
            assert!(start.elapsed() < DEADLINE, "no refusal recorded for {uri}: {reasons:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_leaf_used_as_a_ca() {
    let bench = Bench::start(|_| {}).await;
    let leaf = signed_by_ca(&bench.pki.cas["carin"], &leaf_params(Some("focal://carin/fp/b")));
    let child = signed_by_leaf(&leaf, &leaf_params(Some("focal://carin/fp/a")));
    bench.attack(&[&child, &leaf], ALPN).await;
    bench.assert_audited("focal://carin/fp/a", "not trusted").await;
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_another_networks_focal_point() {
    let bench = Bench::start(|_| {}).await;
    let cert = issue(&bench.pki, "arinsa", &IssueRequest::new(Role::Fp, "za-afu"));
    let payload = random_bytes(100, 2);
    let header = forged_header(&cert, "za-afu@arinsa", &["b@carin"], &payload);
    try_send(attacker_config(chain_of(&[&cert]), ALPN), bench.addr(), header, &payload).await.unwrap_err();
    bench.assert_audited("focal://arinsa/fp/za-afu", "network arinsa not accepted here").await;
    bench.stop().await;
}

/// A ClientHello offering TLS 1.2 only (no supported_versions extension),
/// with the usual TLS 1.2 AEAD suites, groups and signature schemes, ALPN h2.
fn tls12_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x42; 32]);
    body.push(0);
    let suites: [u16; 8] = [0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0x009c, 0x009d];
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    suites.iter().for_each(|s| body.extend(s.to_be_bytes()));
    body.extend([1, 0]);
    let mut ext = Vec::new();
    ext.extend([0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]);
    ext.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    ext.extend([0x00, 0x0d, 0x00, 0x0a, 0x00, 0x08, 0x08, 0x07, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    ext.extend([0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'2']);
    ext.extend([0x00, 0x17, 0x00, 0x00]);
    ext.extend([0xff, 0x01, 0x00, 0x01, 0x00]);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![0x01];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_tls_1_2() {
    let mut bench = Bench::start(|_| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(bench.addr()).await.unwrap();
    tcp.write_all(&tls12_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the relay neither answered nor closed");
    // A fatal alert (content type 21, level 2), never a ServerHello (22).
    assert!(answer.len() >= 7, "answer {answer:02x?}");
    assert_eq!((answer[0], answer[5]), (0x15, 2), "fatal alert expected, got {answer:02x?}");
    assert_eq!(answer[6], 70, "protocol_version alert expected, got {answer:02x?}");
    let before = bench.assert_not_processed_unaudited().await;
    assert!(before.is_empty(), "{before:?}");
    bench.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_a_wrong_alpn() {
    let mut bench = Bench::start(|_| {}).await;
    let cert = issue(&bench.pki, "carin", &IssueRequest::new(Role::Fp, "a"));
    let e = bench.attack(&[&cert], b"http/1.1").await;
    assert!(e.starts_with("connect"), "{e}");
    // ALPN is settled on the ClientHello, before any certificate is sent.
    let before = bench.assert_not_processed_unaudited().await;
    assert!(before.is_empty(), "{before:?}");
    // The same certificate with the right ALPN is accepted (the case is ALPN alone).
    let payload = random_bytes(10, 3);
    let header = forged_header(&cert, "a@carin", &["b@carin"], &payload);
    try_send(attacker_config(chain_of(&[&cert]), ALPN), bench.addr(), header, &payload).await.unwrap();
    assert_eq!(bench.b.inbox().await.len(), 1);
    bench.stop().await;
}
