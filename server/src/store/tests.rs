//! The store on real sled in temp dirs: mailbox order, dedup and its expiry,
//! receipts, reopening after a drop, the size limit, payload files, the
//! bounded write queue and group commit.

use std::sync::Arc;

use focal_proto::{Address, NetworkId, pb};
use prost::Message;

use super::payload::INLINE_MAX;
use super::*;

pub(super) fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn opts(dir: &std::path::Path, hub: Arc<Hub>) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_owned(),
        network: NetworkId::new("carin").unwrap(),
        relay_uri: "focal://carin/relay/relay-carin".into(),
        audit_origin: "focal/carin/relay-carin".into(),
        checkpoint_interval_secs: 1,
        max_mailbox_messages: 1000,
        max_store_bytes: u64::MAX,
        write_queue_depth: 64,
        hub,
        signer: Arc::new(|body: &pb::ReceiptBody| pb::Receipt {
            signed: Some(pb::SignedBlob {
                body: body.encode_to_vec(),
                signature: b"test".to_vec(),
                signer_cert: vec![],
            }),
        }),
    }
}

pub(super) fn open(dir: &std::path::Path) -> Store {
    Store::open(opts(dir, Arc::new(Hub::new(16)))).unwrap()
}

/// An accept request of `size` payload bytes (the store does no crypto).
pub(super) async fn request(
    store: &Store,
    sender: &str,
    id: u8,
    to: &[&str],
    size: usize,
    expires: i64,
) -> AcceptRequest {
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8 ^ id).collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, &payload).as_ref().to_vec();
    let mut sink = store.payload_sink(size as u64).await.unwrap();
    for chunk in payload.chunks(10_000) {
        sink.write(chunk).await.unwrap();
    }
    let payload = sink.finish(&digest).await.unwrap();
    let recipients: Vec<Address> = to.iter().map(|a| addr(a)).collect();
    AcceptRequest {
        header: pb::EnvelopeHeader {
            context: vec![id; 8],
            payload_sha256: digest,
            payload_size: size as u64,
            ..Default::default()
        },
        sender: addr(sender),
        msg_id: [id; 16],
        all_recipients: recipients.clone(),
        local_recipients: recipients,
        expires_at_ms: expires,
        handling: pb::HandlingCode::H1,
        priority: pb::Priority::Normal,
        from: format!("focal://carin/fp/{}", sender.split('@').next().unwrap()),
        payload,
        now_ms: 1_000,
    }
}

pub(super) fn receipt(kind: pb::ReceiptKind, id: u8) -> pb::Receipt {
    let body = pb::ReceiptBody { version: 1, msg_id: vec![id; 16], kind: kind as i32, ..Default::default() };
    pb::Receipt { signed: Some(pb::SignedBlob { body: body.encode_to_vec(), ..Default::default() }) }
}

pub(super) fn receipt_body(r: &pb::Receipt) -> pb::ReceiptBody {
    pb::ReceiptBody::decode(r.signed.as_ref().unwrap().body.as_slice()).unwrap()
}

async fn read_all(store: &Store, env: &StoredEnvelope, offset: u64) -> Vec<u8> {
    let mut src = store.payload(env, offset).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = src.next_chunk(7_000).await.unwrap() {
        out.extend(c);
    }
    out
}

pub(super) fn kinds(store: &Store) -> Vec<pb::AuditKind> {
    store.audit_records().unwrap().iter().map(|r| r.kind()).collect()
}

