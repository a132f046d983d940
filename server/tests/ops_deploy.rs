//! `deploy/`: the systemd unit passes `systemd-analyze verify` (with its
//! binary path pointed at the binary under test), and the operator guide's
//! steps (`deploy/operator-walkthrough.sh`) run with the real binaries.
//!
//! Both need system tools (systemd-analyze; openssl, xxd, curl, tar). A
//! missing tool skips the test with a message, unless `FOCAL_CI=1` or
//! `FOCAL_REQUIRE_PROBES=1` (set by `.ci/run`), where it fails (CI installs
//! them: `apt-get install systemd openssl xxd curl`).

use std::path::{Path, PathBuf};
use std::process::Command;

const RELAY: &str = env!("CARGO_BIN_EXE_focal-relay");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Whether `tool` runs; if not, panics under FOCAL_CI=1, else says it skips.
fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        for var in ["FOCAL_CI", "FOCAL_REQUIRE_PROBES"] {
            assert!(std::env::var(var).as_deref() != Ok("1"), "{tool} is required under {var}=1");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    ok
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let unit = std::fs::read_to_string(root().join("deploy/systemd/focal-relay.service")).unwrap();
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"), "reload is SIGHUP");
    for key in ["NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=", "User=focal"] {
        assert!(unit.contains(key), "hardening: {key}");
    }
    // verify checks that ExecStart's binary exists: point it at ours.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("focal-relay.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/focal-relay", RELAY)).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
}

#[test]
fn operator_walkthrough_runs_with_the_real_binaries() {
    if !["bash", "openssl", "xxd", "curl", "tar"].iter().all(|t| have(t)) {
        return;
    }
    // focal-certs is another crate's binary: `cargo test --workspace` builds
    // it beside focal-relay; otherwise build it here.
    let certs = Path::new(RELAY).with_file_name("focal-certs");
    if !certs.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "focal-certs", "--bin", "focal-certs"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "building focal-certs");
    }
    assert!(certs.is_file(), "{} missing", certs.display());

    let work = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root().join("deploy/operator-walkthrough.sh"))
        .arg(work.path())
        .env("FOCAL_RELAY", RELAY)
        .env("FOCAL_CERTS", &certs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "walkthrough failed:\n{text}");
    for line in [
        "nl-fiod@carin authenticated",
        "nl-fiod@carin refused after the reload (audited)",
        "from before the backup",
        "operator walkthrough complete",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}
