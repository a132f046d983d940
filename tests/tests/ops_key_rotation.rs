//! A focal point's ENCRYPTION key rotation with its overlap period, end to
//! end through a running federation of two networks (carin and arinsa,
//! relays peered over QUIC):
//!
//! 1. alice@carin sends to za-afu@arinsa: sealed to za-afu's key 1; it waits
//!    unread in za-afu's mailbox (and carin's relay caches the entry);
//! 2. za-afu rotates (`keys init --rotate`) and publishes key 2: the
//!    directory serves key 2;
//! 3. a message from za-npa@arinsa after the rotation is sealed to key 2; a
//!    message from alice@carin sent while carin's relay may still serve
//!    its cached entry is readable either way;
//! 4. during the overlap every message opens, and `focal keys prune
//!    --overlap 30d` removes nothing;
//! 5. after the overlap the old key is removed: the message sealed to key 2
//!    still opens, the one sealed to key 1 no longer does.
//!
//! Run: `cargo test -p focal-tests --test ops_key_rotation`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use focal_client::progress::{NoProgress, Progress};
use focal_client::{Client, Draft, InboxItem, MessageInfo, PublishOptions, ReadOptions};
use focal_proto::Address;
use focal_tests::Federation;
use futures::StreamExt;
use futures::stream::BoxStream;

const OVERLAP: Duration = Duration::from_secs(30 * 86_400);

fn quiet() -> Arc<dyn Progress> {
    Arc::new(NoProgress)
}

fn addr(s: &str) -> Address {
    Address::parse_member(s).unwrap()
}

fn draft(to: &str, subject: &str) -> Draft {
    Draft::new(vec![addr(to)], subject, format!("body of {subject}"))
}

/// Waits on a live inbox stream for `msg_id` (a failure bound, not a synchronisation).
async fn arrives(
    stream: &mut BoxStream<'static, focal_client::Result<InboxItem>>,
    msg_id: [u8; 16],
) -> Result<MessageInfo> {
    tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(item) = stream.next().await {
            if let InboxItem::Message(m) = item?
                && m.msg_id == msg_id
            {
                return Ok(m);
            }
        }
        anyhow::bail!("inbox stream ended before {} arrived", hex::encode(msg_id))
    })
    .await
    .context("message did not arrive")?
}

async fn open(c: &Client, m: &MessageInfo) -> focal_client::Result<String> {
    Ok(c.read(&m.reference(), &ReadOptions::default(), quiet()).await?.content.subject)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_key_rotation_overlap_across_two_networks() -> Result<()> {
    focal_tests::init();
    let fed = Federation::builder()
        .link("carin", "arinsa")
        .focal_point("nl-fiod@carin")
        .focal_point("za-afu@arinsa")
        .focal_point("za-npa@arinsa")
        .start()
        .await?;
    let alice = fed.client("nl-fiod@carin").await?;
    let bob = fed.client("za-afu@arinsa").await?;
    let carol = fed.client("za-npa@arinsa").await?;
    let bob_addr = addr("za-afu@arinsa");
    let mut inbox = bob.inbox(true).await?;

    // 1. Before the rotation: sealed to key 1, queued unread.
    let k1 = bob.keys().current()?;
    assert_eq!(k1.serial, 1);
    assert_eq!(alice.lookup(&bob_addr).await?.x25519_public, k1.public.0);
    let m1 = alice.send(&draft("za-afu@arinsa", "before rotation"), quiet()).await?;
    let m1 = arrives(&mut inbox, m1.msg_id).await?;

    // 2. Rotation: a new key, published in the directory.
    let k2 = bob.keys().generate(true, focal_client::util::now_ms())?;
    assert_eq!(k2.serial, 2);
    bob.publish_key(&PublishOptions::default()).await?;
    let entry = carol.lookup(&bob_addr).await?;
    assert_eq!(entry.body.key_serial, 2);
    assert_eq!(entry.x25519_public, k2.public.0, "the directory serves the new key");

    // 3. After the rotation: a new message is sealed to the new key; one
    //    from the other network (its relay may serve a cached entry for a
    //    few minutes) is readable whichever key it used.
    let m2 = carol.send(&draft("za-afu@arinsa", "after rotation"), quiet()).await?;
    let m2 = arrives(&mut inbox, m2.msg_id).await?;
    let m3 = alice.send(&draft("za-afu@arinsa", "across the rotation"), quiet()).await?;
    let m3 = arrives(&mut inbox, m3.msg_id).await?;

    // 4. During the overlap everything opens; pruning keeps both keys.
    let bins = focal_tests::bins!();
    let out = fed.fp("za-afu@arinsa").cli(&bins).args(["keys", "prune", "--overlap", "30d"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("no key removed"), "{stdout}");
    assert_eq!(bob.keys().all()?.len(), 2);
    assert_eq!(open(&bob, &m1).await?, "before rotation");
    assert_eq!(open(&bob, &m2).await?, "after rotation");
    assert_eq!(open(&bob, &m3).await?, "across the rotation");

    // 5. After the overlap the old key goes: what was sealed to the new key
    //    opens, what was sealed to the old one no longer does.
    let after_overlap = k2.created_at_ms + OVERLAP.as_millis() as i64;
    assert_eq!(bob.keys().prune(OVERLAP, after_overlap)?, vec![1]);
    assert_eq!(bob.keys().all()?.iter().map(|k| k.serial).collect::<Vec<_>>(), vec![2]);
    assert_eq!(open(&bob, &m2).await?, "after rotation", "sealed to the new key");
    let err = open(&bob, &m1).await.expect_err("sealed to the removed key");
    assert!(err.to_string().contains("no recipient stanza matches"), "{err}");

    drop(inbox);
    fed.shutdown().await
}
