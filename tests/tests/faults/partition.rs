//! Partition: the CARIN-GFP link cut both ways (both relays' peer
//! addresses point at the harness's proxies) for `FOCAL_FAULT_CUT_SECS`
//! (default 60, the minute). Messages sent from CARIN to ARINSA
//! meanwhile are ACCEPTED and queued, none reaches ARINSA while cut, and
//! neither relay spins: each uses under 15 % of the cut's wall time in CPU.
//! After the heal all arrive exactly once, in order. The measured CPU
//! shares and the time to drain are printed, not asserted.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use focal_tests::fault::Impairment;

use super::*;

/// Messages sent during the cut.
const DURING_CUT: usize = 50;
/// Largest CPU share a relay may use while its link is cut (a failure
/// bound against busy loops, not a performance figure).
const MAX_CPU_SHARE: f64 = 0.15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_link_queues_accepted_messages_without_spinning_then_delivers_each_once_in_order() -> Result<()> {
    let cut_for = Duration::from_secs(env_or("FOCAL_FAULT_CUT_SECS", 60));
    let fed = star().start().await?;
    let (key, mut ledger) = warm(&fed).await?;
    let link = fed.link_proxy("carin", "gfp");
    let a = fed.client(SENDER).await?;
    let b = fed.client(RECIPIENT).await?;

    link.set(Impairment::cut());
    let cut_at = Instant::now();
    let dropped_before = link.stats().dropped;
    let sent = send_all(&a, fed.fp(SENDER), &addr(RECIPIENT), key, DURING_CUT, None).await?;
    ledger.extend(&addr(SENDER), sent);

    // Idle with the link cut; the condition under test is elapsed time.
    let cpu = |net: &str| fed.relay(net).cpu_time().expect("child relay CPU time");
    let (carin0, gfp0, idle_from) = (cpu("carin"), cpu("gfp"), Instant::now());
    tokio::time::sleep(cut_for.saturating_sub(cut_at.elapsed())).await;
    let idle = idle_from.elapsed();
    let (carin_cpu, gfp_cpu) = (cpu("carin") - carin0, cpu("gfp") - gfp0);

    let early = ledger.missing(mailbox(&b).await?.iter().map(|(s, id)| (s, *id)));
    let dropped = link.stats().dropped - dropped_before;
    link.set(Impairment::PASS);
    let cut_len = cut_at.elapsed();
    let (report, drain) = wait_delivered(fed.fp(RECIPIENT), &ledger, PROMPT * 3).await?;

    let share = |d: Duration| d.as_secs_f64() / idle.as_secs_f64();
    eprintln!(
        "partition: link cut {:.1?}; {DURING_CUT} messages ACCEPTED at carin during the cut; \
         {dropped} datagrams dropped by the proxies; CPU while cut over {:.1?}: carin {carin_cpu:?} ({:.2} %), \
         gfp {gfp_cpu:?} ({:.2} %); all delivered {:.1?} after the heal ({} ACCEPTED, exactly once, in order)",
        cut_len,
        idle,
        100.0 * share(carin_cpu),
        100.0 * share(gfp_cpu),
        drain,
        report.accepted,
    );
    ensure!(early == DURING_CUT, "{} of the {DURING_CUT} messages crossed a cut link", DURING_CUT - early);
    ensure!(dropped > 0, "the proxies dropped nothing: the relays did not talk over the cut link");
    for (net, used) in [("carin", carin_cpu), ("gfp", gfp_cpu)] {
        ensure!(
            share(used) < MAX_CPU_SHARE,
            "relay {net} used {used:?} of CPU in {idle:?} with its link cut: a busy loop?"
        );
    }
    fed.shutdown().await
}
