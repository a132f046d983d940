//! A lossy, slow link: 20 % of datagrams dropped (seeded) and 50 ms added
//! to each one on both directions of the CARIN-GFP link while
//! `FOCAL_FAULT_LOSSY_MESSAGES` (default 200) messages go CARIN -> GFP ->
//! ARINSA: every one arrives exactly once, in the order sent.

use anyhow::{Result, ensure};
use focal_tests::fault::Impairment;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_loss_and_50ms_delay_lose_duplicate_and_reorder_nothing() -> Result<()> {
    let n = env_or("FOCAL_FAULT_LOSSY_MESSAGES", 200usize);
    let seed = env_or("FOCAL_FAULT_SEED", 8u64);
    let fed = star().start().await?;
    let (key, mut ledger) = warm(&fed).await?;
    let link = fed.link_proxy("carin", "gfp");
    let a = fed.client(SENDER).await?;

    link.set(Impairment::drop(0.20, seed).with_delay_ms(50));
    let before = link.stats();
    let started = Instant::now();
    ledger.extend(&addr(SENDER), send_all(&a, fed.fp(SENDER), &addr(RECIPIENT), key, n, None).await?);
    // Generous failure bound: one transfer at a time per hop, 100 ms RTT,
    // and loss recovery on a loaded debug build.
    let (report, _) =
        wait_delivered(fed.fp(RECIPIENT), &ledger, PROMPT + Duration::from_secs(n as u64)).await?;
    let stats = link.stats();
    let (fwd, dropped) = (stats.forwarded - before.forwarded, stats.dropped - before.dropped);
    eprintln!(
        "lossy link (seed {seed}): {n} messages carin -> gfp -> arinsa delivered exactly once in order in {:.1?}; \
         proxies forwarded {fwd} datagrams and dropped {dropped} ({:.1} %)",
        started.elapsed(),
        100.0 * dropped as f64 / (fwd + dropped).max(1) as f64
    );
    ensure!(report.accepted == n + 1, "{} ACCEPTED, expected {}", report.accepted, n + 1);
    ensure!(dropped > 0, "the proxies dropped nothing: the lossy link was not exercised");
    link.set(Impairment::PASS);
    fed.shutdown().await
}
