//! Faults with relays as child processes (SIGKILL: nothing flushed): the
//! recipient's relay down while the sender keeps sending (everything queues
//! at the hub, then arrives exactly once, in order); the hub killed
//! mid-stream at random points; and a peer down long enough for the retry
//! backoff to reach its cap still gets its mail promptly once it returns.
//!
//! Messages are sealed ahead with `focal_tests::raw::craft` to the
//! recipient's published key (looked up once, while everything is up),
//! because a lookup of a member whose relay is down cannot be answered.

use std::time::Duration;

use focal_client::Client;
use std::collections::HashSet;

use focal_proto::envelope::RecipientPublicKey;
use focal_proto::{Role, pb};
use focal_tests::raw::{CraftOptions, craft, send_envelope};
use focal_tests::{Federation, bins};
use rand::Rng;

use super::*;

const SENDER: &str = "nl-fiod@carin";
const RECIPIENT: &str = "za-npa@arinsa";

/// Messages per test: `FOCAL_FED_MESSAGES` or the given default.
fn count(default: usize) -> usize {
    std::env::var("FOCAL_FED_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn star() -> Result<Federation> {
    Federation::builder()
        .hub("gfp")
        .focal_point(SENDER)
        .focal_point(RECIPIENT)
        // One sender sends fast here; the default limit is 600 a minute.
        .limits("carin", |l| l.sends_per_minute = 1_000_000)
        .processes(&bins!())
        .start()
        .await
}

/// Sender, recipient, the recipient's key, and the recipient's live inbox
/// after one message went through end to end (links are up).
async fn warm(fed: &Federation) -> Result<(Client, Client, RecipientPublicKey, Inbox)> {
    let a = fed.client(SENDER).await?;
    let b = fed.client(RECIPIENT).await?;
    let mut b_in = live(&b).await?;
    let key = RecipientPublicKey(a.lookup(&addr(RECIPIENT)).await?.x25519_public);
    let sent = a.send(&draft(&[RECIPIENT], "warm-up"), quiet()).await?;
    let m = wait_message(&mut b_in, sent.msg_id).await?;
    b.ack(&m.reference(), &m.payload_sha256).await?;
    Ok((a, b, key, b_in))
}

/// Seals and sends one small message; returns its id once carin ACCEPTED it.
async fn send_one(fed: &Federation, a: &Client, key: RecipientPublicKey, i: usize) -> Result<[u8; 16]> {
    let fp = fed.fp(SENDER);
    let opts = CraftOptions { body_len: 64 + i % 7, ..Default::default() };
    let env = craft(&fp.address, &fp.cert.credentials()?, &[(addr(RECIPIENT), key)], &opts)?;
    send_envelope(a.channel(), &env, 64 * 1024).await.with_context(|| format!("send #{i}"))?;
    Ok(opts.msg_id)
}

/// Deadline for `n` messages to cross a restarted federation (debug build,
/// shared 2-core machine): generous, a failure bound only.
fn drain_deadline(n: usize) -> Duration {
    PROMPT + Duration::from_millis(200 * n as u64)
}

async fn arinsa_down_while_carin_sends(n: usize) -> Result<()> {
    let mut fed = star().await?;
    fed.add_member("auditor@gfp", Role::Auditor)?;
    let hub_auditor = fed.member("auditor@gfp").client().await?;
    let (a, b, key, _) = warm(&fed).await?;
    fed.relay_mut("arinsa").kill().await?;
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        sent.push(send_one(&fed, &a, key, i).await?);
    }
    // They queue at the hub: it has received every one (carin's outbox
    // drained into it) and forwarded none.
    let ids: HashSet<Vec<u8>> = sent.iter().map(|id| id.to_vec()).collect();
    eventually("the hub has received every message", drain_deadline(n), || async {
        let records = audit_records(&hub_auditor).await?;
        let mine = |k: pb::AuditKind| {
            records.iter().filter(|r| r.kind == k as i32 && ids.contains(&r.msg_id)).count()
        };
        assert_eq!(mine(pb::AuditKind::Forwarded), 0, "the hub forwarded to a dead arinsa");
        Ok(mine(pb::AuditKind::Received) == n)
    })
    .await?;
    fed.relay_mut("arinsa").start().await?;
    let mut b_in = live(&b).await?;
    wait_all(&mut b_in, &sent, drain_deadline(n)).await?;
    assert_once_in_order(&b, &addr(SENDER), &sent).await?;
    fed.shutdown().await
}