#[tokio::test]
async fn mailbox_keeps_order_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = addr("a@carin");
    for id in [3u8, 1, 2] {
        let req = request(&store, "s@carin", id, &["a@carin", "b@carin"], 100, 10_000).await;
        let acc = store.accept(req).await.unwrap();
        assert_eq!(acc.accepted_at_ms, 1_000);
    }
    let page = store.mailbox_page(&a, 0, 100).unwrap();
    let seqs: Vec<u64> = page.iter().map(|m| m.mailbox_seq).collect();
    let ids: Vec<u8> = page.iter().map(|m| m.header.as_ref().unwrap().context[0]).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(ids, [3, 1, 2], "accept order, not msg id order");
    assert_eq!(store.mailbox_page(&a, 1, 1).unwrap()[0].mailbox_seq, 2);
    assert_eq!(store.mailbox_len(&a).unwrap(), 3);
    assert_eq!(store.mailbox_len(&addr("b@carin")).unwrap(), 3);

    let dup = request(&store, "s@carin", 1, &["a@carin"], 10, 10_000).await;
    let e = store.accept(dup).await.unwrap_err();
    assert!(matches!(e, RelayError::Duplicate { .. }), "{e}");
    assert_eq!(store.mailbox_len(&a).unwrap(), 3, "a refused send changes nothing");
    // Another sender may reuse the id.
    store.accept(request(&store, "t@carin", 1, &["a@carin"], 10, 10_000).await).await.unwrap();
    assert_eq!(kinds(&store).iter().filter(|k| **k == pb::AuditKind::Accepted).count(), 4);
    assert_eq!(kinds(&store).iter().filter(|k| **k == pb::AuditKind::Delivered).count(), 4);
    store.close().await;
}

#[tokio::test]
async fn ack_stores_receipt_and_drops_payload_after_last_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b, s) = (addr("a@carin"), addr("b@carin"), addr("s@carin"));
    let size = INLINE_MAX as usize + 5; // a payload file
    let acc = store.accept(request(&store, "s@carin", 9, &["a@carin", "b@carin"], size, 10_000).await).await;
    acc.unwrap();
    let files = || std::fs::read_dir(dir.path().join("payloads")).unwrap().count();
    assert_eq!(files(), 1);
    let env = store.envelope(&s, &[9; 16]).unwrap().unwrap();
    assert_eq!(read_all(&store, &env, 0).await.len(), size);
    assert_eq!(read_all(&store, &env, size as u64 - 3).await.len(), 3, "resumable from an offset");

    let ack = |who: &Address, at| AckRequest {
        recipient: who.clone(),
        sender: s.clone(),
        msg_id: [9; 16],
        receipt: receipt(pb::ReceiptKind::Delivered, 9),
        now_ms: at,
    };
    store.ack(ack(&a, 2_000)).await.unwrap();
    assert!(!store.in_mailbox(&a, &s, &[9; 16]).unwrap());
    assert!(store.in_mailbox(&b, &s, &[9; 16]).unwrap());
    assert_eq!(store.envelope(&s, &[9; 16]).unwrap().unwrap().pending, ["b@carin"]);
    assert_eq!(files(), 1, "b still waits for it");
    let e = store.ack(ack(&a, 2_100)).await.unwrap_err();
    assert!(matches!(e, RelayError::NotInMailbox { .. }), "{e}");

    store.ack(ack(&b, 3_000)).await.unwrap();
    assert!(store.envelope(&s, &[9; 16]).unwrap().is_none());
    assert_eq!(files(), 0, "payload file removed with the last recipient");
    assert!(store.dedup(&s, &[9; 16]).unwrap().is_some(), "dedup stays until expiry");

    let all = store.receipts(&s, 0, 100).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(store.receipts(&s, 2_500, 100).unwrap().len(), 1);
    assert_eq!(store.receipts(&s, 0, 1).unwrap().len(), 1);
    assert!(store.receipts(&a, 0, 100).unwrap().is_empty());
    assert_eq!(kinds(&store).iter().filter(|k| **k == pb::AuditKind::Acked).count(), 2);
    store.close().await;
}

