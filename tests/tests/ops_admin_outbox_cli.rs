//! `focal admin queue --peer P` and `focal admin purge --peer P --seq N` as
//! a secretariat runs them: with the link to arinsa paused, a message for
//! arinsa waits in carin's outbox for that peer; the listing shows its
//! header fields and number; a purge of the live item is refused, a forced
//! one removes it, and the outbox is empty afterwards.
//!
//! Run: `cargo test -p focal-tests --test ops_admin_outbox_cli`.

use anyhow::{Context, Result};
use focal_proto::Role;
use focal_tests::Federation;
use focal_tests::cli::{json_lines, ok, refused};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secretariat_lists_and_purges_a_peer_outbox_item() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed = Federation::builder()
        .link("carin", "arinsa")
        .focal_point("nl-fiod@carin")
        .focal_point("za-afu@arinsa")
        .start()
        .await?;
    fed.add_member("ops@carin", Role::Admin)?;
    let (a, admin) = (fed.fp("nl-fiod@carin"), fed.member("ops@carin"));
    let peer = "relay.arinsa";

    let out = ok(admin, &bins, &["admin", "pause-peer", peer]).await?;
    assert!(out.contains("paused"), "{out}");
    let sent = json_lines(
        &ok(a, &bins, &["--json", "send", "--to", "za-afu@arinsa", "--subject", "s", "--body", "b"]).await?,
    )?;
    let msg_id = sent[0]["msg_id"].as_str().context("msg_id")?.to_owned();

    let queue = json_lines(&ok(admin, &bins, &["--json", "admin", "queue", "--peer", peer]).await?)?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    let item = &queue[0];
    assert_eq!(item["queue"], format!("peer:{peer}"));
    assert_eq!(item["kind"], "envelope");
    assert_eq!(item["msg_id"], msg_id.as_str());
    assert_eq!(item["from"], "nl-fiod@carin");
    assert_eq!(item["to"], serde_json::json!(["za-afu@arinsa"]));
    assert_eq!(item["priority"], "normal");
    assert!(item["size"].as_u64().is_some_and(|s| s > 0), "{item}");
    assert!(item["expires_at_ms"].as_i64() > item["queued_at_ms"].as_i64(), "{item}");
    let seq = item["seq"].as_u64().context("seq")?.to_string();
    let text = ok(admin, &bins, &["admin", "queue", "--peer", peer]).await?;
    assert!(text.contains(&format!("peer:{peer} seq {seq}")) && text.contains(&msg_id), "{text}");

    let err = refused(admin, &bins, &["admin", "purge", "--peer", peer, "--seq", &seq]).await?;
    assert!(err.contains("only expired items can be purged"), "{err}");
    let err = refused(a, &bins, &["admin", "purge", "--peer", peer, "--seq", &seq, "--force"]).await?;
    assert!(err.contains("only an admin of network carin"), "{err}");
    let out = ok(admin, &bins, &["admin", "purge", "--peer", peer, "--seq", &seq, "--force"]).await?;
    assert!(out.starts_with("purged: ") && out.contains("audit leaf"), "{out}");

    let queue = json_lines(&ok(admin, &bins, &["--json", "admin", "queue", "--peer", peer]).await?)?;
    assert!(queue.is_empty(), "{queue:?}");
    fed.shutdown().await
}
