//! Crash consistency of the audit log: the relay runs as a child process
//! and is SIGKILLed at random points of a stream of sends and acks, then
//! restarted on the same data. After every restart an auditor whose
//! directory persists across cycles runs `focal audit fetch` and `focal
//! audit verify` (so each new checkpoint is proved consistent with the one
//! accepted before), and the exported log must hold an ACCEPTED record for
//! every message in the mailbox, the record at the leaf index each ACCEPTED
//! response named, and an ACKED record for every acknowledgement the relay
//! confirmed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use focal_client::RetryPolicy;
use focal_proto::Role;
use focal_tests::Federation;
use rand::Rng;

use crate::{PROMPT, draft, export, fetch_and_verify, log_key, quiet};

/// Kill/restart cycles (at least 20; `FOCAL_AUDIT_CRASH_CYCLES` for more).
fn cycles() -> usize {
    std::env::var("FOCAL_AUDIT_CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20).max(20)
}

enum Event {
    /// ACCEPTED: msg id and the leaf index of its accepted record.
    Accepted(String, u64),
    /// The relay confirmed an acknowledgement.
    Acked(String),
    /// A send or ack was cut by the kill (its fate unknown to the client).
    Cut,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_verifies_and_matches_the_queues_after_every_sigkill() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .limits("carin", |l| l.sends_per_minute = 1_000_000)
        .processes(&bins)
        .start()
        .await?;
    let auditor = fed.add_member("audit@carin", Role::Auditor)?.clone();
    let key = log_key(&auditor).await?;
    let dir = fed.dir().join("audit");
    let mut size = fetch_and_verify(&auditor, &bins, &dir, &key).await?;
    let mut rng = rand::rng();
    let (mut accepted, mut acked, mut cut) = (BTreeMap::new(), BTreeSet::new(), 0usize);
    let mut verify_times = Vec::new();
    let started = Instant::now();

    for cycle in 0..cycles() {
        let mut sender = fed.client("nl-fiod@carin").await?;
        sender.set_retry_policy(RetryPolicy { retries: 0, ..Default::default() });
        let mut receiver = fed.client("be-ocsc@carin").await?;
        receiver.set_retry_policy(RetryPolicy { retries: 0, ..Default::default() });
        let (sender, receiver) = (Arc::new(sender), Arc::new(receiver));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let mut tasks = Vec::new();
        for t in 0..2 {
            let (sender, stop, tx) = (sender.clone(), stop.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let d = draft(&["be-ocsc@carin"], "crash", &format!("cycle {cycle} sender {t} #{i}"));
                    match sender.send(&d, quiet()).await {
                        Ok(a) => {
                            let _ = tx.send(Event::Accepted(hex::encode(a.msg_id), a.audit_leaf_index));
                        }
                        Err(_) => {
                            let _ = tx.send(Event::Cut);
                            break;
                        }
                    }
                }
            }));
        }
        {
            let (receiver, stop, tx) = (receiver.clone(), stop.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(listed) = receiver.list_inbox().await else { break };
                    for m in listed.iter().take(3) {
                        match receiver.ack(&m.reference(), &m.payload_sha256).await {
                            Ok(_) => {
                                let _ = tx.send(Event::Acked(hex::encode(m.msg_id)));
                            }
                            Err(_) => {
                                let _ = tx.send(Event::Cut);
                                return;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        drop(tx);

        // Kill after the k-th ACCEPTED of this cycle, or at a random moment.
        let mut events = Vec::new();
        if cycle % 2 == 0 {
            let k = rng.random_range(1..=6);
            let mut seen = 0;
            while seen < k {
                let e = tokio::time::timeout(PROMPT, rx.recv()).await?.context("traffic stopped early")?;
                seen += usize::from(matches!(e, Event::Accepted(..)));
                events.push(e);
            }
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        }
        fed.relay_mut("carin").kill().await?;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(PROMPT, t).await??;
        }
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        fed.relay_mut("carin").start().await?;
        for e in events {
            match e {
                Event::Accepted(id, index) => {
                    ensure!(accepted.insert(id.clone(), index).is_none(), "msg {id} accepted twice");
                }
                Event::Acked(id) => {
                    acked.insert(id);
                }
                Event::Cut => cut += 1,
            }
        }

        // The auditor's directory persists: the new checkpoint must extend the last one.
        let t = Instant::now();
        let new_size = fetch_and_verify(&auditor, &bins, &dir, &key)
            .await
            .with_context(|| format!("cycle {cycle}: fetch + verify after restart"))?;
        verify_times.push(t.elapsed());
        ensure!(new_size >= size, "cycle {cycle}: log shrank from {size} to {new_size}");
        size = new_size;

        let records = export(&auditor, &bins, &dir).await?;
        let by_index: BTreeMap<u64, (&str, &str)> = records
            .iter()
            .map(|r| {
                (
                    r["index"].as_u64().unwrap_or(u64::MAX),
                    (r["kind"].as_str().unwrap_or(""), r["msg_id"].as_str().unwrap_or("")),
                )
            })
            .collect();
        let with_kind = |kind: &str| -> BTreeSet<&str> {
            by_index.values().filter(|(k, _)| *k == kind).map(|(_, id)| *id).collect()
        };
        let (rec_accepted, rec_acked) = (with_kind("accepted"), with_kind("acked"));
        let inbox = fed.client("be-ocsc@carin").await?.list_inbox().await?;
        for m in &inbox {
            let id = hex::encode(m.msg_id);
            ensure!(
                rec_accepted.contains(id.as_str()),
                "cycle {cycle}: message {id} is queued but has no ACCEPTED record"
            );
        }
        for (id, index) in &accepted {
            ensure!(
                by_index.get(index) == Some(&("accepted", id.as_str())),
                "cycle {cycle}: ACCEPTED of {id} named leaf {index}, which holds {:?}",
                by_index.get(index)
            );
        }
        for id in &acked {
            ensure!(rec_acked.contains(id.as_str()), "cycle {cycle}: acknowledged {id} has no ACKED record");
        }
    }
    let total: Duration = verify_times.iter().sum();
    eprintln!(
        "audit crash: {} SIGKILL cycles in {:?}; {} ACCEPTED and {} acks confirmed before kills, {cut} requests cut by them; \
         final log {size} entries; \
         fetch+verify after restart: mean {:?}, max {:?}",
        cycles(),
        started.elapsed(),
        accepted.len(),
        acked.len(),
        total / verify_times.len() as u32,
        verify_times.iter().max().copied().unwrap_or_default()
    );
    ensure!(accepted.len() >= cycles() / 2, "too few sends were accepted to prove anything");
    ensure!(fed.relay("carin").starts() as usize == cycles() + 1, "one child process per cycle");
    Ok(())
}
