//! Retention on a real store with an explicit clock: undelivered copies
//! purged exactly once `retention.undelivered` has passed (EXPIRED receipts,
//! RETENTION_PURGED records, dedup kept), receipts removed after
//! `retention.delivered`, earlier audit records untouched.

use focal_proto::pb;

use super::super::AckRequest;
use super::super::tests::{addr, kinds, open, receipt, receipt_body, request};
use super::RetentionReport;
use crate::config::retention::RetentionPolicy;

#[tokio::test]
async fn undelivered_then_delivered_retention_purges_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = addr("s@carin");
    // Accepted at 1_000 (the helper's clock), lifetime far beyond retention.
    store
        .accept(request(&store, "s@carin", 1, &["a@carin", "b@carin"], 70_000, 1_000_000).await)
        .await
        .unwrap();
    store.accept(request(&store, "s@carin", 2, &["a@carin"], 10, 1_000_000).await).await.unwrap();
    // Message 2 is acked: nothing of it waits any more.
    let ack = AckRequest {
        recipient: addr("a@carin"),
        sender: s.clone(),
        msg_id: [2; 16],
        receipt: receipt(pb::ReceiptKind::Delivered, 2),
        now_ms: 1_500,
    };
    store.ack(ack).await.unwrap();
    let before = store.audit_records().unwrap();

    let undelivered = RetentionPolicy { undelivered_ms: Some(5_000), delivered_ms: None };
    assert_eq!(store.apply_retention(undelivered, 5_999, 100).await.unwrap(), RetentionReport::default());
    assert!(store.in_mailbox(&addr("a@carin"), &s, &[1; 16]).unwrap());

    let r = store.apply_retention(undelivered, 6_000, 100).await.unwrap();
    assert_eq!(r, RetentionReport { mailbox: 2, ..Default::default() });
    assert!(!store.in_mailbox(&addr("a@carin"), &s, &[1; 16]).unwrap());
    assert!(!store.in_mailbox(&addr("b@carin"), &s, &[1; 16]).unwrap());
    assert!(store.envelope(&s, &[1; 16]).unwrap().is_none(), "payload gone with the last copy");
    assert_eq!(std::fs::read_dir(dir.path().join("payloads")).unwrap().count(), 0);
    assert!(store.dedup(&s, &[1; 16]).unwrap().is_some(), "a replay is still refused until expires_at");
    let expired: Vec<_> = store
        .receipts(&s, 0, 100)
        .unwrap()
        .iter()
        .map(receipt_body)
        .filter(|b| b.kind() == pb::ReceiptKind::Expired)
        .collect();
    assert_eq!(expired.len(), 2, "one EXPIRED receipt per waiting recipient");
    assert!(expired.iter().all(|b| b.signer == "focal://carin/relay/relay-carin" && b.at_ms == 6_000));
    let purged = kinds(&store).iter().filter(|k| **k == pb::AuditKind::RetentionPurged).count();
    assert_eq!(purged, 2);
    // Nothing more is due; a second pass changes nothing.
    assert_eq!(store.apply_retention(undelivered, 60_000, 100).await.unwrap(), RetentionReport::default());

    // Receipts: the DELIVERED one from 1_500 and the two EXPIRED from 6_000.
    let delivered = RetentionPolicy { undelivered_ms: None, delivered_ms: Some(1_000) };
    let r = store.apply_retention(delivered, 2_500, 100).await.unwrap();
    assert_eq!(r.receipts, 1);
    assert_eq!(store.receipts(&s, 0, 100).unwrap().len(), 2);
    assert_eq!(store.apply_retention(delivered, 6_999, 100).await.unwrap().receipts, 0);
    assert_eq!(store.apply_retention(delivered, 7_000, 100).await.unwrap().receipts, 2);
    assert!(store.receipts(&s, 0, 100).unwrap().is_empty());

    // The audit log only grew: every earlier record is still there, unchanged.
    let after = store.audit_records().unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    let summaries: Vec<_> =
        after.iter().filter(|r| r.kind() == pb::AuditKind::RetentionPurged && r.msg_id.is_empty()).collect();
    assert_eq!(summaries.len(), 2, "one summary record per pass that removed receipts");
    store.close().await;
}

#[tokio::test]
async fn pass_limit_reports_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for id in 1..=3u8 {
        store.accept(request(&store, "s@carin", id, &["a@carin"], 10, 1_000_000).await).await.unwrap();
    }
    let p = RetentionPolicy { undelivered_ms: Some(1), delivered_ms: None };
    let r = store.apply_retention(p, 2_000, 2).await.unwrap();
    assert_eq!((r.mailbox, r.more), (2, true));
    let r = store.apply_retention(p, 2_000, 2).await.unwrap();
    assert_eq!((r.mailbox, r.more), (1, false));
    assert_eq!(store.mailbox_len(&addr("a@carin")).unwrap(), 0);
    store.close().await;
}
