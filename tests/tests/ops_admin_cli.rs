//! `focal admin …` as a secretariat runs it against its relay: status,
//! queue listing by header, purge refused for a live item, reload; a focal
//! point running the same commands is refused, peer control says that
//! federation is not running, and `witness-forget` of a log the witness
//! never pinned names what it has pinned (the whole flow is in
//! `server/tests/federation_witness.rs`).
//!
//! Run: `cargo test -p focal-tests --test ops_admin_cli`.

use anyhow::{Context, Result};
use focal_proto::Role;
use focal_tests::Federation;
use focal_tests::cli::{json_lines, ok, refused};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secretariat_runs_admin_commands() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed =
        Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    fed.add_member("ops@carin", Role::Admin)?;
    let (a, admin) = (fed.fp("nl-fiod@carin"), fed.member("ops@carin"));

    let sent = json_lines(
        &ok(a, &bins, &["--json", "send", "--to", "be-ocsc@carin", "--subject", "s", "--body", "b"]).await?,
    )?;
    let msg_id = sent[0]["msg_id"].as_str().context("msg_id")?.to_owned();

    let status = json_lines(&ok(admin, &bins, &["--json", "admin", "status"]).await?)?;
    assert_eq!(status[0]["type"], "status");
    assert_eq!(status[0]["network"], "carin");
    assert_eq!(status[0]["mailbox_messages"], 1);
    assert!(status[0]["certificates"].as_array().is_some_and(|c| !c.is_empty()), "{status:?}");
    let text = ok(admin, &bins, &["admin", "status"]).await?;
    assert!(text.contains("relay      focal://carin/relay/"), "{text}");

    let queue = json_lines(&ok(admin, &bins, &["--json", "admin", "queue"]).await?)?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["queue"], "mailbox:be-ocsc@carin");
    assert_eq!(queue[0]["msg_id"], msg_id.as_str());
    assert_eq!(queue[0]["from"], "nl-fiod@carin");

    let err = refused(
        admin,
        &bins,
        &[
            "admin",
            "purge",
            "--queue",
            "mailbox:be-ocsc@carin",
            "--sender",
            "nl-fiod@carin",
            "--msg-id",
            &msg_id,
        ],
    )
    .await?;
    assert!(err.contains("only expired items can be purged"), "{err}");

    let out = ok(admin, &bins, &["admin", "reload"]).await?;
    assert!(out.starts_with("reloaded: "), "{out}");

    let err = refused(admin, &bins, &["admin", "retry-peer", "relay-gfp"]).await?;
    assert!(err.contains("federation not running"), "{err}");

    let err = refused(admin, &bins, &["admin", "witness-forget", "focal/gfp/relay-gfp"]).await?;
    assert!(err.contains("has pinned nothing for \"focal/gfp/relay-gfp\" (pinned: none)"), "{err}");

    let err = refused(a, &bins, &["admin", "status"]).await?;
    assert!(err.contains("only an admin of network carin"), "{err}");
    fed.shutdown().await
}
