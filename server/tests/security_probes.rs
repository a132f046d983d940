//! Third-party probes against a real relay's gRPC port:
//! - `tests/probes/python_client.py` (grpcio + grpcio-tools stubs generated
//!   from `proto/`) sends a sealed envelope as one focal point and reads it
//!   back as the recipient over mTLS, and is refused without a certificate;
//!   this test then opens what Python fetched with the recipient's key;
//! - `sslscan` (Debian) shows TLS 1.3 only, no SSLv2/3, TLS 1.0/1.1/1.2, and
//!   only TLS 1.3 AEAD suites.
//!
//! A missing tool skips its test with a message on stderr, unless
//! `FOCAL_REQUIRE_PROBES=1` (set in CI), which turns the skip into a failure.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use focal_proto::envelope::{self, ContextParams, RecipientSecretKey};
use focal_proto::{Address, Role, pb};
use prost::Message;

/// Whether `cmd args` runs successfully; skips (or fails in CI) if not.
fn tool_available(what: &str, cmd: &str, args: &[&str]) -> bool {
    let ok = Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{what} not available (`{cmd} {}` failed)", args.join(" "));
        if std::env::var_os("FOCAL_REQUIRE_PROBES").is_some() {
            panic!("{msg}, and FOCAL_REQUIRE_PROBES is set");
        }
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

/// Runs a child process off the runtime's threads (the relay keeps serving).
async fn run_blocking(cmd: &mut Command) -> std::process::Output {
    let mut cmd = std::mem::replace(cmd, Command::new("true"));
    tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap()
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_sends_and_receives_over_mtls() {
    init();
    if !tool_available(
        "python grpcio-tools and grpclib",
        "python3",
        &["-c", "import grpc, grpc_tools, grpclib"],
    ) {
        return;
    }
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;

    let (a_cert, a_key) = pki.issue("carin", Role::Fp, "nl-fiod");
    let (b_cert, b_key) = pki.issue("carin", Role::Fp, "be-oca");
    let a = focal_certs::Credentials::load(&a_cert, &a_key).unwrap();
    let ca = pki.path("carin-ca.pem");
    std::fs::write(&ca, pki.cas["carin"].cert_pem()).unwrap();

    // The envelope, sealed to be-oca's X25519 key by nl-fiod.
    let b_secret = RecipientSecretKey::generate();
    let now = now_ms();
    let context = envelope::build_context(&ContextParams {
        msg_id: envelope::new_msg_id(),
        sender: Address::parse("nl-fiod@carin").unwrap(),
        recipients: vec![Address::parse("be-oca@carin").unwrap()],
        created_at_ms: now,
        expires_at_ms: now + 3_600_000,
        handling: pb::HandlingCode::H2,
        priority: pb::Priority::Normal,
        forward_of: None,
        broadcast_network: None,
    })
    .unwrap();
    let plaintext = random_bytes(150_000, 4);
    let sealed = envelope::seal_envelope(
        &context,
        &[b_secret.public_key()],
        &plaintext,
        &a.signing_key().unwrap(),
        a.cert_der(),
    )
    .unwrap();
    let env_path = pki.path("envelope.bin");
    let out_path = pki.path("fetched.bin");
    std::fs::write(&env_path, sealed.encode_to_vec()).unwrap();

    let script = repo().join("tests/probes/python_client.py");
    let proto = repo().join("proto/proto");
    let addr = relay.addr.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        script.as_os_str(),
        "--proto".as_ref(),
        proto.as_os_str(),
        "--addr".as_ref(),
        addr.as_ref(),
        "--ca".as_ref(),
        ca.as_os_str(),
        "--sender-cert".as_ref(),
        a_cert.as_os_str(),
        "--sender-key".as_ref(),
        a_key.as_os_str(),
        "--sender-address".as_ref(),
        "nl-fiod@carin".as_ref(),
        "--recipient-cert".as_ref(),
        b_cert.as_os_str(),
        "--recipient-key".as_ref(),
        b_key.as_os_str(),
        "--envelope".as_ref(),
        env_path.as_os_str(),
        "--out".as_ref(),
        out_path.as_os_str(),
    ];
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let out = run_blocking(Command::new("python3").args(args)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "python client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("no certificate refused"), "{stdout}");
    assert!(stdout.contains("python_client: OK"), "{stdout}");

    let fetched = pb::Envelope::decode(std::fs::read(&out_path).unwrap().as_slice()).unwrap();
    assert_eq!(envelope::open_envelope(&fetched, &[&b_secret]).unwrap(), plaintext);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslscan_sees_tls_1_3_only_and_no_weak_ciphers() {
    init();
    if !tool_available("sslscan", "sslscan", &["--version"]) {
        return;
    }
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    let out = run_blocking(Command::new("sslscan").args(["--no-colour", &relay.addr.to_string()])).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    assert!(out.status.success(), "sslscan failed: {}", String::from_utf8_lossy(&out.stderr));
    let line = |proto: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(proto))
            .unwrap_or_else(|| panic!("no {proto} line in:\n{text}"))
            .to_owned()
    };
    for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2"] {
        assert!(line(old).contains("disabled"), "{old} not disabled: {}", line(old));
    }
    assert!(line("TLSv1.3").contains("enabled"), "{}", line("TLSv1.3"));
    let ciphers: Vec<&str> =
        text.lines().filter(|l| l.starts_with("Preferred") || l.starts_with("Accepted")).collect();
    assert!(!ciphers.is_empty(), "no accepted cipher listed:\n{text}");
    for c in &ciphers {
        assert!(c.contains("TLSv1.3"), "non-TLS 1.3 cipher accepted: {c}");
        let strong = ["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"];
        assert!(strong.iter().any(|s| c.contains(s)), "unexpected cipher: {c}");
    }
    relay.stop().await.unwrap();
}
