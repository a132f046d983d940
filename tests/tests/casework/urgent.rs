//! Urgency at a hub: 1,000 NORMAL messages wait at the GFP hub in its
//! outbox for ARINSA (held with the admin `PausePeer` API), then one URGENT
//! message of another sender joins them; once the link resumes, the urgent
//! one reaches the ARINSA mailbox before the whole normal backlog. Order is
//! compared at the recipient (mailbox sequence), never by timing.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use focal_proto::envelope::RecipientPublicKey;
use focal_proto::{Role, pb};
use focal_tests::Federation;
use focal_tests::raw::{CraftOptions, craft, send_envelope};
use futures::StreamExt;

use crate::{PROMPT, addr, draft, quiet, wait_reachable};

const NORMALS: usize = 1_000;

/// Polls `check` until it is true, failing after `deadline` (a bound only).
pub(crate) async fn until<F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn hub_queue_depth(admin: &focal_client::Client, peer: &str) -> Result<u64> {
    let mut a = pb::admin_client::AdminClient::new(admin.channel());
    let s = a.status(pb::StatusRequest {}).await?.into_inner();
    Ok(s.peers.iter().find(|p| p.name == peer).map(|p| p.queue_depth).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_overtakes_1000_normal_queued_at_the_hub() -> Result<()> {
    let mut fed = Federation::builder()
        .hub("gfp")
        .focal_point("bulk@carin")
        .focal_point("urgent@carin")
        .focal_point("za-npa@arinsa")
        .limits("carin", |l| l.sends_per_minute = 1_000_000)
        .start()
        .await?;
    fed.add_member("ops@gfp", Role::Admin)?;
    let admin = fed.member("ops@gfp").client().await?;
    let bulk = fed.client("bulk@carin").await?;
    let urgent = fed.client("urgent@carin").await?;
    let rcpt = fed.client("za-npa@arinsa").await?;
    wait_reachable(&bulk, &["za-npa@arinsa"]).await?;
    wait_reachable(&urgent, &["za-npa@arinsa"]).await?;
    let key = RecipientPublicKey(bulk.lookup(&addr("za-npa@arinsa")).await?.x25519_public);

    let arinsa_relay = fed.relay("arinsa").name.clone();
    let mut ops = pb::admin_client::AdminClient::new(admin.channel());
    ops.pause_peer(pb::PeerRequest { peer: arinsa_relay.clone() }).await?;

    // 1,000 normal messages, crafted in memory and sent 16 at a time.
    let fp = fed.fp("bulk@carin");
    let creds = fp.cert.credentials()?;
    let mut normals = Vec::with_capacity(NORMALS);
    let mut envs = Vec::with_capacity(NORMALS);
    for _ in 0..NORMALS {
        let opts = CraftOptions { body_len: 32, ..Default::default() };
        envs.push(craft(&fp.address, &creds, &[(addr("za-npa@arinsa"), key)], &opts)?);
        normals.push(opts.msg_id);
    }
    let channel = bulk.channel();
    let results: Vec<_> = futures::stream::iter(envs)
        .map(|e| {
            let ch = channel.clone();
            async move { send_envelope(ch, &e, 64 * 1024).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r.context("a normal send was refused")?;
    }
    let backlog = PROMPT + Duration::from_millis(100 * NORMALS as u64);
    until("the hub holds the whole backlog for arinsa", backlog, || async {
        Ok(hub_queue_depth(&admin, &arinsa_relay).await? == NORMALS as u64)
    })
    .await?;

    let mut d = draft(&["za-npa@arinsa"], "Freeze now", "Funds are moving.");
    d.priority = pb::Priority::Urgent;
    let sent = urgent.send(&d, quiet()).await?;
    until("the urgent message waits at the hub too", PROMPT, || async {
        Ok(hub_queue_depth(&admin, &arinsa_relay).await? == NORMALS as u64 + 1)
    })
    .await?;

    ops.resume_peer(pb::PeerRequest { peer: arinsa_relay.clone() }).await?;
    let end = tokio::time::Instant::now() + backlog;
    let waiting = loop {
        let w = rcpt.list_inbox().await?;
        if w.len() > NORMALS {
            break w;
        }
        ensure!(tokio::time::Instant::now() < end, "only {} of {} arrived at arinsa", w.len(), NORMALS + 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(waiting.len(), NORMALS + 1, "each message once");
    let first = &waiting[0];
    assert_eq!(first.msg_id, sent.msg_id, "the urgent message is delivered before the backlog");
    assert_eq!(first.priority, pb::Priority::Urgent as i32);
    let mut rest: Vec<[u8; 16]> = waiting[1..].iter().map(|m| m.msg_id).collect();
    rest.sort_unstable();
    normals.sort_unstable();
    assert_eq!(rest, normals, "then the whole normal backlog, once each");
    fed.shutdown().await
}
