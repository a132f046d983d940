//! A frozen hub: the GFP relay SIGSTOPped for `FOCAL_FAULT_PAUSE_SECS`
//! (default 10) while CARIN streams messages to ARINSA through it, then
//! SIGCONTed: every message arrives exactly once, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, ensure};

use super::*;

/// Messages in the stream.
const N: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_stopped_mid_stream_then_continued_loses_and_duplicates_nothing() -> Result<()> {
    let pause_for = Duration::from_secs(env_or("FOCAL_FAULT_PAUSE_SECS", 10));
    let mut fed = star().start().await?;
    let (key, mut ledger) = warm(&fed).await?;
    let a = fed.client(SENDER).await?;
    let fp = fed.fp(SENDER).clone();
    let accepted = Arc::new(AtomicUsize::new(0));
    let stream = {
        let accepted = accepted.clone();
        tokio::spawn(async move { send_all(&a, &fp, &addr(RECIPIENT), key, N, Some(&accepted)).await })
    };
    // Mid-stream: once a third has been ACCEPTED at carin.
    let deadline = Instant::now() + PROMPT;
    while accepted.load(Ordering::Relaxed) < N / 3 {
        ensure!(Instant::now() < deadline, "the stream did not reach {} sends within {PROMPT:?}", N / 3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fed.relay_mut("gfp").pause()?;
    let paused_at = accepted.load(Ordering::Relaxed);
    // The condition under test is elapsed time; halfway, the CPU clock of
    // the stopped process must stand still.
    tokio::time::sleep(pause_for / 2).await;
    let gfp_cpu = fed.relay("gfp").cpu_time().context("gfp CPU time")?;
    tokio::time::sleep(pause_for / 2).await;
    let frozen = fed.relay("gfp").cpu_time().context("gfp CPU time")? == gfp_cpu;
    fed.relay_mut("gfp").resume()?;
    let resumed = Instant::now();
    ledger.extend(&addr(SENDER), tokio::time::timeout(PROMPT * 2, stream).await???);
    let (report, _) = wait_delivered(fed.fp(RECIPIENT), &ledger, PROMPT * 2).await?;
    let after = resumed.elapsed();
    eprintln!(
        "paused hub: gfp SIGSTOPped {pause_for:?} after {paused_at} of {N} sends; all {} delivered exactly once \
         in order {:.1?} after SIGCONT",
        report.accepted, after
    );
    ensure!(frozen, "gfp used CPU while SIGSTOPped: the pause did not take");
    fed.shutdown().await
}
