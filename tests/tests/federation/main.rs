//! Integration tests of the federation (issue 4's "Must show"): relays of
//! different networks, in-process or as child processes, carrying sealed
//! messages through the GFP hub or directly, refusing what they must with
//! non-delivery receipts, surviving killed relays without losing or
//! duplicating anything, refusing impostors on their QUIC listener; and
//! `focal-relay demo` run as a child process.
//!
//! Run: `cargo test -p focal-tests --test federation`.
//! Sizes: `FOCAL_FED_MESSAGES` (default 1,000) messages per fault test,
//! `FOCAL_FED_SEED` repeats the hub's random kill points,
//! `FOCAL_FED_DOWN_SECS` (default 75) how long the backoff test keeps a peer
//! down (past the 60 s cap). About 2 minutes in a debug build, most of it
//! the backoff test's wait.

/// Serialises the heaviest tests of this binary (the demo's eight relays and
/// the 1,000-message fault runs): on a 2-core CI machine running them all at
/// once starved the demo's relays past its deadlines.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

mod demo;
mod faults;
mod routing;
mod security;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use focal_client::progress::{NoProgress, Progress};
use focal_client::{Client, Draft, InboxItem, MessageInfo, ReceiptInfo};
use focal_proto::Address;
use futures::StreamExt;
use futures::stream::BoxStream;

/// Upper bound for anything that should happen promptly; a failure bound,
/// never a synchronisation.
pub const PROMPT: Duration = Duration::from_secs(30);

/// A live inbox.
pub type Inbox = BoxStream<'static, focal_client::Result<InboxItem>>;

/// No progress reporting.
pub fn quiet() -> Arc<dyn Progress> {
    Arc::new(NoProgress)
}

/// A parsed member address.
pub fn addr(s: &str) -> Address {
    Address::parse_member(s).expect("test address")
}

/// A plain text message.
pub fn draft(to: &[&str], subject: &str) -> Draft {
    Draft::new(to.iter().map(|a| addr(a)).collect(), subject, "synthetic test content")
}

/// Networks of the hops a relay chain wrote into a header.
pub fn hop_networks(m: &MessageInfo) -> Vec<String> {
    m.header.hops.iter().map(|h| h.network.clone()).collect()
}

/// Opens a live inbox (replay, then new arrivals).
pub async fn live(c: &Client) -> Result<Inbox> {
    Ok(c.inbox(true).await?)
}

/// Waits on a live inbox for the first item `f` picks, within `deadline`.
pub async fn wait_item<T>(
    inbox: &mut Inbox,
    what: &str,
    deadline: Duration,
    mut f: impl FnMut(&InboxItem) -> Option<T>,
) -> Result<T> {
    tokio::time::timeout(deadline, async {
        while let Some(item) = inbox.next().await {
            if let Some(t) = f(&item?) {
                return Ok(t);
            }
        }
        bail!("inbox stream ended while waiting for {what}")
    })
    .await
    .with_context(|| format!("{what}: nothing within {deadline:?}"))?
}

/// Waits for message `msg_id`.
pub async fn wait_message(inbox: &mut Inbox, msg_id: [u8; 16]) -> Result<MessageInfo> {
    wait_item(inbox, &format!("message {}", hex::encode(msg_id)), PROMPT, |i| match i {
        InboxItem::Message(m) if m.msg_id == msg_id => Some(m.clone()),
        _ => None,
    })
    .await
}

/// Waits for a receipt about `msg_id` (and `subject`, when given).
pub async fn wait_receipt(inbox: &mut Inbox, msg_id: [u8; 16], subject: Option<&str>) -> Result<ReceiptInfo> {
    wait_item(inbox, &format!("a receipt for {}", hex::encode(msg_id)), PROMPT, |i| match i {
        InboxItem::Receipt(r) if r.body.msg_id == msg_id && subject.is_none_or(|s| r.body.subject == s) => {
            Some(r.clone())
        }
        _ => None,
    })
    .await
}

/// Collects messages from a live inbox until every id of `want` was seen
/// (each id counted once here; duplicates are checked on the mailbox
/// listing), within `deadline`.
pub async fn wait_all(inbox: &mut Inbox, want: &[[u8; 16]], deadline: Duration) -> Result<()> {
    let mut missing: std::collections::HashSet<[u8; 16]> = want.iter().copied().collect();
    let n = want.len();
    tokio::time::timeout(deadline, async {
        while !missing.is_empty() {
            match inbox.next().await {
                Some(Ok(InboxItem::Message(m))) => {
                    missing.remove(&m.msg_id);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("inbox stream ended with {} of {n} messages missing", missing.len()),
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("{} of {n} messages still missing after {deadline:?}", missing.len()))?
}

/// Checks that `client`'s mailbox holds each of `sent` exactly once, in
/// the order sent (per-sender order), and nothing else from `sender`.
pub async fn assert_once_in_order(client: &Client, sender: &Address, sent: &[[u8; 16]]) -> Result<()> {
    let listed: Vec<[u8; 16]> =
        client.list_inbox().await?.into_iter().filter(|m| &m.sender == sender).map(|m| m.msg_id).collect();
    let mut seen = std::collections::HashSet::new();
    for id in &listed {
        if !seen.insert(*id) {
            bail!("message {} is in the mailbox twice", hex::encode(id));
        }
    }
    if listed.len() != sent.len() {
        bail!("mailbox holds {} messages from {sender}, {} were sent", listed.len(), sent.len());
    }
    if let Some(i) = listed.iter().zip(sent).position(|(a, b)| a != b) {
        bail!(
            "per-sender order broken at position {i}: {} where {} was sent",
            hex::encode(listed[i]),
            hex::encode(sent[i])
        );
    }
    Ok(())
}

/// Every record of the audit log behind `auditor`'s relay, up to its
/// latest checkpoint.
pub async fn audit_records(auditor: &Client) -> Result<Vec<focal_proto::pb::AuditRecord>> {
    use prost::Message;
    let req = focal_proto::pb::EntriesRequest { start: 0, end: 0 };
    let mut entries = auditor.audit().get_entries(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(e) = entries.message().await? {
        out.push(focal_proto::pb::AuditRecord::decode(&e.leaf[..])?);
    }
    Ok(out)
}

/// Polls `check` until it holds (a failure bound, not a timing assertion).
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > end {
            bail!("{what}: not within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
