//! Network broadcast: `*@arinsa` from a CARIN member expands through the
//! directory (ListMembers answered across the GFP hub) and reaches each of
//! ARINSA's 17 members exactly once, sealed once to all of them.

use anyhow::Result;
use focal_tests::Federation;

use crate::{addr, draft, quiet, wait_and_read, wait_reachable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_each_of_17_members_once() -> Result<()> {
    let members: Vec<String> = (1..=17).map(|i| format!("m{i:02}@arinsa")).collect();
    let mut b = Federation::builder().hub("gfp").focal_point("nl-fiod@carin");
    for m in &members {
        b = b.focal_point(m);
    }
    let fed = b.start().await?;
    let nl = fed.client("nl-fiod@carin").await?;
    wait_reachable(&nl, &["m01@arinsa"]).await?;
    let sent = nl.send(&draft(&["*@arinsa"], "To all ARINSA members", "Query."), quiet()).await?;
    let rec = nl.store().sent(&hex::encode(sent.msg_id))?.expect("sent record");
    assert_eq!(rec.to, members, "sealed to every member, sorted");
    for m in &members {
        let c = fed.client(m).await?;
        let got = wait_and_read(&c, sent.msg_id, "nl-fiod@carin").await?;
        let ctx = focal_proto::envelope::parse_context(&got.info.header.context)?;
        assert_eq!(ctx.ctx.broadcast_network, "arinsa");
        assert_eq!(got.info.recipients.len(), 17);
        assert!(got.info.recipients.contains(&addr(m)));
        // Exactly once in the mailbox.
        let waiting = c.list_inbox().await?;
        assert_eq!(waiting.iter().filter(|w| w.msg_id == sent.msg_id).count(), 1, "{m}");
        assert_eq!(waiting.len(), 1, "{m}");
    }
    // A broadcast cannot be mixed with other recipients.
    let e = nl.send(&draft(&["*@arinsa", "m01@arinsa"], "x", "y"), quiet()).await.unwrap_err();
    assert!(e.to_string().contains("whole network"), "{e}");
    Ok(())
}