#[tokio::test]
async fn expiry_removes_messages_sends_receipts_and_forgets_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = addr("s@carin");
    store.accept(request(&store, "s@carin", 1, &["a@carin", "b@carin"], 10, 5_000).await).await.unwrap();
    store.accept(request(&store, "s@carin", 2, &["a@carin"], 10, 9_000).await).await.unwrap();
    // Only a remembered id: message 3 was acked before it expired.
    store.accept(request(&store, "s@carin", 3, &["a@carin"], 10, 5_000).await).await.unwrap();
    let r = receipt(pb::ReceiptKind::Delivered, 3);
    let req = AckRequest {
        recipient: addr("a@carin"),
        sender: s.clone(),
        msg_id: [3; 16],
        receipt: r,
        now_ms: 1_500,
    };
    store.ack(req).await.unwrap();

    assert_eq!(store.expire_due(4_999, 100).await.unwrap(), ExpiryReport { expired: 0, scanned: 0 });
    assert_eq!(store.expire_due(5_000, 100).await.unwrap(), ExpiryReport { expired: 1, scanned: 2 });
    assert!(store.envelope(&s, &[1; 16]).unwrap().is_none());
    assert!(store.dedup(&s, &[1; 16]).unwrap().is_none());
    assert!(store.dedup(&s, &[3; 16]).unwrap().is_none());
    assert!(store.dedup(&s, &[2; 16]).unwrap().is_some());
    assert_eq!(store.mailbox_len(&addr("a@carin")).unwrap(), 1);
    assert_eq!(store.mailbox_len(&addr("b@carin")).unwrap(), 0);

    let expired: Vec<_> = store
        .receipts(&s, 0, 100)
        .unwrap()
        .iter()
        .map(receipt_body)
        .filter(|b| b.kind() == pb::ReceiptKind::Expired)
        .collect();
    assert_eq!(expired.len(), 2, "one per recipient still waiting");
    assert_eq!(expired[0].signer, "focal://carin/relay/relay-carin");
    assert_eq!(expired[0].original_sender, "s@carin");
    let mut subjects: Vec<_> = expired.iter().map(|b| b.subject.as_str()).collect();
    subjects.sort();
    assert_eq!(subjects, ["a@carin", "b@carin"]);
    let records = store.audit_records().unwrap();
    let exp: Vec<_> = records.iter().filter(|r| r.kind() == pb::AuditKind::Expired).collect();
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].recipients, ["a@carin", "b@carin"]);

    // Once forgotten the id could be reused (Send refuses it as expired anyway).
    store.accept(request(&store, "s@carin", 1, &["a@carin"], 10, 20_000).await).await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn reopen_after_drop_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let big = INLINE_MAX as usize * 3 + 17;
    {
        let store = open(dir.path());
        store.accept(request(&store, "s@carin", 1, &["a@carin"], 100, 10_000).await).await.unwrap();
        store.accept(request(&store, "s@carin", 2, &["a@carin"], big, 10_000).await).await.unwrap();
        let entry = pb::DirectoryEntry {
            signed: Some(pb::SignedBlob {
                body: pb::DirectoryEntryBody {
                    address: "a@carin".into(),
                    key_serial: 4,
                    ..Default::default()
                }
                .encode_to_vec(),
                ..Default::default()
            }),
            escalation: None,
        };
        store.publish(addr("a@carin"), entry, 4).await.unwrap();
        store.close().await;
    }
    // A stray file (a send that died between file and batch) is removed.
    std::fs::write(dir.path().join("payloads/stray.payload"), b"x").unwrap();
    let store = open(dir.path());
    assert!(!dir.path().join("payloads/stray.payload").exists());
    let (s, a) = (addr("s@carin"), addr("a@carin"));
    let page = store.mailbox_page(&a, 0, 10).unwrap();
    assert_eq!(page.iter().map(|m| m.mailbox_seq).collect::<Vec<_>>(), [1, 2]);
    let env = store.envelope(&s, &[2; 16]).unwrap().unwrap();
    let want: Vec<u8> = (0..big).map(|i| (i % 251) as u8 ^ 2).collect();
    assert_eq!(read_all(&store, &env, 0).await, want);
    assert_eq!(read_all(&store, &store.envelope(&s, &[1; 16]).unwrap().unwrap(), 0).await.len(), 100);
    assert!(store.directory_entry(&a).unwrap().is_some());
    assert!(store.size_bytes() >= big as u64);
    let dup = store.accept(request(&store, "s@carin", 2, &["a@carin"], 10, 10_000).await).await;
    assert!(matches!(dup, Err(RelayError::Duplicate { .. })));
    store.accept(request(&store, "s@carin", 3, &["a@carin"], 10, 10_000).await).await.unwrap();
    assert_eq!(store.mailbox_page(&a, 2, 10).unwrap()[0].mailbox_seq, 3, "sequence continues");
    let leaves = store.audit_records().unwrap();
    assert_eq!(leaves.len(), 6, "2 x (accepted, delivered) before, 1 x after, no gap");

    // A lower key serial does not replace the published entry.
    let stale = pb::DirectoryEntry::default();
    let e = store.publish(a.clone(), stale, 3).await.unwrap_err();
    assert!(matches!(e, RelayError::StaleDirectoryEntry { current: 4, new: 3, .. }), "{e}");
    store.close().await;
}

