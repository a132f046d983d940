//! Large attachments across CARIN -> GFP -> ARINSA with real processes:
//! the three relays are child processes and the sender and the recipient
//! are `focal` child processes, so each process's peak resident set
//! (`VmHWM`) is its own. Shared by the `large` integration test (which adds
//! a connection cut during the download) and the `attach` section of
//! `focal-bench` (which measures MB/s).
//!
//! The attachment is generated (seeded xorshift64*, [`write_seeded`]),
//! never committed. A `focal` child writes its own peak RSS to the file named
//! by `FOCAL_TEST_PEAK_RSS_FILE` on exit ([`write_own_peak_rss`], called by
//! `harness-focal` and by `focal-bench` acting as `focal`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use focal_client::InboxItem;
use futures::StreamExt;

use crate::{Bins, Federation};

/// The sender (at CARIN) and the recipient (at ARINSA).
pub const SENDER: &str = "nl-fiod@carin";
/// The recipient.
pub const RECIPIENT: &str = "za-afu@arinsa";
/// The attachment's file name.
pub const FILE_NAME: &str = "ledger.bin";

/// The environment variable naming where a `focal` child writes its peak RSS.
pub const PEAK_RSS_ENV: &str = "FOCAL_TEST_PEAK_RSS_FILE";

/// Writes this process's `VmHWM` (KiB) to the file named by
/// [`PEAK_RSS_ENV`], if set. Call it at the end of `main`.
pub fn write_own_peak_rss() {
    if let Some(path) = std::env::var_os(PEAK_RSS_ENV) {
        let hwm = crate::relay::proc_status_kib(std::process::id(), "VmHWM")
            .map(|k| k.to_string())
            .unwrap_or_default();
        let _ = std::fs::write(path, hwm);
    }
}

/// The three-relay federation of the transfer, relays as child processes of
/// `bins.relay`.
pub async fn federation(bins: &Bins) -> Result<Federation> {
    Federation::builder()
        .hub("gfp")
        .network("carin")
        .network("arinsa")
        .focal_point(SENDER)
        .focal_point(RECIPIENT)
        .processes(bins)
        .start()
        .await
}

/// What [`send_across`] measured.
#[derive(Debug)]
pub struct Sent {
    /// Attachment size (bytes).
    pub size: u64,
    /// SHA-256 of the attachment.
    pub sha256: [u8; 32],
    /// Message id (hex).
    pub msg_id: String,
    /// Peak RSS of `focal send` (KiB).
    pub send_kib: u64,
    /// `focal send` run time: attachment hashing, sealing, upload until ACCEPTED.
    pub send_time: Duration,
    /// From the start of `focal send` until the message is in the recipient's
    /// mailbox (its live inbox stream shows it).
    pub transfer_time: Duration,
    /// CPU time (user + system) spent over `transfer_time` by `focal send`
    /// and the three relays together (`None`: not readable).
    pub path_cpu: Option<Duration>,
}

