//! Whole-log offline verification (`verify_log`): an untouched log passes;
//! a changed, deleted, reordered or extra entry, truncation, a rollback or a
//! forked history signed by the same key fails with an error naming it.

use focal_proto::ProtoError;
use focal_proto::audit::{LogKey, MemoryLog, NoteSigner, TreeHead, encode_record, verify_log};
use focal_proto::pb;

fn record(i: u32) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: if i % 7 == 3 { pb::AuditKind::Refused } else { pb::AuditKind::Delivered } as i32,
        time_ms: 1_700_000_000_000 + i64::from(i) * 1000,
        msg_id: (i as u128).to_be_bytes().to_vec(),
        sender: format!("fp{}@carin", i % 5),
        recipients: vec![format!("fp{}@arinsa", i % 3)],
        peer: "relay.arinsa".into(),
        payload_sha256: vec![i as u8; 32],
        size: u64::from(i) * 100,
        handling: pb::HandlingCode::H1 as i32,
        hop: i % 4,
        reason: if i % 7 == 3 { pb::RefusalReason::Policy as i32 } else { 0 },
        detail: String::new(),
        priority: pb::Priority::Normal as i32,
    }
}

struct Fixture {
    signer: NoteSigner,
    key: LogKey,
    log: MemoryLog,
}

fn fixture(n: u32) -> Fixture {
    let signer = NoteSigner::from_pkcs8("focal/carin/relay", &NoteSigner::generate_pkcs8().unwrap()).unwrap();
    let key = LogKey::parse(&signer.verifier_key()).unwrap();
    let mut log = MemoryLog::new();
    for i in 0..n {
        log.append_record(&record(i)).unwrap();
    }
    Fixture { signer, key, log }
}

fn leaves(log: &MemoryLog) -> Vec<Vec<u8>> {
    log.leaves().to_vec()
}

fn run(f: &Fixture, entries: &[Vec<u8>], note: &str, prev: Option<&TreeHead>) -> Result<(), ProtoError> {
    verify_log(entries.iter().map(Vec::as_slice), note, &f.key, prev, None).map(|_| ())
}

#[test]
fn untouched_log_verifies() {
    let f = fixture(100);
    let note = f.signer.sign_checkpoint(&f.log.head()).unwrap();
    let prev = TreeHead { size: 40, root: f.log.root_at(40).unwrap() };
    let proof = f.log.consistency_proof(40, 100).unwrap();
    let v = verify_log(f.log.leaves().iter().map(Vec::as_slice), &note, &f.key, Some(&prev), Some(&proof))
        .unwrap();
    assert_eq!(v.checkpoint.head(), f.log.head());
    run(&f, &leaves(&f.log), &note, None).unwrap();
    let empty = fixture(0);
    let n0 = empty.signer.sign_checkpoint(&empty.log.head()).unwrap();
    run(&empty, &[], &n0, Some(&empty.log.head())).unwrap();
}

#[test]
fn any_changed_byte_of_any_entry_fails() {
    let f = fixture(20);
    let note = f.signer.sign_checkpoint(&f.log.head()).unwrap();
    let good = leaves(&f.log);
    for k in 0..good.len() {
        for pos in 0..good[k].len() {
            let mut e = good.clone();
            e[k][pos] ^= 0x01;
            match run(&f, &e, &note, None) {
                Err(ProtoError::AuditLeafMalformed { index, .. }) => assert_eq!(index, k as u64),
                Err(ProtoError::RootMismatch { size: 20, .. }) => {}
                other => panic!("entry {k} byte {pos}: {other:?}"),
            }
        }
    }
}

