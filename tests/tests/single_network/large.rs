//! A 200 MiB message streamed end to end with flat memory: the relay is a
//! child process and both clients are `focal` child processes, so each
//! one's peak resident set (VmHWM) can be measured on its own. The payload
//! is generated on the fly into the test's temporary directory.
//!
//! Bound: peak RSS growth below 64 MiB for the relay (while it receives and
//! serves the message) and for each client process (over the peak of a
//! `focal` run that moves no payload), against a 200 MiB message.

use std::process::Output;

use anyhow::{Context, Result, ensure};
use focal_tests::transfer::{self, file_sha256, write_seeded};
use focal_tests::{Bins, Federation, FocalPoint};

const SIZE: u64 = 200 << 20;
const BOUND_KIB: u64 = 64 << 10;

/// Runs `focal <args>` for `fp` and returns its output and peak RSS (KiB).
async fn focal(fp: &FocalPoint, bins: &Bins, args: &[&str]) -> Result<(Output, u64)> {
    transfer::measured(bins, &fp.profile_path, &fp.dir, args[0], args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_mib_message_streams_with_flat_memory() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .processes(&bins)
        .start()
        .await?;
    let (a, b) = (fed.fp("nl-fiod@carin"), fed.fp("be-ocsc@carin"));
    let big = fed.dir().join("bank-records.bin");
    write_seeded(&big, SIZE, 7)?;

    // Baselines: a client run that moves no payload; the relay after start-up.
    let (_, client_base) = focal(a, &bins, &["inbox"]).await?;
    let relay = fed.relay("carin");
    let relay_base = relay.peak_rss_kib().context("relay VmHWM")?;

    let big_s = big.to_str().unwrap();
    let (out, send_peak) = focal(
        a,
        &bins,
        &["send", "--to", "be-ocsc@carin", "--subject", "records", "--body", "200 MiB", "--attach", big_s],
    )
    .await?;
    let accepted: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let msg_id = accepted["msg_id"].as_str().context("msg_id")?.to_owned();
    let relay_after_send = relay.peak_rss_kib().context("relay VmHWM")?;

    let out_dir = fed.dir().join("received");
    let (_, read_peak) = focal(b, &bins, &["read", &msg_id, "--out", out_dir.to_str().unwrap()]).await?;
    let relay_after_fetch = relay.peak_rss_kib().context("relay VmHWM")?;

    assert_eq!(file_sha256(&out_dir.join("bank-records.bin"))?, file_sha256(&big)?);
    eprintln!(
        "200 MiB: relay VmHWM {relay_base} -> {relay_after_send} (send) -> {relay_after_fetch} (fetch) KiB; \
         focal baseline {client_base} KiB, send peak {send_peak} KiB, read peak {read_peak} KiB"
    );
    ensure!(
        relay_after_fetch - relay_base < BOUND_KIB,
        "relay memory grew by {} KiB",
        relay_after_fetch - relay_base
    );
    ensure!(send_peak.saturating_sub(client_base) < BOUND_KIB, "focal send peak {send_peak} KiB");
    ensure!(read_peak.saturating_sub(client_base) < BOUND_KIB, "focal read peak {read_peak} KiB");
    Ok(())
}
