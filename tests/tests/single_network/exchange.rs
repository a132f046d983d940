//! Messages between focal points of one network: send and read with an
//! attachment, several recipients, live push, ack and the DELIVERED receipt
//! at the sender, reply threading.

use anyhow::Result;
use focal_client::{InboxItem, ReadOptions};
use focal_tests::Federation;
use futures::StreamExt;

use crate::{PROMPT, addr, draft, inbox_ids, quiet, wait_for_message};

async fn carin(members: &[&str]) -> Result<Federation> {
    let mut b = Federation::builder().network("carin");
    for m in members {
        b = b.focal_point(m);
    }
    b.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_between_two_focal_points() -> Result<()> {
    let fed = carin(&["nl-fiod@carin", "be-ocsc@carin"]).await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;

    let att = fed.dir().join("ledger.csv");
    std::fs::write(&att, b"account;amount\nNL91ABNA0417164300;1000000\n")?;
    let mut d =
        draft(&["be-ocsc@carin"], "Asset tracing: Blue Yacht BV", "Please check the attached accounts.");
    d.case_ref = "CARIN-2026-0042".into();
    d.attachments = vec![att.clone()];
    let accepted = a.send(&d, quiet()).await?;
    assert!(accepted.accepted_at_ms > 0);
    assert!(!accepted.via_retry);

    let waiting = b.list_inbox().await?;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].msg_id, accepted.msg_id);
    assert_eq!(waiting[0].sender, addr("nl-fiod@carin"));

    let out = fed.dir().join("be-out");
    let opened = b
        .read(&waiting[0].reference(), &ReadOptions { out_dir: Some(out.clone()), overwrite: false }, quiet())
        .await?;
    assert_eq!(opened.content.subject, "Asset tracing: Blue Yacht BV");
    assert_eq!(opened.content.body, "Please check the attached accounts.");
    assert_eq!(opened.content.case_ref, "CARIN-2026-0042");
    assert_eq!(opened.attachments.len(), 1);
    let saved = opened.attachments[0].path.clone().expect("saved");
    assert_eq!(saved, out.join("ledger.csv"));
    assert_eq!(std::fs::read(&saved)?, std::fs::read(&att)?);
    // No partial files left behind.
    assert_eq!(std::fs::read_dir(&out)?.count(), 1);

    // Both local stores remember the exchange (metadata only).
    let sent = a.store().sent(&hex::encode(accepted.msg_id))?.expect("sent record");
    assert_eq!(sent.to, vec!["be-ocsc@carin".to_string()]);
    assert_eq!(sent.attachments, vec!["ledger.csv".to_string()]);
    let recv = b.store().received(&hex::encode(accepted.msg_id), "nl-fiod@carin")?.expect("received record");
    assert_eq!(recv.case_ref, "CARIN-2026-0042");
    // The sender's own mailbox stays empty.
    assert!(inbox_ids(&a).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_recipient_message_reaches_each_once() -> Result<()> {
    let fed = carin(&["nl-fiod@carin", "be-ocsc@carin", "de-bka@carin", "fr-piac@carin"]).await?;
    let a = fed.client("nl-fiod@carin").await?;
    let accepted = a
        .send(
            &draft(&["be-ocsc@carin", "de-bka@carin", "fr-piac@carin"], "Joint query", "To all three."),
            quiet(),
        )
        .await?;
    for who in ["be-ocsc@carin", "de-bka@carin", "fr-piac@carin"] {
        let c = fed.client(who).await?;
        let waiting = c.list_inbox().await?;
        assert_eq!(waiting.len(), 1, "{who}");
        assert_eq!(waiting[0].msg_id, accepted.msg_id);
        let mut want = vec![addr("be-ocsc@carin"), addr("de-bka@carin"), addr("fr-piac@carin")];
        want.sort();
        assert_eq!(waiting[0].recipients, want);
        let opened = c.read(&waiting[0].reference(), &ReadOptions::default(), quiet()).await?;
        assert_eq!(opened.content.body, "To all three.");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_push_to_a_subscribed_inbox() -> Result<()> {
    let fed = carin(&["nl-fiod@carin", "be-ocsc@carin"]).await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;
    let first = a.send(&draft(&["be-ocsc@carin"], "waiting", "sent before subscribing"), quiet()).await?;

    let mut live = b.inbox(true).await?;
    // Replay first: the waiting message, then the marker.
    let mut replayed = Vec::new();
    tokio::time::timeout(PROMPT, async {
        while let Some(item) = live.next().await {
            match item? {
                InboxItem::Message(m) => replayed.push(m.msg_id),
                InboxItem::ReplayDone => return anyhow::Ok(()),
                _ => {}
            }
        }
        anyhow::bail!("inbox stream ended during replay")
    })
    .await??;
    assert_eq!(replayed, vec![first.msg_id]);

    for i in 0..3 {
        let sent = a.send(&draft(&["be-ocsc@carin"], "live", &format!("pushed {i}")), quiet()).await?;
        let got = wait_for_message(&mut live, sent.msg_id).await?;
        assert_eq!(got.sender, addr("nl-fiod@carin"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_then_delivered_receipt_at_the_sender() -> Result<()> {
    let fed = carin(&["nl-fiod@carin", "be-ocsc@carin"]).await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;
    let mut a_live = a.inbox(true).await?;
    let accepted = a.send(&draft(&["be-ocsc@carin"], "please ack", "body"), quiet()).await?;

    let waiting = b.list_inbox().await?;
    let opened = b.read(&waiting[0].reference(), &ReadOptions::default(), quiet()).await?;
    b.ack_ref(&waiting[0].reference()).await?;
    assert!(inbox_ids(&b).await?.is_empty(), "acked message must leave the mailbox");
    assert!(b.store().received(&hex::encode(accepted.msg_id), "nl-fiod@carin")?.expect("record").acked);

    // The receipt is pushed to the sender's live inbox...
    let receipt = tokio::time::timeout(PROMPT, async {
        while let Some(item) = a_live.next().await {
            if let InboxItem::Receipt(r) = item?
                && r.body.msg_id == accepted.msg_id
            {
                return anyhow::Ok(r);
            }
        }
        anyhow::bail!("inbox stream ended")
    })
    .await??;
    assert_eq!(receipt.kind(), "DELIVERED");
    assert_eq!(receipt.problem, None, "receipt must verify");
    assert_eq!(receipt.body.subject, "be-ocsc@carin");
    assert_eq!(receipt.body.original_sender, "nl-fiod@carin");
    assert_eq!(receipt.body.payload_sha256, opened.info.payload_sha256);

    // ...and listed by Receipts, verified and kept locally.
    let all = a.receipts(0).await?;
    let r = all.iter().find(|r| r.body.msg_id == accepted.msg_id).expect("receipt listed");
    assert_eq!(r.kind(), "DELIVERED");
    assert!(r.problem.is_none());
    assert!(a.store().all_receipts()?.iter().any(|k| k.msg_id == hex::encode(accepted.msg_id)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_carries_case_reference_and_thread() -> Result<()> {
    let fed = carin(&["nl-fiod@carin", "be-ocsc@carin"]).await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;
    let mut d = draft(&["be-ocsc@carin"], "Freezing request", "Freeze account X.");
    d.case_ref = "C-7".into();
    d.handling = focal_proto::pb::HandlingCode::H2;
    let original = a.send(&d, quiet()).await?;
    let m = b.list_inbox().await?.remove(0);
    b.read(&m.reference(), &ReadOptions::default(), quiet()).await?;

    let mut reply = draft(&["nl-fiod@carin"], "Re: Freezing request", "Frozen.");
    reply.case_ref = "C-7".into();
    reply.kind = focal_proto::pb::MessageKind::Response;
    reply.reply_to = Some(m.reference());
    let sent = b.send(&reply, quiet()).await?;

    let got = a.list_inbox().await?.remove(0);
    assert_eq!(got.msg_id, sent.msg_id);
    let opened = a.read(&got.reference(), &ReadOptions::default(), quiet()).await?;
    assert_eq!(opened.content.reply_to_msg_id, original.msg_id.to_vec());
    assert_eq!(opened.content.reply_to_sender, "nl-fiod@carin");
    assert_eq!(opened.content.case_ref, "C-7");
    Ok(())
}

/// Records the phases a send reports and the last `done` of each.
#[derive(Default)]
struct Phases(std::sync::Mutex<Vec<(&'static str, u64, u64)>>);

impl focal_client::progress::Progress for Phases {
    fn start(&self, phase: &'static str, total: u64) {
        self.0.lock().unwrap().push((phase, total, 0));
    }
    fn advance(&self, _: u64, done: u64) {
        if let Some(last) = self.0.lock().unwrap().last_mut() {
            last.2 = done;
        }
    }
    fn finish(&self) {}
}

/// A send reports sealing, then the upload counted as gRPC takes the
/// chunks (to the payload's size), then `storing` (the relay checking and
/// storing it) until ACCEPTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_progress_runs_from_sealing_to_storing() -> Result<()> {
    let fed = carin(&["nl-fiod@carin", "be-ocsc@carin"]).await?;
    let a = fed.client("nl-fiod@carin").await?;
    let att = fed.dir().join("statements.bin");
    std::fs::write(&att, vec![7u8; 3 << 20])?;
    let mut d = draft(&["be-ocsc@carin"], "statements", "three months");
    d.attachments = vec![att];
    let phases = std::sync::Arc::new(Phases::default());
    a.send(&d, phases.clone()).await?;
    let seen = phases.0.lock().unwrap().clone();
    let names: Vec<&str> = seen.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(names, ["sealing", "sending", "storing"], "{seen:?}");
    let (_, total, done) = seen[1];
    assert!(total > 3 << 20 && done == total, "upload counted to its end: {seen:?}");
    assert_eq!((seen[2].1, seen[2].2), (0, 0));
    fed.shutdown().await
}
