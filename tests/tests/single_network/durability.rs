//! Durability: the relay runs as a child process and is SIGKILLed at random
//! points (right after an ACCEPTED, or at a random moment of a stream of
//! sends), then restarted on the same data. Every message the relay
//! acknowledged must be found after the restart, exactly once, and a
//! message whose fate was unknown at the kill is re-sent with the same msg
//! id and ends up stored exactly once. Also: a fetch interrupted by a relay
//! crash resumes from the last byte received.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use focal_client::progress::Progress;
use focal_client::{ReadOptions, RetryPolicy, SealedMessage};
use focal_tests::Federation;
use focal_tests::transfer::{file_sha256, write_seeded};
use rand::Rng;
use tonic::Code;

use crate::{PROMPT, addr, draft, quiet};

/// Kill/restart cycles (at least 20; `FOCAL_DURABILITY_CYCLES` for more).
fn cycles() -> usize {
    std::env::var("FOCAL_DURABILITY_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20).max(20)
}

enum Outcome {
    Accepted(String),
    Unknown(Box<SealedMessage>),
}

const SENDERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_sigkill_at_random_points() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .limits("carin", |l| l.sends_per_minute = 1_000_000)
        .processes(&bins)
        .start()
        .await?;
    let mut rng = rand::rng();
    // Messages stored and not yet acknowledged; messages acknowledged.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let (mut n_accepted, mut n_resent, mut n_already) = (0usize, 0usize, 0usize);

    for cycle in 0..cycles() {
        let mut sender = fed.client("nl-fiod@carin").await?;
        sender.set_retry_policy(RetryPolicy { retries: 0, ..Default::default() });
        let sender = Arc::new(sender);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
        let mut tasks = Vec::new();
        for t in 0..SENDERS {
            let (sender, stop, tx) = (sender.clone(), stop.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let d =
                        draft(&["be-ocsc@carin"], "durability", &format!("cycle {cycle} sender {t} #{i}"));
                    let Ok(sealed) = sender.seal(&d, quiet()).await else { break };
                    match sender.send_sealed(&sealed, quiet()).await {
                        Ok(a) => {
                            let _ = tx.send(Outcome::Accepted(hex::encode(a.msg_id)));
                        }
                        Err(_) => {
                            let _ = tx.send(Outcome::Unknown(Box::new(sealed)));
                            break;
                        }
                    }
                }
            }));
        }
        drop(tx);

        // Kill right after the k-th ACCEPTED of this cycle, or at a random moment.
        let mut outcomes = Vec::new();
        if cycle % 2 == 0 {
            let k = rng.random_range(1..=8);
            let mut seen = 0;
            while seen < k {
                let o = tokio::time::timeout(PROMPT, rx.recv()).await?.context("senders stopped early")?;
                if matches!(o, Outcome::Accepted(_)) {
                    seen += 1;
                }
                outcomes.push(o);
            }
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
        }
        fed.relay_mut("carin").kill().await?;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(PROMPT, t).await??;
        }
        while let Some(o) = rx.recv().await {
            outcomes.push(o);
        }
        fed.relay_mut("carin").start().await?;

        // Re-send what the relay may or may not have stored.
        let resender = fed.client("nl-fiod@carin").await?;
        for o in outcomes {
            match o {
                Outcome::Accepted(id) => {
                    n_accepted += 1;
                    ensure!(expected.insert(id.clone()), "msg id {id} accepted twice");
                }
                Outcome::Unknown(sealed) => {
                    let id = hex::encode(sealed.msg_id);
                    match resender.send_sealed(&sealed, quiet()).await {
                        Ok(_) => n_resent += 1,
                        Err(e) if e.status_code() == Some(Code::AlreadyExists) => n_already += 1,
                        Err(e) => bail!("cycle {cycle}: re-send of {id} failed: {e}"),
                    }
                    ensure!(expected.insert(id.clone()), "msg id {id} seen twice");
                }
            }
        }

        // The recipient sees every stored message exactly once, and nothing acknowledged.
        let b = fed.client("be-ocsc@carin").await?;
        let listed = b.list_inbox().await?;
        let ids: Vec<String> = listed.iter().map(|m| hex::encode(m.msg_id)).collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        ensure!(unique.len() == ids.len(), "cycle {cycle}: a message is listed twice: {ids:?}");
        let lost: Vec<_> = expected.difference(&unique).collect();
        ensure!(lost.is_empty(), "cycle {cycle}: accepted messages lost after SIGKILL: {lost:?}");
        let extra: Vec<_> = unique.difference(&expected).collect();
        ensure!(extra.is_empty(), "cycle {cycle}: unexpected (acked or unknown) messages: {extra:?}");

        // Open one at random (the payload survived intact), ack about half.
        if let Some(m) = listed.get(rng.random_range(0..listed.len().max(1))) {
            let opened = b.read(&m.reference(), &ReadOptions::default(), quiet()).await?;
            ensure!(opened.content.subject == "durability");
        }
        for m in &listed {
            if rng.random_bool(0.5) {
                b.ack(&m.reference(), &m.payload_sha256).await?;
                let id = hex::encode(m.msg_id);
                expected.remove(&id);
                acked.insert(id);
            }
        }
        let after: BTreeSet<String> = b.list_inbox().await?.iter().map(|m| hex::encode(m.msg_id)).collect();
        ensure!(after == expected, "cycle {cycle}: mailbox after acks differs");
    }
    eprintln!(
        "durability: {} kills, {n_accepted} ACCEPTED before kills, {n_resent} re-sent after, {n_already} already stored; \
         lost 0, duplicated 0; {} acked, {} waiting",
        cycles(),
        acked.len(),
        expected.len()
    );
    ensure!(n_accepted >= cycles() / 2, "too few sends were accepted to prove anything");
    Ok(())
}

