//! The `focal-relay` binary as an operator runs it: `check` finds each kind
//! of bad certificate material with a precise message; `run` refuses a bad
//! config before binding, logs the listening line once serving, and exits 0
//! on SIGTERM after flushing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::*;
use focal_certs::IssueRequest;
use focal_proto::Role;

const BIN: &str = env!("CARGO_BIN_EXE_focal-relay");

fn check(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN).args(["check", "--config"]).arg(config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Rewrites the config's tls.cert / tls.key lines.
fn with_tls(config: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("cert = ") {
            out += &format!("cert = {:?}\n", cert.display().to_string());
        } else if line.starts_with("key = ") {
            out += &format!("key = {:?}\n", key.display().to_string());
        } else {
            out += line;
            out.push('\n');
        }
    }
    let path = config.with_extension("edited.toml");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn check_reports_each_kind_of_bad_material() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let good = pki.relay_config("carin", data.path(), "");

    let (ok, text) = check(&good);
    assert!(ok, "{text}");
    assert!(text.contains("focal://carin/relay/relay-carin"), "{text}");
    assert!(text.contains("config is valid"), "{text}");
    assert!(text.contains("2 network(s): arinsa, carin"), "{text}");

    let (_, key) = pki.issue("carin", Role::Relay, "relay-carin");
    let missing = with_tls(&good, &pki.path("nope.pem"), &key);
    let (ok, text) = check(&missing);
    assert!(!ok);
    assert!(text.contains("tls.cert: cannot read") && text.contains("nope.pem"), "{text}");

    let (c, k) = pki.issue("carin", Role::Fp, "relay-carin");
    let (ok, text) = check(&with_tls(&good, &c, &k));
    assert!(!ok);
    assert!(text.contains("role is fp, expected relay"), "{text}");

    let (c, k) = pki.issue("arinsa", Role::Relay, "relay-carin");
    let (ok, text) = check(&with_tls(&good, &c, &k));
    assert!(!ok);
    assert!(text.contains("network is arinsa, expected carin"), "{text}");

    let mut req = IssueRequest::new(Role::Relay, "relay-carin");
    req.not_before = SystemTime::now() - Duration::from_secs(10 * 86_400);
    req.not_after = SystemTime::now() - Duration::from_secs(86_400);
    let (c, k) = pki.issue_req("carin", &req);
    let (ok, text) = check(&with_tls(&good, &c, &k));
    assert!(!ok);
    assert!(text.contains("certificate expired on"), "{text}");

    let (c, _) = pki.issue("carin", Role::Relay, "relay-carin");
    let (_, other_key) = pki.issue("carin", Role::Relay, "other");
    let (ok, text) = check(&with_tls(&good, &c, &other_key));
    assert!(!ok);
    assert!(text.to_lowercase().contains("match"), "key mismatch: {text}");

    let bad_limit = pki.relay_config("carin", data.path(), "[limits]\nmax_message_bytes = 0\n");
    let (ok, text) = check(&bad_limit);
    assert!(!ok);
    assert!(text.contains("limits.max_message_bytes: must be > 0"), "{text}");
}

#[test]
fn run_logs_listening_and_stops_on_sigterm() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();

    let bad = pki.relay_config("carin", data.path(), "[limits]\nmax_connections = 0\n");
    let out = Command::new(BIN).args(["run", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.max_connections: must be > 0"));

    let config = pki.relay_config("carin", data.path(), "");
    let mut child = Command::new(BIN)
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("focal-relay listening grpc="))
        .expect("listening line");
    assert!(listening.contains("federation=none"), "{listening}");
    assert!(listening.starts_with('{'), "json log line: {listening}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("store flushed")), "{rest:?}");
}

#[test]
fn demo_offers_its_options() {
    // The demo itself runs end to end in tests/tests/federation/demo.rs.
    let out = Command::new(BIN).args(["demo", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--keep-running") && help.contains("--dir"), "{help}");
}
