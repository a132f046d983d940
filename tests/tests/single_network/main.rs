//! Integration tests of one network: focal points of CARIN exchanging sealed
//! messages through their relay (issue 3's "Must show"), all through the
//! `focal_tests` harness: real relay (in-process or child process) on
//! loopback with OS-picked ports, real TLS, real sled, PKI made by
//! `focal_certs`.
//!
//! Run: `cargo test -p focal-tests --test single_network`.

mod cli;
mod durability;
mod exchange;
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

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &std::path::Path) -> Result<[u8; 32]> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().try_into()?)
}

/// Writes `len` bytes of a deterministic pseudo-random pattern (generated on
/// the fly; nothing large is committed to the repository).
pub fn write_pattern_file(path: &std::path::Path, len: u64, seed: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_mut(8) {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}
