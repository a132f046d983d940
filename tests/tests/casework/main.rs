//! Case work across a federation (issue 6): message kinds with structured
//! request fields, case threads across three networks and overdue requests,
//! handling code H2 enforced by the forwarder's relay (with and without the
//! originator's release, refusal audited), and a broadcast to every member
//! of a network; urgent messages overtaking a backlog at the hub, escalation
//! to an alternate focal point and per-network broadcast policy. Real relays on loopback through the `focal_tests` harness.
//!
//! Run: `cargo test -p focal-tests --test casework`.

mod broadcast;
mod broadcast_policy;
mod cli;
mod escalation;
mod handling;
mod kinds;
mod retention;
mod threads;
mod urgent;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use focal_client::progress::{NoProgress, Progress};
use focal_client::{Client, Draft, ReadOptions};
use focal_proto::{Address, pb};

/// No progress reporting.
pub fn quiet() -> Arc<dyn Progress> {
    Arc::new(NoProgress)
}

/// A parsed address.
pub fn addr(s: &str) -> Address {
    Address::parse(s).expect("test address")
}

/// A plain message to `to`.
pub fn draft(to: &[&str], subject: &str, body: &str) -> Draft {
    Draft::new(to.iter().map(|a| addr(a)).collect(), subject, body)
}

/// Failure bound for things that should happen promptly (never a synchronisation).
pub const PROMPT: Duration = Duration::from_secs(60);

/// Waits until `msg_id` from `sender` is in `client`'s inbox (it may still
/// be crossing the federation), then reads it.
pub async fn wait_and_read(
    client: &Client,
    msg_id: [u8; 16],
    sender: &str,
) -> Result<focal_client::OpenedMessage> {
    let info = tokio::time::timeout(PROMPT, async {
        let mut inbox = client.inbox(true).await?;
        use futures::StreamExt;
        while let Some(item) = inbox.next().await {
            if let focal_client::InboxItem::Message(m) = item?
                && m.msg_id == msg_id
                && m.sender == addr(sender)
            {
                return Ok::<_, anyhow::Error>(m);
            }
        }
        anyhow::bail!("inbox ended before {} arrived", hex::encode(msg_id))
    })
    .await
    .with_context(|| format!("message {} from {sender} did not arrive", hex::encode(msg_id)))??;
    Ok(client.read(&info.reference(), &ReadOptions::default(), quiet()).await?)
}

/// Waits until `client` can look up each of `addrs` (the federation links
/// come up after `start()` returns; the harness offers no signal for that,
/// so this polls the directory, bounded by [`PROMPT`]).
pub async fn wait_reachable(client: &Client, addrs: &[&str]) -> Result<()> {
    for a in addrs {
        tokio::time::timeout(PROMPT, async {
            while client.lookup(&addr(a)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .with_context(|| format!("{a} not reachable through the federation"))?;
    }
    Ok(())
}

/// The audit records of `auditor`'s network (fresh checkpoint), decoded.
pub async fn audit_records(auditor: &Client) -> Result<Vec<pb::AuditRecord>> {
    use prost::Message;
    let mut a = auditor.audit();
    a.get_log_info(pb::GetCheckpointRequest { fresh: true }).await?;
    let mut stream = a.get_entries(pb::EntriesRequest { start: 0, end: 0 }).await?.into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await? {
        out.push(pb::AuditRecord::decode(e.leaf.as_slice())?);
    }
    Ok(out)
}
