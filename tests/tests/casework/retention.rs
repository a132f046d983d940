//! Relay retention (issue 6): a network whose `[retention] undelivered` is
//! 2 s expires a message left unread in a mailbox, or stuck in the outbox to
//! a paused peer, once it has waited that long: the copy is gone, the sender
//! holds an EXPIRED receipt signed by the relay, and the network's audit log
//! still verifies and holds a RETENTION_PURGED record for it. Waits are on
//! receipts arriving (polled, bounded by [`PROMPT`]), never on sleeps.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use focal_client::{Client, ReceiptInfo};
use focal_proto::{Role, pb};
use focal_relay::config::retention::{RetentionConfig, Span};
use focal_tests::Federation;

use crate::{PROMPT, audit_records, draft, quiet, wait_reachable};

fn two_seconds() -> RetentionConfig {
    RetentionConfig { undelivered: Some(Span::Text("2s".into())), delivered: Some(Span::Text("1h".into())) }
}

/// Polls `client`'s receipts until an EXPIRED one for `msg_id` arrives.
async fn wait_expired(client: &Client, msg_id: [u8; 16]) -> Result<ReceiptInfo> {
    tokio::time::timeout(PROMPT, async {
        loop {
            let found = client.receipts(0).await?.into_iter().find(|r| {
                r.body.msg_id == msg_id
                    && r.body.kind == pb::ReceiptKind::Expired as i32
                    && r.problem.is_none()
            });
            if let Some(r) = found {
                return Ok::<_, anyhow::Error>(r);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .context("no EXPIRED receipt within the deadline")?
}

/// Fetches and verifies `auditor`'s network log offline (key as the relay reports it).
async fn verify_log(auditor: &Client, dir: &std::path::Path) -> Result<u64> {
    let mut a = auditor.audit();
    let key = a.get_log_info(pb::GetCheckpointRequest { fresh: true }).await?.into_inner().verifier_key;
    focal_client::audit::fetch(&mut a, dir, &key).await?;
    Ok(focal_client::audit::verify(dir, &key, &[], 0)?.size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_message_is_purged_from_the_mailbox_after_retention() -> Result<()> {
    let mut fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .configure("carin", |n| n.retention = two_seconds())
        .start()
        .await?;
    let nl = fed.client("nl-fiod@carin").await?;
    let be = fed.client("be-ocsc@carin").await?;
    let sent =
        nl.send(&draft(&["be-ocsc@carin"], "Tracing query", "Accounts of Blue Yacht BV?"), quiet()).await?;

    let r = wait_expired(&nl, sent.msg_id).await?;
    assert_eq!(r.body.subject, "be-ocsc@carin");
    assert!(r.body.signer.starts_with("focal://carin/relay/"), "{}", r.body.signer);
    assert!(
        r.body.at_ms >= sent.accepted_at_ms + 2_000,
        "purged at {} before the 2 s retention since {}",
        r.body.at_ms,
        sent.accepted_at_ms
    );
    assert!(be.list_inbox().await?.iter().all(|m| m.msg_id != sent.msg_id), "still in the mailbox");

    fed.add_member("auditor@carin", Role::Auditor)?;
    let auditor = fed.member("auditor@carin").client().await?;
    let records = audit_records(&auditor).await?;
    let purged: Vec<_> = records
        .iter()
        .filter(|r| r.kind == pb::AuditKind::RetentionPurged as i32 && r.msg_id == sent.msg_id)
        .collect();
    assert_eq!(purged.len(), 1, "{records:?}");
    assert_eq!(purged[0].recipients, ["be-ocsc@carin"]);
    assert!(records.iter().any(|r| r.kind == pb::AuditKind::Accepted as i32 && r.msg_id == sent.msg_id));
    let size = verify_log(&auditor, &fed.dir().join("audit-carin")).await?;
    ensure!(size >= records.len() as u64, "verified {size} entries of {}", records.len());

    // Client side: the sender's local record of it (over 2 s old by now)
    // goes with `focal purge --older-than 1s`; a dry run only counts it.
    let bins = focal_tests::bins!();
    let nl_fp = fed.fp("nl-fiod@carin");
    let purge = |extra: &[&str]| {
        let mut cmd = nl_fp.cli(&bins);
        cmd.args(["--json", "purge", "--older-than", "1s"]).args(extra);
        cmd
    };
    let run = |mut cmd: std::process::Command| -> Result<serde_json::Value> {
        let out = cmd.output()?;
        ensure!(out.status.success(), "focal purge: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let dry = run(purge(&["--dry-run"]))?;
    assert_eq!((dry["sent"].as_u64(), dry["dry_run"].as_bool()), (Some(1), Some(true)), "{dry}");
    assert_eq!(nl.store().all_sent()?.len(), 1);
    let done = run(purge(&[]))?;
    assert_eq!(done["sent"].as_u64(), Some(1), "{done}");
    assert!(nl.store().all_sent()?.is_empty());
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_copy_is_purged_from_the_outbox_after_retention() -> Result<()> {
    let mut fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("za-afu@arinsa")
        .configure("carin", |n| n.retention = two_seconds())
        .start()
        .await?;
    let nl = fed.client("nl-fiod@carin").await?;
    wait_reachable(&nl, &["za-afu@arinsa"]).await?;
    // Stop CARIN's relay sending to the hub: the copy waits in its outbox.
    fed.add_member("admin@carin", Role::Admin)?;
    let admin = fed.member("admin@carin").client().await?;
    let gfp_relay = "relay.gfp".to_owned();
    pb::admin_client::AdminClient::new(admin.channel())
        .pause_peer(pb::PeerRequest { peer: gfp_relay.clone() })
        .await?;

    let sent = nl.send(&draft(&["za-afu@arinsa"], "Freezing request", "Freeze account 42."), quiet()).await?;
    let r = wait_expired(&nl, sent.msg_id).await?;
    assert_eq!(r.body.subject, "za-afu@arinsa");
    assert!(r.body.detail.contains("outbox"), "{}", r.body.detail);
    assert!(r.body.at_ms >= sent.accepted_at_ms + 2_000);

    fed.add_member("auditor@carin", Role::Auditor)?;
    let auditor = fed.member("auditor@carin").client().await?;
    let records = audit_records(&auditor).await?;
    let purged: Vec<_> = records
        .iter()
        .filter(|r| r.kind == pb::AuditKind::RetentionPurged as i32 && r.msg_id == sent.msg_id)
        .collect();
    assert_eq!(purged.len(), 1, "{records:?}");
    assert_eq!(purged[0].peer, gfp_relay);
    assert!(
        !records.iter().any(|r| r.kind == pb::AuditKind::Forwarded as i32 && r.msg_id == sent.msg_id),
        "a paused peer received it"
    );
    verify_log(&auditor, &fed.dir().join("audit-carin")).await?;
    fed.shutdown().await
}
