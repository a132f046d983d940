//! The relay's sled-backed audit log: staged records become leaves only when
//! their batch is applied and committed; abandoned stages leave no trace; a
//! reopened store gives the same size, root and proofs as an in-memory log
//! fed the same records; damage is detected at open.

use focal_proto::audit::{
    self, LogKey, MemoryLog, TreeHead, hash_from_bytes, hashes_from_bytes, leaf_hash, verify_consistency,
    verify_inclusion,
};
use focal_proto::pb;
use focal_relay::audit::{AuditLog, LogSigner};

const ORIGIN: &str = "focal/carin/relay.carin";

fn record(i: u64) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: [pb::AuditKind::Accepted, pb::AuditKind::Forwarded, pb::AuditKind::PeerConnected]
            [(i % 3) as usize] as i32,
        time_ms: 1_700_000_000_000 + i as i64,
        msg_id: if i % 3 == 2 { vec![] } else { ((i / 3) as u128).to_be_bytes().to_vec() },
        sender: format!("fp{}@carin", i % 4),
        recipients: vec!["fp1@arinsa".into()],
        peer: "relay.arinsa".into(),
        payload_sha256: vec![(i % 251) as u8; 32],
        size: i,
        handling: pb::HandlingCode::H1 as i32,
        hop: 0,
        reason: 0,
        detail: String::new(),
        priority: pb::Priority::Normal as i32,
    }
}

/// Opens a sled Db. sled's background I/O threads can hold the previous
/// instance's file lock for a moment after its last handle is dropped, and
/// expose no signal for it, so a reopen polls while the lock is busy.
fn open_db(path: &std::path::Path) -> sled::Db {
    for _ in 0..1000 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("opening {}: {e}", path.display()),
        }
    }
    panic!("{} stayed locked", path.display())
}

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Self {
        Store { dir: tempfile::tempdir().unwrap() }
    }
    fn open(&self) -> (sled::Db, AuditLog) {
        let db = open_db(&self.dir.path().join("db"));
        let tree = db.open_tree("relay").unwrap();
        let signer = LogSigner::load_or_create(&self.dir.path().join("log.key"), ORIGIN).unwrap();
        (db, AuditLog::open(tree, signer).unwrap())
    }
    fn key(&self) -> LogKey {
        let signer = LogSigner::load_or_create(&self.dir.path().join("log.key"), ORIGIN).unwrap();
        LogKey::parse(&signer.verifier_key()).unwrap()
    }
}

/// Stages `records` in batches of `per_batch`, applying and committing each.
fn append(
    db: &sled::Db,
    log: &mut AuditLog,
    mem: &mut MemoryLog,
    records: impl Iterator<Item = u64>,
    per_batch: usize,
) {
    let tree = db.open_tree("relay").unwrap();
    let records: Vec<u64> = records.collect();
    for chunk in records.chunks(per_batch) {
        let mut batch = sled::Batch::default();
        for &i in chunk {
            let index = log.stage(&record(i), &mut batch).unwrap();
            assert_eq!(index, mem.append_record(&record(i)).unwrap());
        }
        tree.apply_batch(batch).unwrap();
        log.committed();
    }
}

fn assert_same(log: &AuditLog, mem: &MemoryLog) {
    let r = log.reader();
    assert_eq!(log.size(), mem.size());
    assert_eq!(r.root(mem.size()).unwrap(), mem.head().root);
    let entries = r.entries(0, mem.size()).unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert_eq!(e.leaf, mem.leaf(i as u64).unwrap());
    }
}

