//! Integration tests of one network: focal points of CARIN exchanging sealed
//! messages through their relay (issue 3's "Must show"), all through the
//! `focal_tests` harness: real relay (in-process or child process) on
//! loopback with OS-picked ports, real TLS, real sled, PKI made by
//! `focal_certs`.
//!
//! Run: `cargo test -p focal-tests --test single_network`.

mod cli;
mod connections;
mod durability;
mod exchange;
mod interrupt;
mod large;
mod refusals;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use focal_client::progress::{NoProgress, Progress};
use focal_client::{Client, Draft};
use focal_proto::Address;
use futures::StreamExt;

/// No progress reporting.
pub fn quiet() -> Arc<dyn Progress> {
    Arc::new(NoProgress)
}

/// A parsed member address.
pub fn addr(s: &str) -> Address {
    Address::parse_member(s).expect("test address")
}

/// A plain text message.
pub fn draft(to: &[&str], subject: &str, body: &str) -> Draft {
    Draft::new(to.iter().map(|a| addr(a)).collect(), subject, body)
}

/// Upper bound for anything that should happen promptly; a failure bound,
/// never a synchronisation.
pub const PROMPT: Duration = Duration::from_secs(30);

/// Message ids (hex) waiting in `client`'s inbox, in mailbox order.
pub async fn inbox_ids(client: &Client) -> Result<Vec<String>> {
    Ok(client.list_inbox().await?.iter().map(|m| hex::encode(m.msg_id)).collect())
}

/// Waits on a live inbox stream for the message `msg_id` (skipping others).
pub async fn wait_for_message(
    stream: &mut futures::stream::BoxStream<'static, focal_client::Result<focal_client::InboxItem>>,
    msg_id: [u8; 16],
) -> Result<focal_client::MessageInfo> {
    tokio::time::timeout(PROMPT, async {
        while let Some(item) = stream.next().await {
            if let focal_client::InboxItem::Message(m) = item?
                && m.msg_id == msg_id
            {
                return Ok(m);
            }
        }
        anyhow::bail!("inbox stream ended before message {} arrived", hex::encode(msg_id))
    })
    .await
    .context("message did not arrive on the live inbox")?
}
