//! Section 1: Focal's federated path CARIN -> GFP hub -> ARINSA. Three relays
//! run as child processes (this binary re-executed as `focal-relay`), each
//! durable (ACCEPTED / peer ack only after the sled flush). Envelopes of a
//! 1 KiB body are sealed and signed before the clock starts, sent with the
//! `Send` RPC by N focal points at CARIN, and counted when they arrive on
//! the recipients' live inbox streams at ARINSA.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use focal_client::InboxItem;
use focal_proto::envelope::RecipientPublicKey;
use focal_proto::pb;
use focal_tests::raw::{CraftOptions, craft, send_envelope};
use focal_tests::{Bins, Federation};
use futures::StreamExt;

use crate::Params;
use crate::load::{self, Outcome, ProcFigures};

/// Focal's figures.
pub(crate) struct FocalResult {
    /// Saturation phase.
    pub saturation: Outcome,
    /// Offered-load phase.
    pub offered: Outcome,
    /// The sweep after it: (rate, outcome) per lower offered load.
    pub sweep: Vec<(u32, Outcome)>,
    /// Per relay: CPU in each phase, peak RSS.
    pub relays: Vec<ProcFigures>,
    /// Envelope size on the wire (payload bytes).
    pub payload_bytes: usize,
}

pub(crate) async fn run(p: &Params) -> Result<FocalResult> {
    let exe = std::env::current_exe()?;
    let bins = Bins { relay: exe.clone(), focal: exe };
    let mut b = Federation::builder().network("carin").network("arinsa").hub("gfp");
    for net in ["carin", "arinsa", "gfp"] {
        b = b.limits(net, |l| {
            l.sends_per_minute = 100_000_000;
            l.max_mailbox_messages = 10_000_000;
            l.inbox_live_buffer = 1 << 16;
        });
    }
    for i in 0..p.senders {
        b = b.focal_point(&format!("s{i}@carin")).focal_point(&format!("r{i}@arinsa"));
    }
    eprintln!("focal: starting three relays (processes) ...");
    let fed = b.processes(&bins).start().await.context("starting the federation")?;

    let mut senders = Vec::new();
    let mut recipients = Vec::new();
    for i in 0..p.senders {
        senders.push(fed.client(&format!("s{i}@carin")).await?);
        let r = fed.client(&format!("r{i}@arinsa")).await?;
        let key = RecipientPublicKey(r.lookup(r.address()).await?.x25519_public);
        recipients.push((r, key));
    }

    let total = p.warmup_start() + p.senders;
    eprintln!("focal: sealing {total} envelopes ...");
    let mut envs: Vec<pb::Envelope> = Vec::with_capacity(total);
    let mut ids: HashMap<[u8; 16], usize> = HashMap::with_capacity(total);
    for k in 0..total {
        let i = k % p.senders;
        let s = &senders[i];
        let (r, key) = &recipients[i];
        let opts = CraftOptions { body_len: p.body, ..CraftOptions::default() };
        let env = craft(s.address(), s.credentials(), &[(r.address().clone(), *key)], &opts)?;
        ids.insert(opts.msg_id, k);
        envs.push(env);
    }
    let payload_bytes = envs[0].payload.len();
    let envs = Arc::new(envs);
    let ids = Arc::new(ids);

    // Recipients' live inbox streams feed one arrival channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (r, _) in &recipients {
        let mut inbox = r.inbox(true).await?;
        loop {
            match inbox.next().await {
                Some(Ok(InboxItem::ReplayDone)) => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("inbox: {e}"),
                None => bail!("inbox closed before ReplayDone"),
            }
        }
        let (tx, ids) = (tx.clone(), ids.clone());
        tokio::spawn(async move {
            while let Some(item) = inbox.next().await {
                if let Ok(InboxItem::Message(m)) = item {
                    let at = Instant::now();
                    if let Some(&k) = ids.get(&m.msg_id) {
                        let _ = tx.send((k, at));
                    }
                }
            }
        });
    }
    drop(tx);

    let channels: Vec<_> = senders.iter().map(|s| s.channel()).collect();
    let send = {
        let (envs, channels, n) = (envs.clone(), Arc::new(channels), p.senders);
        Arc::new(move |k: usize| {
            let (envs, channels) = (envs.clone(), channels.clone());
            async move {
                // Ok means ACCEPTED (after the first hop's fsync); a refusal
                // is an error status.
                send_envelope(channels[k % n].clone(), &envs[k], 64 * 1024).await?;
                Ok(())
            }
        })
    };

    // Warm-up: one message per sender.
    let base = p.warmup_start();
    let warm = load::saturate(base..base + p.senders, p.senders, send.clone(), &mut rx).await?;
    if warm.received < p.senders {
        bail!("warm-up: {} of {} messages arrived", warm.received, p.senders);
    }

    let names = ["carin", "gfp", "arinsa"];
    let pids: Vec<Option<u32>> = names.iter().map(|n| fed.relay(n).pid()).collect();
    let cpu0 = load::cpu_now(&pids);
    eprintln!("focal: saturation, {} messages, {} in flight ...", p.saturation_msgs, p.senders * p.window);
    let saturation =
        load::saturate(0..p.saturation_msgs, p.senders * p.window, send.clone(), &mut rx).await?;
    let cpu1 = load::cpu_now(&pids);
    eprintln!("focal: saturation {saturation:?}");

    eprintln!("focal: offered load {} msg/s for {} s ...", p.rate, p.rate_secs);
    let r = p.saturation_msgs..p.offered_end();
    let offered = load::offered(r, p.rate, send.clone(), &mut rx).await?;
    eprintln!("focal: offered {offered:?}");
    let cpu2 = load::cpu_now(&pids);
    let sweep = load::sweep(&p.sweep, p.sweep_secs, p.offered_end(), send.clone(), &mut rx).await?;

    let relays = ProcFigures::from_readings(&names, [&cpu0, &cpu1, &cpu2], |i| {
        pids[i].and_then(|_| fed.relay(names[i]).peak_rss_kib())
    });
    drop(senders);
    drop(recipients);
    fed.shutdown().await?;
    Ok(FocalResult { saturation, offered, sweep, relays, payload_bytes })
}
