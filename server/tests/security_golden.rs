//! Writes the golden audit log fixture `proto/tests/fixtures/audit_v1/`: a
//! real relay (this version) logs a small history (accepted, delivered,
//! acked, a refused send, a refused certificate, a second message), then an
//! auditor fetches every entry, an early and a final signed checkpoint, the
//! consistency proof between them and the log's verifier key.
//!
//! Run once, by hand: `cargo test -p focal-relay --test security_golden --
//! --ignored`. It refuses to overwrite existing files: the fixture is frozen
//! and `proto/tests/audit_golden.rs` checks that every later version still
//! verifies it.

mod common;
mod security_support;

use std::fmt::Write as _;

use common::*;
use focal_proto::Role;
use focal_proto::pb::{self, audit_client::AuditClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the frozen fixture once; see the module docs"]
async fn write_golden_audit_log() {
    init();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/fixtures/audit_v1");
    assert!(!dir.exists(), "{} exists: the fixture is frozen, do not regenerate it", dir.display());

    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    let a = Fp::connect(&pki, "carin", "nl-fiod", relay.addr).await;
    let b = Fp::connect(&pki, "carin", "be-oca", relay.addr).await;
    let auditor = Fp::connect_role(&pki, "carin", Role::Auditor, "aud", relay.addr).await;
    let mut audit = AuditClient::new(auditor.channel.clone());

    let payload = random_bytes(4_000, 11);
    let (_, h1) = a.send(&["be-oca@carin"], &payload).await.unwrap();
    let early = audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
    let early = early.checkpoint.unwrap();
    b.ack(&h1, b.delivered(&h1)).await.unwrap();
    let mut bad = a.header(&["be-oca@carin"], &payload, |_| {});
    bad.signature[0] ^= 1;
    a.send_header(bad, &payload).await.unwrap_err();
    let outsider = pki.creds("arinsa", Role::Fp, "za-afu");
    if let Ok(ch) = channel(pki.trust(), &outsider, "carin", relay.addr).await {
        pb::relay_client::RelayClient::new(ch)
            .receipts(pb::ReceiptsRequest { since_ms: 0 })
            .await
            .unwrap_err();
    }
    security_support::wait_refused(&auditor.channel, "outsider", |r| r.peer.contains("arinsa")).await;
    a.send(&["be-oca@carin", "nl-fiod@carin"], b"second").await.unwrap();

    let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
    let last = info.checkpoint.clone().unwrap();
    let mut s =
        audit.get_entries(pb::EntriesRequest { start: 0, end: last.size }).await.unwrap().into_inner();
    let mut entries = String::new();
    while let Some(e) = s.message().await.unwrap() {
        writeln!(entries, "{}", hex::encode(&e.leaf)).unwrap();
    }
    let proof = audit
        .get_consistency_proof(pb::ConsistencyProofRequest { old_size: early.size, new_size: last.size })
        .await
        .unwrap()
        .into_inner();
    let proof_hex: String = proof.hashes.iter().map(|h| format!("{}\n", hex::encode(h))).collect();
    relay.stop().await.unwrap();

    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("entries.hex"), entries).unwrap();
    std::fs::write(dir.join("checkpoint.note"), &last.note).unwrap();
    std::fs::write(dir.join("checkpoint_early.note"), &early.note).unwrap();
    std::fs::write(dir.join("consistency_proof.hex"), proof_hex).unwrap();
    std::fs::write(dir.join("verifier_key.txt"), format!("{}\n", info.verifier_key)).unwrap();
    println!("wrote {} ({} entries, early checkpoint at {})", dir.display(), last.size, early.size);
}