#[test]
fn deleted_reordered_truncated_or_extra_entries_fail() {
    let f = fixture(30);
    let note = f.signer.sign_checkpoint(&f.log.head()).unwrap();
    let good = leaves(&f.log);

    let mut deleted = good.clone();
    deleted.remove(11);
    assert_eq!(run(&f, &deleted, &note, None), Err(ProtoError::LogTruncated { expected: 30, found: 29 }));

    let mut swapped = good.clone();
    swapped.swap(4, 17);
    let e = run(&f, &swapped, &note, None).unwrap_err();
    assert!(matches!(e, ProtoError::RootMismatch { size: 30, .. }), "{e}");
    assert!(e.to_string().starts_with("root mismatch at size 30"));

    assert!(matches!(
        run(&f, &good[..25], &note, None),
        Err(ProtoError::LogTruncated { expected: 30, found: 25 })
    ));
    let mut extra = good.clone();
    extra.push(encode_record(&record(999)).unwrap());
    assert!(matches!(run(&f, &extra, &note, None), Err(ProtoError::LogOverlong { expected: 30, found: 31 })));

    // replacing a leaf by a valid record that is not the logged one
    let mut replaced = good.clone();
    replaced[29] = encode_record(&record(12345)).unwrap();
    assert!(matches!(run(&f, &replaced, &note, None), Err(ProtoError::RootMismatch { .. })));
    // a leaf that is not a record
    let mut junk = good;
    junk[3] = b"junk".to_vec();
    let e = run(&f, &junk, &note, None).unwrap_err();
    assert!(e.to_string().starts_with("audit leaf 3 is malformed"), "{e}");
}

#[test]
fn rollback_and_fork_are_named() {
    let f = fixture(50);
    let seen = f.log.head();
    // rollback: a validly signed smaller checkpoint with its entries
    let small = MemoryLog::from_leaves(f.log.leaves()[..40].to_vec());
    let n40 = f.signer.sign_checkpoint(&small.head()).unwrap();
    assert_eq!(
        run(&f, &leaves(&small), &n40, Some(&seen)),
        Err(ProtoError::Rollback { seen_size: 50, new_size: 40 })
    );

    // fork at the same size: entry 20 differs, validly signed
    let mut forked = leaves(&f.log);
    forked[20] = encode_record(&record(777)).unwrap();
    let flog = MemoryLog::from_leaves(forked.clone());
    let fnote = f.signer.sign_checkpoint(&flog.head()).unwrap();
    run(&f, &forked, &fnote, None).unwrap();
    let e = run(&f, &forked, &fnote, Some(&seen)).unwrap_err();
    assert!(matches!(e, ProtoError::Fork(ref m) if m.contains("size 50 with different roots")), "{e}");

    // fork that grew: size 60 whose first 50 entries differ from what was seen
    let mut grown = forked;
    for i in 50..60 {
        grown.push(encode_record(&record(i)).unwrap());
    }
    let glog = MemoryLog::from_leaves(grown.clone());
    let gnote = f.signer.sign_checkpoint(&glog.head()).unwrap();
    let e = run(&f, &grown, &gnote, Some(&seen)).unwrap_err();
    assert!(
        matches!(e, ProtoError::Fork(ref m) if m.contains("does not extend the checkpoint of size 50")),
        "{e}"
    );

    // a genuine extension passes, and a bad consistency proof is refused
    let mut ext = f.log.clone();
    for i in 50..60 {
        ext.append_record(&record(i)).unwrap();
    }
    let enote = f.signer.sign_checkpoint(&ext.head()).unwrap();
    run(&f, &leaves(&ext), &enote, Some(&seen)).unwrap();
    let mut proof = ext.consistency_proof(50, 60).unwrap();
    proof[0].0[31] ^= 1;
    let e = verify_log(ext.leaves().iter().map(Vec::as_slice), &enote, &f.key, Some(&seen), Some(&proof));
    assert!(matches!(e, Err(ProtoError::ConsistencyProof { old_size: 50, new_size: 60, .. })));
}

#[test]
fn a_bad_signature_is_named() {
    let f = fixture(5);
    let note = f.signer.sign_checkpoint(&f.log.head()).unwrap();
    let mut b = note.clone().into_bytes();
    let sig_pos = note.rfind(' ').unwrap() + 10;
    b[sig_pos] = if b[sig_pos] == b'A' { b'B' } else { b'A' };
    let e = run(&f, &leaves(&f.log), &String::from_utf8(b).unwrap(), None).unwrap_err();
    assert!(matches!(e, ProtoError::CheckpointSignature(_) | ProtoError::CheckpointMalformed(_)), "{e}");
}
