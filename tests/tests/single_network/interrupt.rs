//! Ctrl-C during `focal read --out`: the read is stopped at its next await,
//! so its staging directory of decrypted attachment data is removed before
//! the process exits (130), and the output directory is left empty.
//! The download runs through a proxy that stalls after a few MiB, so the
//! signal arrives while a partial attachment is on disk.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use focal_client::profile::ProfileFile;
use focal_tests::Federation;
use focal_tests::fault::{AfterBytes, TcpProxy};
use focal_tests::transfer::write_seeded;

/// Bytes of regular files under `dir`'s `.focal-partial-*` directories, or
/// `None` if there is no such directory.
fn staged_bytes(dir: &Path) -> Option<u64> {
    let mut found = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".focal-partial-") && entry.path().is_dir() {
            let bytes = std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum::<u64>();
            found = Some(found.unwrap_or(0) + bytes);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_read_removes_the_decrypted_partial_attachment() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let (a, b) = (fed.fp("nl-fiod@carin"), fed.fp("be-ocsc@carin"));
    b.enrol().await?;
    let file = fed.dir().join("ledger.bin");
    write_seeded(&file, 16 << 20, 3)?;
    let mut send = a.cli(&bins);
    send.args(["--json", "send", "--to", "be-ocsc@carin", "--subject", "ledger", "--body", "16 MiB"])
        .arg("--attach")
        .arg(&file);
    let out = tokio::task::spawn_blocking(move || send.output()).await??;
    ensure!(out.status.success(), "focal send: {}", String::from_utf8_lossy(&out.stderr));
    let accepted: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let msg_id = accepted["msg_id"].as_str().context("msg_id")?.to_owned();

    // The reader's relay connection stalls after 4 MiB.
    let proxy = TcpProxy::start(fed.relay("carin").grpc_addr(), AfterBytes::Stall(4 << 20)).await?;
    let mut profile: ProfileFile = toml::from_str(&std::fs::read_to_string(&b.profile_path)?)?;
    profile.relay = proxy.addr.to_string();
    let stalled_profile = b.profile_path.with_file_name("profile-stalled.toml");
    std::fs::write(&stalled_profile, profile.to_toml())?;

    let out_dir = fed.dir().join("received");
    let mut read = std::process::Command::new(&bins.focal);
    read.arg("--profile").arg(&stalled_profile).env_remove("FOCAL_PROFILE").env("NO_COLOR", "1");
    read.args(["read", &msg_id, "--out"]).arg(&out_dir);
    read.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = read.spawn()?;

    // Wait until decrypted data of the attachment is on disk, staged.
    let deadline = tokio::time::Instant::now() + crate::PROMPT;
    while staged_bytes(&out_dir).unwrap_or(0) == 0 {
        ensure!(tokio::time::Instant::now() < deadline, "the read staged no attachment data");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill").args(["-INT", &pid]).status()?;
    ensure!(kill.success(), "kill -INT {pid}");
    let out =
        tokio::time::timeout(crate::PROMPT, tokio::task::spawn_blocking(move || child.wait_with_output()))
            .await
            .context("focal read did not exit after SIGINT")???;

    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(130), "exit {:?}: {stderr}", out.status.code());
    ensure!(stderr.contains("interrupted (Ctrl-C or SIGTERM) before the command finished"), "{stderr}");
    ensure!(staged_bytes(&out_dir).is_none(), "a staging directory was left in {}", out_dir.display());
    let left: Vec<_> = std::fs::read_dir(&out_dir)?.flatten().map(|e| e.file_name()).collect();
    ensure!(left.is_empty(), "left in the output directory: {left:?}");
    Ok(())
}
