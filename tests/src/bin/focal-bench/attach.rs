//! Section `attach`: one large attachment (1 GiB; 256 MiB with `--quick`)
//! CARIN -> GFP hub -> ARINSA through the real `focal` client path
//! (`focal_tests::transfer`, as the `large` test does): `focal send` and
//! `focal read` are child processes (this binary acting as `focal`), the
//! three relays too (this binary acting as `focal-relay`). Figures: MB/s of
//! the send (hash + seal + upload until ACCEPTED), of the relaying (ACCEPTED
//! at CARIN until the message is in ARINSA's mailbox: two federation hops,
//! each stored and fsynced before it is forwarded), end to end (send start
//! to mailbox), and of the read (download + open + hash check); peak RSS
//! (`VmHWM`) of each process.

use std::time::Duration;

use anyhow::Result;
use focal_tests::Bins;
use focal_tests::transfer;

use crate::table::Row;

/// Goal of issue 9 for the peak RSS of each process (KiB).
const RSS_GOAL_KIB: u64 = 64 << 10;
/// Goal of issue 9 for attachments through three hops (MB/s).
const MBPS_GOAL: f64 = 200.0;

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64().max(1e-9)
}

pub(crate) async fn run(size: u64) -> Result<Vec<Row>> {
    let exe = std::env::current_exe()?;
    let bins = Bins { relay: exe.clone(), focal: exe };
    eprintln!("attach: starting three relays (processes) ...");
    let fed = transfer::federation(&bins).await?;
    eprintln!("attach: {} MiB through carin -> gfp -> arinsa ...", size >> 20);
    let sent = transfer::send_across(&fed, &bins, size, Duration::from_secs(3600)).await?;
    eprintln!("attach: sent in {:.1?}, in arinsa's mailbox after {:.1?}", sent.send_time, sent.transfer_time);
    let za = fed.fp(transfer::RECIPIENT);
    let out_dir = fed.dir().join("received");
    let (_, read_kib, read_time) =
        transfer::read_back(&bins, &za.profile_path, &za.dir, &sent, &out_dir).await?;
    eprintln!("attach: read in {read_time:.1?}");
    let relays = transfer::relays_peak_kib(&fed)?;
    fed.shutdown().await?;

    let relaying = sent.transfer_time.saturating_sub(sent.send_time);
    let e2e = mbps(size, sent.transfer_time);
    let mib = size >> 20;
    let full = size >= 1 << 30;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = vec![
        Row::one(
            &format!("{mib} MiB: focal send (hash + seal + upload until ACCEPTED at carin)"),
            format!("{:.0} MB/s ({:.1} s)", mbps(size, sent.send_time), sent.send_time.as_secs_f64()),
        ),
        Row::one(
            &format!("{mib} MiB: relaying, ACCEPTED at carin -> in arinsa's mailbox (2 federation hops)"),
            format!("{:.0} MB/s ({:.1} s)", mbps(size, relaying), relaying.as_secs_f64()),
        ),
        Row::one(
            &format!("{mib} MiB: end to end, focal send start -> in arinsa's mailbox (3 hops)"),
            format!("{e2e:.0} MB/s ({:.1} s)", sent.transfer_time.as_secs_f64()),
        )
        .goal(full, e2e >= MBPS_GOAL, ">= 200 MB/s through 3 hops"),
        Row::one(
            &format!(
                "{mib} MiB: CPU time of focal send and the three relays over the end to end time, \
                 and the rate it allows on this machine's {cores} cores if they were all kept busy"
            ),
            sent.path_cpu.map_or("?".into(), |cpu| {
                let bound = mbps(size, cpu / u32::try_from(cores).unwrap_or(1));
                format!("{:.1} s CPU per {mib} MiB; at most {bound:.0} MB/s", cpu.as_secs_f64())
            }),
        ),
        Row::one(
            &format!("{mib} MiB: focal read (download + open + SHA-256 check)"),
            format!("{:.0} MB/s ({:.1} s)", mbps(size, read_time), read_time.as_secs_f64()),
        ),
    ];
    let mut procs = vec![("focal send".to_string(), sent.send_kib)];
    procs.extend(relays.into_iter().map(|(n, k)| (format!("{n} relay"), k)));
    procs.push(("focal read".to_string(), read_kib));
    for (name, kib) in procs {
        rows.push(
            Row::one(&format!("{mib} MiB: peak RSS of {name}"), format!("{:.1} MiB", kib as f64 / 1024.0))
                .goal(full, kib <= RSS_GOAL_KIB, "<= 64 MiB per process"),
        );
    }
    Ok(rows)
}
