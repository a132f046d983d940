//! Running the `focal` CLI as a child process with a focal point's profile,
//! as the CLI tests do: the raw output, "must succeed" (stdout), "must be
//! refused" (stderr), and JSON-lines parsing of `--json` output.

use std::process::Output;

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::{Bins, FocalPoint};

/// `focal --profile <fp's profile> args…` as a child process (on a
/// blocking thread, so the relays of the test keep running).
pub async fn run(fp: &FocalPoint, bins: &Bins, args: &[&str]) -> Result<Output> {
    let mut cmd = fp.cli(bins);
    cmd.args(args);
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

/// Like [`run`], requiring exit 0; returns stdout.
pub async fn ok(fp: &FocalPoint, bins: &Bins, args: &[&str]) -> Result<String> {
    let out = run(fp, bins, args).await?;
    ensure!(out.status.success(), "focal {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// Like [`run`], requiring a non-zero exit; returns stderr.
pub async fn refused(fp: &FocalPoint, bins: &Bins, args: &[&str]) -> Result<String> {
    let out = run(fp, bins, args).await?;
    ensure!(!out.status.success(), "focal {args:?} succeeded");
    Ok(String::from_utf8(out.stderr)?)
}

/// Parses JSON lines (blank lines skipped).
pub fn json_lines(s: &str) -> Result<Vec<Value>> {
    s.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(serde_json::from_str(l)?)).collect()
}