#[test]
fn batches_commit_reopen_and_prove() {
    let store = Store::new();
    let mut mem = MemoryLog::new();
    {
        let (db, mut log) = store.open();
        assert_eq!(log.size(), 0);
        append(&db, &mut log, &mut mem, 0..1, 1);
        append(&db, &mut log, &mut mem, 1..40, 7);
        append(&db, &mut log, &mut mem, 40..300, 64);
        assert_same(&log, &mem);
        let cp = log.checkpoint(1_000, false).unwrap();
        assert_eq!(cp.size, 300);
        assert_eq!(cp.root_hash, mem.head().root.0.to_vec());
        db.flush().unwrap();
    }
    // reopen from disk
    let (db, mut log) = store.open();
    assert_same(&log, &mem);
    let r = log.reader();
    assert_eq!(r.latest_checkpoint().unwrap().size, 300);
    let key = store.key();
    let cp = key.verify_checkpoint(&r.latest_checkpoint().unwrap().note).unwrap();
    assert_eq!(cp.head(), mem.head());

    // inclusion for every leaf, consistency for many pairs, against proto's verifier
    for n in [1u64, 2, 3, 64, 100, 299, 300] {
        let head = TreeHead { size: n, root: r.root(n).unwrap() };
        for i in 0..n {
            let p = r.inclusion_proof(i, n).unwrap();
            assert_eq!(p.leaf, mem.leaf(i).unwrap());
            let hashes = hashes_from_bytes(&p.hashes).unwrap();
            assert_eq!(hashes, mem.inclusion_proof(i, n).unwrap());
            verify_inclusion(leaf_hash(&p.leaf), i, &head, &hashes).unwrap();
        }
        for m in 0..=n {
            let p = r.consistency_proof(m, n).unwrap();
            let old = TreeHead { size: m, root: r.root(m).unwrap() };
            verify_consistency(&old, &head, &hashes_from_bytes(&p.hashes).unwrap()).unwrap();
        }
    }
    // tree_size 0 means the latest checkpoint; the proof carries it
    let p = r.inclusion_proof(5, 0).unwrap();
    assert_eq!(p.tree_size, 300);
    assert_eq!(p.checkpoint.unwrap().size, 300);

    // continue appending after the reopen, then again after another reopen
    append(&db, &mut log, &mut mem, 300..333, 10);
    assert_same(&log, &mem);
    drop((r, log, db));
    let (_db, log) = store.open();
    assert_same(&log, &mem);
}

#[test]
fn abandoned_stage_leaves_no_trace() {
    let store = Store::new();
    let mut mem = MemoryLog::new();
    let (db, mut log) = store.open();
    let tree = db.open_tree("relay").unwrap();
    append(&db, &mut log, &mut mem, 0..10, 3);
    let keys_before: Vec<_> = tree.iter().keys().map(Result::unwrap).collect();

    let mut dropped = sled::Batch::default();
    for i in 100..105 {
        assert_eq!(log.stage(&record(i), &mut dropped).unwrap(), 10 + (i - 100));
    }
    drop(dropped);
    log.abandon();
    assert_eq!(log.size(), 10);
    let keys_after: Vec<_> = tree.iter().keys().map(Result::unwrap).collect();
    assert_eq!(keys_before, keys_after);

    // the next stage reuses index 10 and the hashes are those of the real records
    append(&db, &mut log, &mut mem, 10..25, 4);
    assert_same(&log, &mem);
    drop((log, tree, db));
    let (_db, log) = store.open();
    assert_same(&log, &mem);
}

#[test]
fn readers_see_only_committed_leaves() {
    let store = Store::new();
    let mut mem = MemoryLog::new();
    let (db, mut log) = store.open();
    let tree = db.open_tree("relay").unwrap();
    append(&db, &mut log, &mut mem, 0..5, 5);
    let reader = log.reader();
    let mut batch = sled::Batch::default();
    log.stage(&record(5), &mut batch).unwrap();
    tree.apply_batch(batch).unwrap();
    // applied but not yet committed: invisible
    assert_eq!(reader.size(), 5);
    assert!(reader.entries(0, 6).is_err());
    log.committed();
    mem.append_record(&record(5)).unwrap();
    assert_eq!(reader.entries(0, 6).unwrap().len(), 6);
    assert_same(&log, &mem);
}

#[test]
fn msg_id_index_and_records() {
    let store = Store::new();
    let mut mem = MemoryLog::new();
    let (db, mut log) = store.open();
    append(&db, &mut log, &mut mem, 0..30, 4);
    log.checkpoint(0, true).unwrap();
    let r = log.reader();
    let id = (4u128).to_be_bytes();
    assert_eq!(r.indexes_of(&id).unwrap(), vec![12, 13]);
    let recs = r.records_of(&id).unwrap();
    assert_eq!(recs[0].1.kind, pb::AuditKind::Accepted as i32);
    let p = r.inclusion_proof_by_msg_id(&id, 0).unwrap();
    assert_eq!(p.leaf_index, 12);
    assert!(
        r.inclusion_proof_by_msg_id(&(999u128).to_be_bytes(), 0)
            .unwrap_err()
            .to_string()
            .contains("no record")
    );
    assert!(r.indexes_of(b"short").is_err());
}

