//! The golden audit log (`fixtures/audit_v1/`, written once by a real relay
//! of the first version; see `fixtures/README.md`) must verify with every
//! later version: entries against the signed checkpoint, the early
//! checkpoint extended by the final one (with and without the stored
//! consistency proof), and every leaf a valid record of the kinds logged.
//! A changed leaf or a foreign key must still fail.

use focal_proto::audit::{LogKey, decode_record, hash_from_bytes, verify_consistency, verify_log};
use focal_proto::pb;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/audit_v1/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn hex_lines(name: &str) -> Vec<Vec<u8>> {
    read(name).lines().map(|l| hex::decode(l).unwrap()).collect()
}

#[test]
fn golden_audit_log_v1_still_verifies() {
    let key = LogKey::parse(read("verifier_key.txt").trim()).unwrap();
    assert_eq!(key.name(), "focal/carin/relay-carin");
    let entries = hex_lines("entries.hex");
    let note = read("checkpoint.note");
    let early_note = read("checkpoint_early.note");
    let proof: Vec<_> = hex_lines("consistency_proof.hex")
        .iter()
        .map(|h| hash_from_bytes(h, "consistency proof").unwrap())
        .collect();

    let early = key.verify_checkpoint(&early_note).unwrap().head();
    let verified = verify_log(entries.iter().map(Vec::as_slice), &note, &key, None, None).unwrap();
    let head = verified.checkpoint.head();
    assert_eq!(head.size, entries.len() as u64);
    verify_log(entries.iter().map(Vec::as_slice), &note, &key, Some(&early), Some(&proof)).unwrap();
    verify_consistency(&early, &head, &proof).unwrap();

    use pb::AuditKind as K;
    let kinds: Vec<K> = entries.iter().map(|l| decode_record(l).unwrap().kind()).collect();
    assert_eq!(kinds[..4], [K::Accepted, K::Delivered, K::Acked, K::Refused]);
    assert!(kinds.contains(&K::CertificateRefused), "{kinds:?}");
    let refused = decode_record(&entries[3]).unwrap();
    assert_eq!(refused.reason(), pb::RefusalReason::BadSignature);
    let first = decode_record(&entries[0]).unwrap();
    assert_eq!(
        (first.sender.as_str(), first.recipients.as_slice()),
        ("nl-fiod@carin", &["be-oca@carin".to_string()][..])
    );
}

#[test]
fn golden_audit_log_v1_detects_tampering() {
    let key = LogKey::parse(read("verifier_key.txt").trim()).unwrap();
    let note = read("checkpoint.note");
    let mut entries = hex_lines("entries.hex");
    let last = entries.last_mut().unwrap();
    let n = last.len();
    last[n - 1] ^= 1;
    assert!(verify_log(entries.iter().map(Vec::as_slice), &note, &key, None, None).is_err());
    let entries = hex_lines("entries.hex");
    assert!(verify_log(entries[1..].iter().map(Vec::as_slice), &note, &key, None, None).is_err());
    let early_note = read("checkpoint_early.note");
    // The early checkpoint covers exactly the first two entries.
    verify_log(entries[..2].iter().map(Vec::as_slice), &early_note, &key, None, None).unwrap();
    assert!(verify_log(entries[..1].iter().map(Vec::as_slice), &early_note, &key, None, None).is_err());
}
