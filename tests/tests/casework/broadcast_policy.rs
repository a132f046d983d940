//! Per-network broadcast policy through real relays: CARIN lets only two
//! of its members broadcast to other networks (`broadcast.allow_send`), and
//! ARINSA accepts broadcasts only from `ok@carin` (`broadcast.allow_from`).
//! An allowed broadcast reaches every member; one ARINSA does not allow is
//! refused there (REFUSED receipts signed by ARINSA's relay, audited); a
//! member CARIN does not allow is refused at once (PERMISSION_DENIED naming
//! the rule).

use anyhow::Result;
use focal_proto::{Role, pb};
use focal_tests::Federation;

use crate::escalation::{reconfigure, wait_receipt};
use crate::{audit_records, draft, quiet, wait_and_read, wait_reachable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_allowed_refused_by_the_recipient_network_and_by_the_sender_network() -> Result<()> {
    let mut fed = Federation::builder()
        .hub("gfp")
        .focal_point("ok@carin")
        .focal_point("blocked@carin")
        .focal_point("nosend@carin")
        .focal_point("m1@arinsa")
        .focal_point("m2@arinsa")
        .start()
        .await?;
    fed.add_member("audit@arinsa", Role::Auditor)?;
    reconfigure(&mut fed, "carin", |c| {
        c.broadcast.allow_send = vec!["ok@carin".into(), "blocked@carin".into()];
    })
    .await?;
    reconfigure(&mut fed, "arinsa", |c| c.broadcast.allow_from = vec!["ok@carin".into()]).await?;
    let ok = fed.client("ok@carin").await?;
    let blocked = fed.client("blocked@carin").await?;
    let nosend = fed.client("nosend@carin").await?;
    wait_reachable(&ok, &["m1@arinsa", "m2@arinsa"]).await?;
    let m1 = fed.client("m1@arinsa").await?;
    let m2 = fed.client("m2@arinsa").await?;

    // Allowed: every member gets it.
    let sent = ok.send(&draft(&["*@arinsa"], "Query to all", "Who knows X?"), quiet()).await?;
    for m in [&m1, &m2] {
        wait_and_read(m, sent.msg_id, "ok@carin").await?;
    }

    // ARINSA does not allow blocked@carin: REFUSED per member, audited there.
    let sent = blocked.send(&draft(&["*@arinsa"], "Query to all", "Who knows Y?"), quiet()).await?;
    for _ in 0..2 {
        let r = wait_receipt(&blocked, sent.msg_id, "REFUSED").await?;
        assert_eq!(r.problem, None);
        assert_eq!(r.body.reason, pb::RefusalReason::Policy as i32);
        assert!(r.body.detail.contains("broadcast.allow_from"), "{}", r.body.detail);
        assert!(r.body.signer.contains("arinsa"), "{}", r.body.signer);
    }
    crate::urgent::until("both REFUSED receipts", crate::PROMPT, || async {
        let all = blocked.receipts(0).await?;
        Ok(all.iter().filter(|r| r.body.msg_id == sent.msg_id && r.kind() == "REFUSED").count() == 2)
    })
    .await?;
    let auditor = fed.member("audit@arinsa").client().await?;
    let refused: Vec<_> = audit_records(&auditor)
        .await?
        .into_iter()
        .filter(|r| r.msg_id == sent.msg_id && r.kind == pb::AuditKind::Refused as i32)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|r| r.detail.contains("broadcast.allow_from")));
    for m in [&m1, &m2] {
        assert!(m.list_inbox().await?.iter().all(|w| w.msg_id != sent.msg_id));
    }

    // CARIN does not let nosend@carin broadcast: refused at its own relay.
    let e = nosend.send(&draft(&["*@arinsa"], "Query to all", "Z?"), quiet()).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("broadcast.allow_send"), "{text}");
    assert!(text.contains("PermissionDenied") || text.to_lowercase().contains("permission"), "{text}");
    // ... but it may still write to a member directly.
    nosend.send(&draft(&["m1@arinsa"], "Direct", "fine"), quiet()).await?;
    fed.shutdown().await
}