/// Generates a `size`-byte attachment, sends it from [`SENDER`] with
/// `focal send` and waits (up to `deadline`) until [`RECIPIENT`]'s live inbox
/// shows the message.
pub async fn send_across(fed: &Federation, bins: &Bins, size: u64, deadline: Duration) -> Result<Sent> {
    let nl = fed.fp(SENDER);
    let big = fed.dir().join(FILE_NAME);
    write_seeded(&big, size, 2026)?;
    let sha256 = file_sha256(&big)?;
    let za_client = fed.client(RECIPIENT).await?;
    let mut inbox = za_client.inbox(true).await?;

    // Wait until the directory of arinsa answers through the federation.
    tokio::time::timeout(Duration::from_secs(120), async {
        while !lookup_ok(focal(bins, &nl.profile_path, &nl.dir, &["directory", "lookup", RECIPIENT])).await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .context("arinsa not reachable from carin")?;

    let relays: Vec<u32> = ["carin", "gfp", "arinsa"].iter().filter_map(|n| fed.relay(n).pid()).collect();
    let path_cpu = || -> Option<Duration> {
        let relays = relays.iter().map(|p| crate::relay::proc_cpu_time(*p)).sum::<Option<Duration>>()?;
        Some(relays + crate::relay::waited_children_cpu_time()?)
    };
    let cpu_before = path_cpu();
    let started = Instant::now();
    let big_s = big.to_str().context("path")?;
    let send = ["send", "--to", RECIPIENT, "--subject", "ledger", "--body", "see file", "--attach", big_s];
    let (out, send_kib) = measured(bins, &nl.profile_path, &nl.dir, "send", &send).await?;
    let send_time = started.elapsed();
    let accepted: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let msg_id = accepted["msg_id"].as_str().context("msg_id")?.to_owned();

    let arrived = tokio::time::timeout(deadline, async {
        while let Some(item) = inbox.next().await {
            if let InboxItem::Message(m) = item?
                && hex::encode(m.msg_id) == msg_id
            {
                return Ok::<_, anyhow::Error>(());
            }
        }
        anyhow::bail!("inbox stream ended")
    })
    .await;
    arrived.context("the message did not reach arinsa")??;
    let transfer_time = started.elapsed();
    let path_cpu = path_cpu().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    // The attachment itself is no longer needed: free the disk.
    std::fs::remove_file(&big)?;
    Ok(Sent { size, sha256, msg_id, send_kib, send_time, transfer_time, path_cpu })
}

/// `focal read <msg_id> --out <out_dir>` as `profile` (a child process);
/// checks the saved attachment's SHA-256 against `sent` and removes it.
/// Returns the first JSON line `read` printed, its peak RSS (KiB) and its
/// run time.
pub async fn read_back(
    bins: &Bins,
    profile: &Path,
    dir: &Path,
    sent: &Sent,
    out_dir: &Path,
) -> Result<(serde_json::Value, u64, Duration)> {
    let started = Instant::now();
    let read = ["read", sent.msg_id.as_str(), "--out", out_dir.to_str().context("path")?];
    let (out, kib) = measured(bins, profile, dir, "read", &read).await?;
    let took = started.elapsed();
    let opened: serde_json::Value = serde_json::from_slice(
        out.stdout.split(|b| *b == b'\n').find(|l| !l.is_empty()).context("read printed nothing")?,
    )?;
    let saved = out_dir.join(FILE_NAME);
    ensure!(file_sha256(&saved)? == sent.sha256, "the saved attachment differs");
    std::fs::remove_file(&saved)?;
    Ok((opened, kib, took))
}

/// Peak RSS (KiB) of the three relays, in path order.
pub fn relays_peak_kib(fed: &Federation) -> Result<Vec<(String, u64)>> {
    ["carin", "gfp", "arinsa"]
        .iter()
        .map(|net| Ok((net.to_string(), fed.relay(net).peak_rss_kib().context("relay VmHWM")?)))
        .collect()
}

/// `focal --profile <profile> --json <args>` as a child process.
pub fn focal(bins: &Bins, profile: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(&bins.focal);
    cmd.arg("--profile").arg(profile).arg("--json").args(args).current_dir(dir);
    cmd.env_remove("FOCAL_PROFILE").env("NO_COLOR", "1");
    cmd
}

async fn lookup_ok(mut cmd: Command) -> bool {
    tokio::task::spawn_blocking(move || cmd.output()).await.is_ok_and(|o| o.is_ok_and(|o| o.status.success()))
}

/// Runs `focal` to completion; returns its output and peak RSS (KiB).
pub async fn measured(
    bins: &Bins,
    profile: &Path,
    dir: &Path,
    tag: &str,
    args: &[&str],
) -> Result<(Output, u64)> {
    let peak_file: PathBuf = dir.join(format!("peak-{tag}"));
    let mut cmd = focal(bins, profile, dir, args);
    cmd.env(PEAK_RSS_ENV, &peak_file);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    ensure!(
        out.status.success(),
        "focal {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = std::fs::read_to_string(&peak_file)?.trim().parse().context("peak RSS file")?;
    Ok((out, peak))
}

/// Writes `len` seeded pseudo-random bytes (xorshift64*) to `path`, 1 MiB at a time.
pub fn write_seeded(path: &Path, len: u64, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            word.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()[..word.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().try_into()?)
}
