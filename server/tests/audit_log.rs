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
        log.seal(&mut batch);
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
    log.seal(&mut batch);
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
        // Two batches, so leaf 8 is alone in its pack.
        append(&db, &mut log, &mut mem, 0..8, 8);
        append(&db, &mut log, &mut mem, 8..9, 1);
        log.checkpoint(0, true).unwrap();
        db.flush().unwrap();
    }
    let db = open_db(&store.dir.path().join("db"));
    let tree = db.open_tree("relay").unwrap();
    let last = key(b"a/L/", 8);
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

fn key(prefix: &[u8], n: u64) -> Vec<u8> {
    [prefix, &n.to_be_bytes()].concat()
}

/// Writes records `0..n` the way stores did before batches were packed: one
/// key per leaf (`a/l/<index>`), per stored hash (`a/h/<index>`) and per msg id.
fn write_one_key_per_leaf(tree: &sled::Tree, mem: &mut MemoryLog, n: u64) {
    use focal_proto::audit::{Hash, HashReader};
    use tlog_tiles::tlog;
    struct Stored<'a>(&'a [Hash]);
    impl HashReader for Stored<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
            indexes
                .iter()
                .map(|&i| self.0.get(i as usize).copied().ok_or(tlog::Error::IndexesNotInTree))
                .collect()
        }
    }
    let mut hashes: Vec<Hash> = Vec::new();
    for i in 0..n {
        let leaf = audit::encode_record(&record(i)).unwrap();
        assert_eq!(mem.append_record(&record(i)).unwrap(), i);
        for h in tlog::stored_hashes(i, &leaf, &Stored(&hashes)).unwrap() {
            tree.insert(key(b"a/h/", hashes.len() as u64), &h.0[..]).unwrap();
            hashes.push(h);
        }
        tree.insert(key(b"a/l/", i), leaf).unwrap();
        if record(i).msg_id.len() == 16 {
            tree.insert([&b"a/m/"[..], &record(i).msg_id, &i.to_be_bytes()].concat(), &[][..]).unwrap();
        }
    }
    tree.insert(b"a/size", &n.to_be_bytes()[..]).unwrap();
}

#[test]
fn a_log_stored_one_key_per_leaf_goes_on_in_packed_batches() {
    let store = Store::new();
    let mut mem = MemoryLog::new();
    {
        let db = open_db(&store.dir.path().join("db"));
        write_one_key_per_leaf(&db.open_tree("relay").unwrap(), &mut mem, 37);
        db.flush().unwrap();
    }
    let (db, mut log) = store.open();
    assert_same(&log, &mem);
    append(&db, &mut log, &mut mem, 37..50, 5);
    append(&db, &mut log, &mut mem, 50..51, 1);
    assert_same(&log, &mem);
    log.checkpoint(0, true).unwrap();
    drop((log, db));
    let (db, log) = store.open();
    assert_same(&log, &mem);
    let r = log.reader();
    let n = mem.size();
    let head = TreeHead { size: n, root: r.root(n).unwrap() };
    for i in 0..n {
        let p = r.inclusion_proof(i, n).unwrap();
        verify_inclusion(leaf_hash(&p.leaf), i, &head, &hashes_from_bytes(&p.hashes).unwrap()).unwrap();
    }
    for m in [0, 1, 36, 37, 38, 45, 50, 51] {
        let p = r.consistency_proof(m, n).unwrap();
        let old = TreeHead { size: m, root: r.root(m).unwrap() };
        verify_consistency(&old, &head, &hashes_from_bytes(&p.hashes).unwrap()).unwrap();
    }
    // Entries across the change of form, and within one pack.
    let e = r.entries(35, 43).unwrap();
    assert_eq!(e.iter().map(|e| e.index).collect::<Vec<_>>(), (35..43).collect::<Vec<_>>());
    assert_eq!(e[4].leaf, mem.leaf(39).unwrap());
    assert_eq!(r.leaf(38).unwrap(), mem.leaf(38).unwrap());
    assert_eq!(r.leaf(3).unwrap(), mem.leaf(3).unwrap());
    // By msg id, in both forms.
    for i in [3u64, 40] {
        let id = record(i).msg_id;
        assert!(r.indexes_of(&id).unwrap().contains(&i), "msg of record {i}");
    }

    // A damaged pack is named, not misread.
    let tree = db.open_tree("relay").unwrap();
    let pack = tree.get(key(b"a/L/", 37)).unwrap().unwrap();
    tree.insert(key(b"a/L/", 37), &pack[..pack.len() - 3]).unwrap();
    let e = r.entries(37, 42).unwrap_err().to_string();
    assert!(e.contains("leaf pack at 37 is damaged"), "{e}");
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
