//! The relay's audit trail over real mTLS: every accepted, delivered, acked
//! and refused event is a leaf (metadata only, no payload bytes); the
//! sender's ProveAccepted proof verifies against a signed checkpoint; the
//! Audit service is mounted and open to the network's auditors only.

mod common;

use common::*;
use focal_proto::Role;
use focal_proto::audit::{
    LogKey, TreeHead, decode_record, hash_from_bytes, hashes_from_bytes, leaf_hash, verify_inclusion,
};
use focal_proto::pb::{self, audit_client::AuditClient};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_audited_and_provable() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let b = Fp::connect(&pki, "carin", "b", relay.addr).await;
    let auditor = Fp::connect_role(&pki, "carin", Role::Auditor, "aud", relay.addr).await;

    let payload = random_bytes(5_000, 7);
    let (sent, header) = a.send(&["b@carin"], &payload).await.unwrap();
    b.ack(&header, b.delivered(&header)).await.unwrap();
    let mut bad = a.header(&["b@carin"], &payload, |_| {});
    bad.signature[0] ^= 1;
    assert_eq!(a.send_header(bad.clone(), &payload).await.unwrap_err().code(), Code::InvalidArgument);

    // The sender proves its message was accepted.
    let proof = a
        .relay()
        .prove_accepted(pb::ProveAcceptedRequest { msg_id: sent.msg_id.clone(), tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.leaf_index, sent.audit_leaf_index);
    let mut audit = AuditClient::new(auditor.channel.clone());
    let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
    assert_eq!(info.origin, "focal/carin/relay-carin");
    let key = LogKey::parse(&info.verifier_key).unwrap();
    let cp = key.verify_checkpoint(&proof.checkpoint.as_ref().unwrap().note).unwrap();
    let head = TreeHead {
        size: proof.tree_size,
        root: hash_from_bytes(&proof.checkpoint.unwrap().root_hash, "root").unwrap(),
    };
    assert_eq!(cp.head().size, head.size);
    verify_inclusion(
        leaf_hash(&proof.leaf),
        proof.leaf_index,
        &head,
        &hashes_from_bytes(&proof.hashes).unwrap(),
    )
    .unwrap();
    let accepted = decode_record(&proof.leaf).unwrap();
    assert_eq!(accepted.kind(), pb::AuditKind::Accepted);
    assert_eq!((accepted.msg_id.as_slice(), accepted.sender.as_str()), (sent.msg_id.as_slice(), "a@carin"));
    assert_eq!(accepted.peer, "focal://carin/fp/a");

    // Others cannot ask for proofs of a's messages; unknown ids are NOT_FOUND.
    let e = b
        .relay()
        .prove_accepted(pb::ProveAcceptedRequest { msg_id: sent.msg_id.clone(), tree_size: 0 })
        .await;
    assert_eq!(e.unwrap_err().code(), Code::NotFound);
    let e = a
        .relay()
        .prove_accepted(pb::ProveAcceptedRequest { msg_id: sent.msg_id.clone(), tree_size: 10_000 })
        .await;
    assert_eq!(e.unwrap_err().code(), Code::OutOfRange);

    // The whole trail, read by the auditor. The refusal's record is queued
    // without waiting for its commit; the writer takes operations in order,
    // so once a later send is ACCEPTED the refusal is in the log too.
    a.send(&["a@carin"], b"later").await.unwrap();
    let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
    let size = info.checkpoint.unwrap().size;
    let mut s = audit.get_entries(pb::EntriesRequest { start: 0, end: size }).await.unwrap().into_inner();
    let mut leaves = Vec::new();
    while let Some(e) = s.message().await.unwrap() {
        assert!(!contains(&e.leaf, &payload[..64]), "no payload bytes in the log");
        leaves.push(e.leaf);
    }
    let kinds: Vec<_> = leaves.iter().map(|l| decode_record(l).unwrap().kind()).collect();
    use pb::AuditKind as K;
    assert_eq!(kinds, [K::Accepted, K::Delivered, K::Acked, K::Refused, K::Accepted, K::Delivered]);
    let refused = decode_record(&leaves[3]).unwrap();
    assert_eq!(refused.reason(), pb::RefusalReason::BadSignature);
    assert_eq!(refused.detail, "bad signature");

    // A focal point may not read the log.
    let e = AuditClient::new(a.channel.clone()).get_log_info(pb::GetCheckpointRequest { fresh: false }).await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);
    relay.stop().await.unwrap();
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_certificates_are_audited() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    let auditor = Fp::connect_role(&pki, "carin", Role::Auditor, "aud", relay.addr).await;
    let outsider = pki.creds("arinsa", Role::Fp, "x");
    if let Ok(ch) = channel(pki.trust(), &outsider, "carin", relay.addr).await {
        let r = pb::relay_client::RelayClient::new(ch).receipts(pb::ReceiptsRequest { since_ms: 0 }).await;
        assert!(r.is_err());
    }
    // The refusal reaches the log through a queue the client cannot observe:
    // look for it with a deadline.
    let mut audit = AuditClient::new(auditor.channel.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
        let size = info.checkpoint.unwrap().size;
        let mut s = audit.get_entries(pb::EntriesRequest { start: 0, end: size }).await.unwrap().into_inner();
        let mut found = None;
        while let Some(e) = s.message().await.unwrap() {
            let r = decode_record(&e.leaf).unwrap();
            if r.kind() == pb::AuditKind::CertificateRefused {
                found = Some(r);
            }
        }
        if let Some(r) = found {
            assert!(r.peer.contains("arinsa") || r.detail.contains("arinsa"), "{r:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no CERTIFICATE_REFUSED record");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    relay.stop().await.unwrap();
}