#[tokio::test]
async fn size_limit_and_mailbox_limit_refuse_new_sends_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), Arc::new(Hub::new(4)));
    o.max_mailbox_messages = 2;
    o.max_store_bytes = 64 * 1024 * 1024;
    let store = Store::open(o).unwrap();
    store.check_space(1_000).unwrap();
    let e = store.check_space(u64::MAX / 2).unwrap_err();
    assert!(matches!(e, RelayError::StoreFull { .. }), "{e}");
    assert_eq!(tonic::Status::from(e).code(), tonic::Code::ResourceExhausted);

    for id in 1..=2 {
        store.accept(request(&store, "s@carin", id, &["a@carin"], 10, 10_000).await).await.unwrap();
    }
    let e = store.accept(request(&store, "s@carin", 3, &["b@carin", "a@carin"], 10, 10_000).await).await;
    let e = e.unwrap_err();
    assert!(e.to_string().contains("mailbox of a@carin is full"), "{e}");
    assert_eq!(store.mailbox_len(&addr("b@carin")).unwrap(), 0, "all or nothing");
    assert_eq!(store.mailbox_len(&addr("a@carin")).unwrap(), 2);
    store.close().await;
}

#[tokio::test]
async fn payloads_being_received_hold_their_room_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), Arc::new(Hub::new(4)));
    o.max_store_bytes = 64 * 1024 * 1024;
    let store = Store::open(o).unwrap();
    let used = store.size_bytes();
    let room = 64 * 1024 * 1024 - used;
    // Two uploads announced at once: each passes the early check alone,
    // but only the first gets the room; the second is refused at once.
    store.check_space(room / 2 + 1).unwrap();
    let first = store.payload_sink(room / 2 + 1).await.unwrap();
    let e = store.check_space(room / 2 + 1).unwrap_err();
    assert!(matches!(e, RelayError::StoreFull { .. }), "{e}");
    let Err(e) = store.payload_sink(room / 2 + 1).await else { panic!("no room left") };
    assert!(matches!(e, RelayError::StoreFull { .. }), "{e}");
    assert_eq!(store.size_bytes(), used, "a reservation is not bytes on disk");
    // An abandoned upload gives its room back.
    drop(first);
    let second = store.payload_sink(room / 2 + 1).await.unwrap();
    drop(second);
    store.payload_sink(room).await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn full_queue_is_an_error_and_group_commit_serves_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), Arc::new(Hub::new(4)));
    o.write_queue_depth = 1;
    // The writer (a thread of its own) locks the relay core while it stages
    // a batch: holding the core here holds the writer, so once it has taken
    // at most one operation, the queue (depth 1) takes one more and every
    // later one is refused at once.
    let core = Arc::new(std::sync::Mutex::new(test_core()));
    let store = Store::open_with_core(o, Some(core.clone())).unwrap();
    let held = core.lock().unwrap();
    let mut queued = Vec::new();
    let mut refused = 0;
    for i in 0..5 {
        // Poll each once: it is queued (then waits) or refused at once.
        let mut f = Box::pin(store.expire_due(i, 1));
        match futures::FutureExt::now_or_never(f.as_mut()) {
            Some(r) => {
                assert!(matches!(r, Err(RelayError::QueueFull { capacity: 1 })), "{r:?}");
                refused += 1;
            }
            None => queued.push(f),
        }
    }
    assert!(refused >= 3, "at most two of five fit (one taken by the writer, one queued): {refused} refused");
    drop(held);
    for f in queued {
        f.await.expect("a queued operation completes once the writer runs again");
    }
    store.close().await;

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut reqs = Vec::new();
    for id in 0..40u8 {
        reqs.push(request(&store, "s@carin", id, &["a@carin"], 50, 10_000).await);
    }
    let results = futures::future::join_all(reqs.into_iter().map(|r| store.accept(r))).await;
    let mut leaves: Vec<u64> = results.into_iter().map(|r| r.unwrap().leaf_index).collect();
    leaves.sort();
    leaves.dedup();
    assert_eq!(leaves.len(), 40);
    assert_eq!(store.mailbox_len(&addr("a@carin")).unwrap(), 40);
    store.close().await;
    let e = store.expire_due(0, 1).await.unwrap_err();
    assert!(matches!(e, RelayError::StoreClosed), "{e}");
}