#[test]
fn checkpoints_rate_limit_and_stay_monotonic() {
    let store = Store::new();
    let mut mem = MemoryLog::new();
    let (db, mut log) = store.open();
    append(&db, &mut log, &mut mem, 0..3, 3);
    let a = log.checkpoint(10_000, false).unwrap();
    append(&db, &mut log, &mut mem, 3..6, 3);
    assert_eq!(log.checkpoint(10_500, false).unwrap(), a, "within a second: the previous one");
    let b = log.checkpoint(10_600, true).unwrap();
    assert_eq!(b.size, 6);
    append(&db, &mut log, &mut mem, 6..7, 1);
    assert_eq!(log.checkpoint(11_700, false).unwrap().size, 7);
    assert_eq!(log.checkpoint(20_000, true).unwrap().size, 7, "nothing new: same checkpoint");
    let key = store.key();
    let old = key.verify_checkpoint(&a.note).unwrap().head();
    let new = key.verify_checkpoint(&log.reader().latest_checkpoint().unwrap().note).unwrap().head();
    let p = log.reader().consistency_proof(old.size, new.size).unwrap();
    verify_consistency(&old, &new, &hashes_from_bytes(&p.hashes).unwrap()).unwrap();
    assert_eq!(log.reader().checkpoint_at(3).unwrap().unwrap(), a);
    assert!(log.reader().checkpoint_at(4).unwrap().is_none());
    // cosignatures are kept per checkpoint size
    log.reader().add_cosignature(7, "focal/arinsa/relay", "— focal/arinsa/relay AAAA\n").unwrap();
    assert_eq!(log.reader().info().unwrap().cosignatures.len(), 1);
    assert_eq!(hash_from_bytes(&new.root.0, "root").unwrap(), new.root);
}

#[test]
fn damage_is_detected_at_open() {
    let store = Store::new();
    let mut mem = MemoryLog::new();
    {
        let (db, mut log) = store.open();
        append(&db, &mut log, &mut mem, 0..9, 9);
        log.checkpoint(0, true).unwrap();
        db.flush().unwrap();
    }
    let db = open_db(&store.dir.path().join("db"));
    let tree = db.open_tree("relay").unwrap();
    let mut last = b"a/l/".to_vec();
    last.extend_from_slice(&8u64.to_be_bytes());
    let saved = tree.remove(&last).unwrap().unwrap();
    let signer = || LogSigner::load_or_create(&store.dir.path().join("log.key"), ORIGIN).unwrap();
    let e = AuditLog::open(tree.clone(), signer()).err().unwrap().to_string();
    assert!(e.contains("leaf 8 is missing"), "{e}");
    tree.insert(&last, saved).unwrap();
    // the size went back below the last checkpoint
    tree.insert(b"a/size", &8u64.to_be_bytes()).unwrap();
    tree.remove(&last).unwrap();
    let e = AuditLog::open(tree.clone(), signer()).err().unwrap().to_string();
    assert!(e.contains("checkpoint of size 9 was issued but only 8"), "{e}");
    // another key cannot take over the log
    let other = LogSigner::from_pkcs8(ORIGIN, &audit::NoteSigner::generate_pkcs8().unwrap()).unwrap();
    let e = AuditLog::open(tree, other).err().unwrap().to_string();
    assert!(e.contains("does not verify with this log key"), "{e}");
}

#[test]
fn log_key_file_is_private_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.key");
    let a = LogSigner::load_or_create(&path, ORIGIN).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let b = LogSigner::load_or_create(&path, ORIGIN).unwrap();
    assert_eq!(a.verifier_key(), b.verifier_key());
    assert_eq!(b.origin(), ORIGIN);
    std::fs::write(&path, b"garbage").unwrap();
    let e = LogSigner::load_or_create(&path, ORIGIN).unwrap_err().to_string();
    assert!(e.contains("log.key"), "{e}");
    assert!(LogSigner::load_or_create(&dir.path().join("k2"), "bad origin").is_err());
}

#[test]
fn invalid_records_are_refused_before_the_batch() {
    let store = Store::new();
    let (_db, mut log) = store.open();
    let mut batch = sled::Batch::default();
    let mut r = record(0);
    r.version = 0;
    assert!(log.stage(&r, &mut batch).unwrap_err().to_string().contains("version"));
    assert_eq!(log.stage(&record(0), &mut batch).unwrap(), 0);
}