/// Kills the relay once `done` passes `at` during a fetch, and blocks the
/// reader until the kill happened, so the crash lands mid-transfer.
struct KillDuringFetch {
    at: u64,
    fired: AtomicBool,
    signal: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    killed: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    total_advanced: AtomicU64,
}

impl Progress for KillDuringFetch {
    fn start(&self, _: &'static str, _: u64) {}
    fn advance(&self, bytes: u64, done: u64) {
        self.total_advanced.fetch_add(bytes, Ordering::Relaxed);
        if done >= self.at && !self.fired.swap(true, Ordering::Relaxed) {
            if let Some(tx) = self.signal.lock().unwrap().take() {
                let _ = tx.send(());
            }
            if let Some(rx) = self.killed.lock().unwrap().take() {
                let _ = rx.recv_timeout(PROMPT);
            }
        }
    }
    fn finish(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_resumes_after_a_relay_crash() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .processes(&bins)
        .start()
        .await?;
    let a = fed.client("nl-fiod@carin").await?;
    let file = fed.dir().join("evidence.bin");
    write_seeded(&file, 24 << 20, 42)?;
    let mut d = draft(&["be-ocsc@carin"], "big evidence", "see attachment");
    d.attachments = vec![file.clone()];
    let sent = a.send(&d, quiet()).await?;

    let mut b = fed.client("be-ocsc@carin").await?;
    b.set_retry_policy(RetryPolicy {
        retries: 40,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
    });
    let (sig_tx, sig_rx) = tokio::sync::oneshot::channel();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel();
    let progress = Arc::new(KillDuringFetch {
        at: 8 << 20,
        fired: AtomicBool::new(false),
        signal: Mutex::new(Some(sig_tx)),
        killed: Mutex::new(Some(killed_rx)),
        total_advanced: AtomicU64::new(0),
    });
    let out = fed.dir().join("out");
    let msg = focal_client::MessageRef { msg_id: sent.msg_id, sender: addr("nl-fiod@carin") };
    let p2: Arc<dyn Progress> = progress.clone();
    let reader =
        tokio::spawn(
            async move { b.read(&msg, &ReadOptions { out_dir: Some(out), overwrite: false }, p2).await },
        );
    tokio::time::timeout(PROMPT, sig_rx).await??;
    fed.relay_mut("carin").kill().await?;
    killed_tx.send(())?;
    fed.relay_mut("carin").start().await?;
    let opened = tokio::time::timeout(PROMPT * 2, reader).await???;
    let saved = opened.attachments[0].path.clone().context("saved")?;
    assert_eq!(file_sha256(&saved)?, file_sha256(&file)?);
    assert_eq!(fed.relay("carin").starts(), 2);
    assert!(opened.resumed >= 1, "the fetch must have been interrupted and resumed");
    // Resumed from the offset reached: no byte was downloaded twice.
    assert_eq!(progress.total_advanced.load(Ordering::Relaxed), opened.info.payload_size);
    Ok(())
}