/// A hub whose store queue holds only two operations, facing a backlog
/// that carin pipelines 32 at a time: it answers RETRY on the stream (queue
/// full), everything behind on that stream gets RETRY too, carin backs off
/// and sends again, and every message still arrives once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_hub_answers_retry_mid_stream_and_order_holds() -> Result<()> {
    let _heavy = crate::HEAVY.lock().await;
    let n = count(100);
    let mut fed = Federation::builder()
        .hub("gfp")
        .focal_point(SENDER)
        .focal_point(RECIPIENT)
        .limits("carin", |l| l.sends_per_minute = 1_000_000)
        .limits("gfp", |l| l.write_queue_depth = 2)
        .processes(&bins!())
        .start()
        .await?;
    let (a, b, key, _) = warm(&fed).await?;
    // The backlog builds at carin while the hub is down...
    fed.relay_mut("gfp").kill().await?;
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        sent.push(send_one(&fed, &a, key, i).await?);
    }
    // ...and reaches it pipelined once it is back.
    fed.relay_mut("gfp").start().await?;
    let mut b_in = live(&b).await?;
    wait_all(&mut b_in, &sent, drain_deadline(n)).await?;
    assert_once_in_order(&b, &addr(SENDER), &sent).await?;
    let log = fed.relay("gfp").recent_log();
    assert!(log.contains("envelope answered RETRY"), "the hub never pushed back:\n{log}");
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_relay_down_while_sender_sends_1000_then_all_arrive_once_in_order() -> Result<()> {
    let _heavy = crate::HEAVY.lock().await;
    arinsa_down_while_carin_sends(count(1000)).await
}

async fn hub_killed_mid_stream(n: usize, kills: usize) -> Result<()> {
    let mut fed = star().await?;
    let (a, b, key, _) = warm(&fed).await?;
    let seed: u64 = std::env::var("FOCAL_FED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("hub_killed_mid_stream: seed {seed} (FOCAL_FED_SEED to repeat)");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut points: Vec<usize> = (0..kills).map(|_| rng.random_range(1..n)).collect();
    points.sort_unstable();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        while points.first() == Some(&i) {
            points.remove(0);
            fed.relay_mut("gfp").crash_and_restart().await?;
        }
        sent.push(send_one(&fed, &a, key, i).await?);
    }
    let mut b_in = live(&b).await?;
    wait_all(&mut b_in, &sent, drain_deadline(n)).await?;
    assert_once_in_order(&b, &addr(SENDER), &sent).await?;
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_at_random_points_while_1000_are_sent_loses_and_duplicates_nothing() -> Result<()> {
    let _heavy = crate::HEAVY.lock().await;
    hub_killed_mid_stream(count(1000), 5).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_resets_when_the_peer_returns() -> Result<()> {
    let _heavy = crate::HEAVY.lock().await;
    // Down long enough for the hub's retries of arinsa to reach their cap
    // (1 s doubling to 60 s: capped after about 63 s); then arinsa's return
    // must trigger delivery at once (the reconnect resets the backoff), not
    // at the next capped retry up to 60 s later: the deadline is below the cap.
    let down = Duration::from_secs(
        std::env::var("FOCAL_FED_DOWN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(75),
    );
    let mut fed = star().await?;
    let (a, b, key, _) = warm(&fed).await?;
    fed.relay_mut("arinsa").kill().await?;
    let id = send_one(&fed, &a, key, 0).await?;
    tokio::time::sleep(down).await; // the condition under test is elapsed time itself
    fed.relay_mut("arinsa").start().await?;
    let mut b_in = live(&b).await?;
    wait_item(&mut b_in, "the queued message after arinsa's return", Duration::from_secs(20), |i| match i {
        InboxItem::Message(m) if m.msg_id == id => Some(()),
        _ => None,
    })
    .await?;
    fed.shutdown().await
}