#[tokio::test]
async fn live_events_follow_commits() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Arc::new(Hub::new(8));
    let store = Store::open(opts(dir.path(), hub.clone())).unwrap();
    let mut a = hub.subscribe("a@carin");
    let mut s = hub.subscribe("s@carin");
    store.accept(request(&store, "s@carin", 1, &["a@carin"], 10, 10_000).await).await.unwrap();
    match a.try_recv().unwrap() {
        crate::hub::HubEvent::Message(m) => assert_eq!(m.mailbox_seq, 1),
        other => panic!("{other:?}"),
    }
    let r = receipt(pb::ReceiptKind::Delivered, 1);
    let req = AckRequest {
        recipient: addr("a@carin"),
        sender: addr("s@carin"),
        msg_id: [1; 16],
        receipt: r,
        now_ms: 5,
    };
    store.ack(req).await.unwrap();
    assert!(matches!(s.try_recv().unwrap(), crate::hub::HubEvent::Receipt(_)));
    store.close().await;
}

#[tokio::test]
async fn bad_payloads_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let files = || std::fs::read_dir(dir.path().join("payloads")).unwrap().count();
    let size = INLINE_MAX + 10;
    let mut sink = store.payload_sink(size).await.unwrap();
    sink.write(&vec![0; size as usize]).await.unwrap();
    assert!(matches!(sink.write(b"x").await, Err(payload::PayloadError::TooLong { .. })));
    let e = sink.finish(&[0; 32]).await.unwrap_err();
    assert_eq!(e.to_string(), "payload digest mismatch");
    assert_eq!(files(), 0);
    let mut sink = store.payload_sink(size).await.unwrap();
    sink.write(b"short").await.unwrap();
    let e = sink.finish(&[0; 32]).await.unwrap_err();
    assert!(e.to_string().contains("header says 65546 bytes, received 5"), "{e}");
    assert_eq!(files(), 0);
    // A sink dropped mid-stream (client went away) leaves nothing either.
    let mut sink = store.payload_sink(size).await.unwrap();
    sink.write(b"part").await.unwrap();
    drop(sink);
    assert_eq!(files(), 0);
    store.close().await;
}

