//! Fault-injection tests of a 3-network federation (CARIN -> GFP hub ->
//! ARINSA) whose relays run as child processes (issue 8, fault harness):
//!
//! - `partition`: the CARIN-GFP link cut both ways through the harness's
//!   UDP proxies, messages ACCEPTED and queued meanwhile, no busy loop
//!   while cut (CPU time from `/proc`), then healed: all arrive once, in order;
//! - `lossy`: 20 % loss and 50 ms delay on that link while messages flow;
//! - `pause`: the hub SIGSTOPped mid-stream, then SIGCONTed;
//! - `soak`: random relays SIGKILLed and restarted while senders push a
//!   steady stream; delivery checked with a [`Ledger`], every relay's audit
//!   log verified offline and its successive checkpoints proved consistent.
//!
//! Run: `cargo test -p focal-tests --test faults` (CI sizes, a few minutes
//! in a debug build). Long soak: see `soak.rs`
//! (`FOCAL_SOAK_KILLS=100 FOCAL_SOAK_MESSAGES=100000 cargo test -p
//! focal-tests --test faults -- --ignored --nocapture long_soak`).
//! Other knobs: `FOCAL_FAULT_CUT_SECS` (default 60), `FOCAL_FAULT_LOSSY_MESSAGES`
//! (default 200), `FOCAL_FAULT_SEED` (loss RNG, default 8), `FOCAL_FAULT_PAUSE_SECS`
//! (default 10), `FOCAL_SOAK_SEED` (kill schedule; random and printed by default).

mod lossy;
mod partition;
mod pause;
mod soak;
mod trail;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use focal_client::Client;
use focal_proto::envelope::RecipientPublicKey;
use focal_proto::{Address, pb};
use focal_tests::fault::{DeliveryReport, Ledger, Outcome};
use focal_tests::raw::{CraftOptions, craft, send_envelope};
use focal_tests::{Federation, FederationBuilder, FocalPoint, bins};

/// Sender at CARIN.
pub const SENDER: &str = "nl-fiod@carin";
/// Recipient at ARINSA (three hops away: carin -> gfp -> arinsa).
pub const RECIPIENT: &str = "za-npa@arinsa";

/// A failure bound for anything that should happen soon (never a
/// synchronisation; generous for a loaded 2-core machine).
pub const PROMPT: Duration = Duration::from_secs(60);

/// The star CARIN - GFP - ARINSA with relays as child processes, the
/// CARIN-GFP link behind a proxy, and send limits raised for fast senders.
pub fn star() -> FederationBuilder {
    Federation::builder()
        .hub("gfp")
        .network("carin")
        .network("arinsa")
        .proxy_link("carin", "gfp")
        .focal_point(SENDER)
        .focal_point(RECIPIENT)
        .limits("carin", |l| l.sends_per_minute = 1_000_000)
        .limits("arinsa", |l| l.sends_per_minute = 1_000_000)
        .processes(&bins!())
}

/// A parsed member address.
pub fn addr(s: &str) -> Address {
    Address::parse_member(s).expect("test address")
}

/// Looks up `to`'s published key through `from`'s relay (links must be up),
/// retrying while the federation settles.
pub async fn key_of(fed: &Federation, from: &str, to: &str) -> Result<RecipientPublicKey> {
    let c = fed.client(from).await?;
    let deadline = Instant::now() + PROMPT;
    loop {
        match c.lookup(&addr(to)).await {
            Ok(e) => return Ok(RecipientPublicKey(e.x25519_public)),
            Err(e) if Instant::now() > deadline => bail!("looking up {to} from {from}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One sealed message from `fp` to `to` (sealed ahead with the recipient's
/// key, so sending needs no directory lookup across a faulty federation).
pub fn seal(
    fp: &FocalPoint,
    to: &Address,
    key: RecipientPublicKey,
    i: usize,
) -> Result<([u8; 16], pb::Envelope)> {
    let opts = CraftOptions { body_len: 64 + i % 61, ..Default::default() };
    let env = craft(&fp.address, &fp.cert.credentials()?, &[(to.clone(), key)], &opts)?;
    Ok((opts.msg_id, env))
}

/// Sends `n` messages from `fp` to `to` one after the other on `client`;
/// each must be ACCEPTED (the sender's relay stays up in these tests).
/// `progress` counts ACCEPTED sends for a test watching the stream.
pub async fn send_all(
    client: &Client,
    fp: &FocalPoint,
    to: &Address,
    key: RecipientPublicKey,
    n: usize,
    progress: Option<&std::sync::atomic::AtomicUsize>,
) -> Result<Vec<([u8; 16], Outcome)>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (id, env) = seal(fp, to, key, i)?;
        send_envelope(client.channel(), &env, 64 * 1024)
            .await
            .with_context(|| format!("send #{i} from {} was not ACCEPTED", fp.address))?;
        out.push((id, Outcome::Accepted));
        if let Some(p) = progress {
            p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(out)
}

/// The (sender, msg id) pairs in `client`'s mailbox, in mailbox order.
pub async fn mailbox(client: &Client) -> Result<Vec<(Address, [u8; 16])>> {
    Ok(client.list_inbox().await?.into_iter().map(|m| (m.sender, m.msg_id)).collect())
}

/// Waits until `recipient`'s mailbox holds every ACCEPTED message of
/// `ledger` (polling; `deadline` is a failure bound), then checks exactly
/// once and per-sender order. Returns the report and how long it took.
pub async fn wait_delivered(
    recipient: &FocalPoint,
    ledger: &Ledger,
    deadline: Duration,
) -> Result<(DeliveryReport, Duration)> {
    let started = Instant::now();
    let mut missing = usize::MAX;
    loop {
        let round = Instant::now();
        // A fresh client each round: the recipient's relay may have restarted.
        let listed = match recipient.client().await {
            Ok(c) => mailbox(&c).await.ok(),
            Err(_) => None,
        };
        if let Some(listed) = listed {
            missing = ledger.missing(listed.iter().map(|(s, id)| (s, *id)));
            if missing == 0 {
                let report = ledger.check(listed.iter().map(|(s, id)| (s, *id)))?;
                return Ok((report, started.elapsed()));
            }
        }
        if started.elapsed() > deadline {
            bail!(
                "{missing} ACCEPTED messages still not delivered to {} after {deadline:?}",
                recipient.address
            );
        }
        // Listing a large mailbox is work for the relay too: poll no more
        // than half the time.
        tokio::time::sleep(round.elapsed().max(Duration::from_millis(500))).await;
    }
}

/// Warms the federation up: one message from SENDER reaches RECIPIENT end
/// to end (links up, directory entries known). Returns the recipient's key
/// and a ledger holding that first message (the test's sends extend it).
pub async fn warm(fed: &Federation) -> Result<(RecipientPublicKey, Ledger)> {
    let key = key_of(fed, SENDER, RECIPIENT).await?;
    let a = fed.client(SENDER).await?;
    let mut ledger = Ledger::new();
    ledger.extend(&addr(SENDER), send_all(&a, fed.fp(SENDER), &addr(RECIPIENT), key, 1, None).await?);
    wait_delivered(fed.fp(RECIPIENT), &ledger, PROMPT).await.context("warm-up message")?;
    Ok((key, ledger))
}

/// A count from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
