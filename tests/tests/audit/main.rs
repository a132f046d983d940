//! Audit-log tests through the real `focal` CLI against real relays (issue
//! 5's "Must show"): tampered and forked logs fail `focal audit verify` with
//! a message naming what is wrong, the log survives SIGKILLs of the relay,
//! access is limited to the network's own auditors, and no record, store
//! file or export holds a message's plaintext.
//!
//! Witness cosignatures from `focal_relay::audit::witness` are checked by
//! `focal audit verify --require` as well.
//!
//! Run: `cargo test -p focal-tests --test audit`. The crash test takes
//! `FOCAL_AUDIT_CRASH_CYCLES` (default and minimum 20).

mod access;
mod bench;
mod crash;
mod plaintext;
mod tamper;
mod witness;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use focal_client::Draft;
use focal_client::progress::{NoProgress, Progress};
use focal_proto::Address;
pub use focal_tests::cli::{json_lines, ok, run};
use focal_tests::{Bins, FocalPoint};
use serde_json::Value;

/// Upper bound for anything that should happen promptly (a failure bound,
/// never a synchronisation).
pub const PROMPT: Duration = Duration::from_secs(30);

/// No progress reporting.
pub fn quiet() -> Arc<dyn Progress> {
    Arc::new(NoProgress)
}

/// A parsed member address.
pub fn addr(s: &str) -> Address {
    Address::parse_member(s).expect("test address")
}

/// A plain text message.
pub fn draft(to: &[&str], subject: &str, body: &str) -> Draft {
    Draft::new(to.iter().map(|a| addr(a)).collect(), subject, body)
}

/// The log's verifier key, as the secretariat would hand it to auditors
/// out of band (here read from the relay through the auditor's profile).
pub async fn log_key(auditor: &FocalPoint) -> Result<String> {
    let info = focal_client::Client::connect(auditor.profile()?)
        .await?
        .audit()
        .get_log_info(focal_proto::pb::GetCheckpointRequest { fresh: false })
        .await?
        .into_inner();
    Ok(info.verifier_key)
}

/// `focal --json audit fetch` then `focal --json audit verify` on `dir`;
/// returns the verified size.
pub async fn fetch_and_verify(auditor: &FocalPoint, bins: &Bins, dir: &Path, key: &str) -> Result<u64> {
    let d = dir.to_str().context("utf-8 dir")?;
    ok(auditor, bins, &["--json", "audit", "fetch", "--dir", d, "--key", key]).await?;
    let v = json_lines(&ok(auditor, bins, &["--json", "audit", "verify", "--dir", d, "--key", key]).await?)?;
    ensure!(v[0]["type"] == "audit_verified", "{v:?}");
    v[0]["size"].as_u64().context("verified size")
}

/// Every record of a fetched log, via `focal --json audit export`.
pub async fn export(auditor: &FocalPoint, bins: &Bins, dir: &Path) -> Result<Vec<Value>> {
    let d = dir.to_str().context("utf-8 dir")?;
    json_lines(&ok(auditor, bins, &["audit", "export", "--dir", d, "--format", "jsonl"]).await?)
}

/// Copies a directory tree (files and subdirectories).
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}