#[tokio::test]
async fn a_failed_fsync_keeps_the_payload_files_of_a_batch_that_may_be_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = addr("s@carin");
    let size = INLINE_MAX as usize + 5; // a payload file
    let req = request(&store, "s@carin", 7, &["a@carin"], size, 10_000).await;
    // sled's flush succeeds (the batch is on disk), the fsync after it fails.
    store.durable_files().fail_next_sync();
    let e = store.accept(req).await.unwrap_err();
    assert!(e.to_string().contains("fsync failed"), "{e}");
    store.close().await;
    drop(store);
    assert_eq!(std::fs::read_dir(dir.path().join("payloads")).unwrap().count(), 1, "file kept");

    // The batch did reach the disk: reopened, the store serves the envelope
    // and its payload (the sweep at open removes only unreferenced files).
    let store = open(dir.path());
    let env = store.envelope(&s, &[7; 16]).unwrap().expect("the batch is durable");
    assert_eq!(read_all(&store, &env, 0).await.len(), size);
    store.close().await;
}

#[tokio::test]
async fn the_durable_barrier_vouches_only_for_fsynced_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = addr("s@carin");
    store.accept(request(&store, "s@carin", 1, &["a@carin"], 10, 10_000).await).await.unwrap();
    store.durable_barrier().await.expect("the first batch is durable");

    // The second batch is applied (its dedup record is in the tree, where
    // a retry would find it) but its fsync fails: a DUPLICATE answer drawn
    // from the tree must not follow, and the barrier says so.
    store.durable_files().fail_next_sync();
    let req = request(&store, "s@carin", 2, &["a@carin"], 10, 10_000).await;
    assert!(store.accept(req).await.is_err());
    assert!(store.dedup(&s, &[2; 16]).unwrap().is_some(), "applied, visible in the tree");
    // The failed store refuses it, whether it sees the queue still open
    // (the commit error) or already closed.
    let e = store.durable_barrier().await.expect_err("not known to be durable");
    assert!(matches!(e, RelayError::Commit(_) | RelayError::StoreClosed), "{e}");
    store.close().await;
}

#[tokio::test]
async fn the_audit_log_serves_only_leaves_the_writer_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let log = store.audit_log().clone();
    store.accept(request(&store, "s@carin", 1, &["a@carin"], 10, 10_000).await).await.unwrap();
    let durable = log.size();
    assert!(durable > 0);
    assert_eq!(log.durable_size(), durable, "answered after the fsync: durable");
    log.inclusion_proof(0, durable).unwrap();

    // Applied (committed) but its fsync failed: a crash could replace these
    // leaves, so no proof may cover them.
    store.durable_files().fail_next_sync();
    let req = request(&store, "s@carin", 2, &["a@carin"], 10, 10_000).await;
    assert!(store.accept(req).await.is_err());
    assert!(log.size() > durable, "the batch's leaves are committed");
    assert_eq!(log.durable_size(), durable);
    let e = log.inclusion_proof(0, log.size()).unwrap_err().to_string();
    assert!(e.contains(&format!("durable size {durable}")), "{e}");
    assert!(log.consistency_proof(1, log.size()).is_err());
    // Nor may a fresh checkpoint sign them: its own fsync may succeed where
    // the writer's failed (a write-back error is reported only once).
    let e = log.fresh_checkpoint(crate::rpc::now_ms()).await.unwrap_err().to_string();
    assert!(e.contains("no checkpoint is signed"), "{e}");
    assert_eq!(log.durable_size(), durable);
    store.close().await;
}

/// The core lets go of an acked outbox item before the store deletes it,
/// so that deletion (with its FORWARDED record) must not be refused by a
/// full write queue: it waits for room. (It used to fail with QueueFull,
/// leaving the record on disk and the message unaudited until a restart.)
#[tokio::test]
async fn an_acked_outbox_item_is_deleted_even_when_the_write_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), Arc::new(Hub::new(4)));
    o.write_queue_depth = 1;
    let core = Arc::new(std::sync::Mutex::new(test_core()));
    let store = Store::open_with_core(o, Some(core.clone())).unwrap();
    let now = 1_000_000;
    let routed = store.route(to_arinsa(&store, 7, 12, now).await).await.unwrap();
    assert!(matches!(routed, fed::RouteOutcome::Handled { .. }), "{routed:?}");

    // The item goes out and the hub acks it; the core forgets it at once.
    let (seq, deleting, queued) = {
        let mut held = core.lock().unwrap();
        let outbox = held.outbox_mut("relay-gfp").expect("an outbox for the hub");
        outbox.handle_connected(now);
        let t = outbox.poll_transmit(now).expect("the routed copy is ready once durable");
        assert!(store.outbox_record("relay-gfp", t.seq).unwrap().is_some());
        let removed = outbox.handle_ack(&t.id, now).expect("acked");
        // Holding the core holds the writer: fill the queue (depth 1).
        let mut queued = Vec::new();
        loop {
            let mut f = Box::pin(store.expire_due(now, 1));
            match futures::FutureExt::now_or_never(f.as_mut()) {
                Some(r) => {
                    assert!(matches!(r, Err(RelayError::QueueFull { capacity: 1 })), "{r:?}");
                    break;
                }
                None => queued.push(f),
            }
        }
        let deleting = store
            .outbox_done("relay-gfp", removed, pb::TransferStatus::Stored, now)
            .expect("bookkeeping the core has done is not refused by a full queue");
        (t.seq, deleting, queued)
    };
    deleting.await.expect("the deletion is applied once the queue has room");
    for f in queued {
        f.await.unwrap();
    }
    assert!(store.outbox_record("relay-gfp", seq).unwrap().is_none(), "the acked copy is deleted");
    assert!(kinds(&store).contains(&pb::AuditKind::Forwarded), "{:?}", kinds(&store));
    store.close().await;
}

/// A message from s@carin to x@arinsa with a payload of `size` bytes, as
/// the Send RPC routes it (CARIN queues it for the hub).
async fn to_arinsa(store: &Store, id: u8, size: usize, now: i64) -> fed::RouteRequest {
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8 ^ id).collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, &payload).as_ref().to_vec();
    let mut sink = store.payload_sink(size as u64).await.unwrap();
    sink.write(&payload).await.unwrap();
    let header = pb::EnvelopeHeader {
        payload_sha256: digest.clone(),
        payload_size: size as u64,
        ..Default::default()
    };
    let input = crate::core::routing::RouteInput {
        msg_id: [id; 16],
        sender: addr("s@carin"),
        recipients: vec![addr("x@arinsa")],
        deliver_to: vec![],
        hops: vec![],
        created_at_ms: now,
        expires_at_ms: now + 3_600_000,
        priority: pb::Priority::Normal,
        handling: pb::HandlingCode::H1,
        payload_size: size as u64,
    };
    fed::RouteRequest {
        header,
        input,
        all_recipients: vec![addr("x@arinsa")],
        origin: crate::core::relay::Origin::Local,
        from: "focal://carin/fp/s".into(),
        payload: sink.finish(&digest).await.unwrap(),
        now_ms: now,
        stream: 0,
    }
}

/// A relay core for a carin relay with a default route to the GFP hub.
fn test_core() -> crate::core::RelayCore {
    use crate::config::{Limits, PolicyConfig};
    use crate::core::policy::Policy;
    use crate::core::routing::RoutingTable;
    let mut t = RoutingTable::new("relay-carin", focal_proto::NetworkId::new("carin").unwrap()).unwrap();
    t.add_peer("relay-gfp", focal_proto::NetworkId::new("gfp").unwrap(), true).unwrap();
    let p = Policy::new(t.network().clone(), &PolicyConfig::default(), &Limits::default()).unwrap();
    crate::core::RelayCore::new(t, p, crate::core::relay::CoreSettings::default(), 1, 0)
}
