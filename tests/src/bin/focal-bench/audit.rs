//! Section 4: the audit log. Append cost per record through the relay's
//! sled-backed log (with and without a flush per batch), checkpoint signing,
//! offline verification of a whole log (`focal_proto::audit::verify_log`,
//! what `focal audit verify` runs) and inclusion / consistency proofs.

use std::time::Instant;

use anyhow::Result;
use focal_proto::audit::{
    LogKey, TreeHead, hashes_from_bytes, leaf_hash, verify_consistency, verify_inclusion,
};
use focal_proto::pb;
use focal_relay::audit::{AuditLog, LogSigner};

use crate::Params;
use crate::table::Row;

fn record(i: u64) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: pb::AuditKind::Accepted as i32,
        time_ms: 1_700_000_000_000 + i as i64,
        msg_id: u128::from(i).to_be_bytes().to_vec(),
        sender: "nl-fiod@carin".into(),
        recipients: vec!["za-afu@arinsa".into()],
        peer: "nl-fiod@carin".into(),
        payload_sha256: vec![7; 32],
        size: 1_400,
        handling: pb::HandlingCode::H1 as i32,
        hop: 0,
        priority: pb::Priority::Normal as i32,
        ..Default::default()
    }
}

struct Log {
    _tmp: tempfile::TempDir,
    db: sled::Db,
    tree: sled::Tree,
    log: AuditLog,
    key: String,
    next: u64,
}

fn open() -> Result<Log> {
    let tmp = tempfile::Builder::new().prefix("focal-bench-audit-").tempdir()?;
    let db = sled::open(tmp.path().join("db"))?;
    let tree = db.open_tree("relay")?;
    let signer = LogSigner::load_or_create(&tmp.path().join("log.key"), "focal.bench/carin/relay.carin")?;
    let key = signer.verifier_key();
    let log = AuditLog::open(tree.clone(), signer)?;
    Ok(Log { _tmp: tmp, db, tree, log, key, next: 0 })
}

/// Appends `total` records in batches of `per_batch`; µs per record.
fn append(l: &mut Log, total: u64, per_batch: u64, flush: bool) -> Result<f64> {
    let t = Instant::now();
    let end = l.next + total;
    while l.next < end {
        let mut batch = sled::Batch::default();
        for _ in 0..per_batch.min(end - l.next) {
            l.log.stage(&record(l.next), &mut batch)?;
            l.next += 1;
        }
        l.log.seal(&mut batch);
        l.tree.apply_batch(batch)?;
        l.log.committed();
        if flush {
            l.db.flush()?;
        }
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / total as f64)
}

pub(crate) fn run(p: &Params) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let q = if p.quick { 10 } else { 1 };
    {
        let mut l = open()?;
        let us = append(&mut l, 2_000 / q, 1, true)?;
        rows.push(Row::one("append, 1 record per fsynced batch", format!("{us:.1} µs/record")));
        let us = append(&mut l, 64_000 / q, 64, true)?;
        rows.push(Row::one(
            "append, 64 records per fsynced batch (group commit)",
            format!("{us:.1} µs/record"),
        ));
    }
    let mut l = open()?;
    let n = p.audit_entries;
    eprintln!("audit: building a log of {n} entries ...");
    let us = append(&mut l, n, 1024, false)?;
    l.db.flush()?;
    rows.push(Row::one("append, 1024 per batch, no flush (building the log)", format!("{us:.1} µs/record")));
    let t = Instant::now();
    let cp = l.log.checkpoint(1, true)?;
    rows.push(Row::one(&format!("checkpoint of {n} entries (sign + store)"), format!("{:.2} ms", ms(t))));
    let reader = l.log.reader();
    let entries: Vec<Vec<u8>> = reader.entries(0, n)?.into_iter().map(|e| e.leaf).collect();
    let bytes: usize = entries.iter().map(Vec::len).sum();
    let key = LogKey::parse(&l.key)?;
    let t = Instant::now();
    let v = focal_proto::audit::verify_log(entries.iter().map(Vec::as_slice), &cp.note, &key, None, None)?;
    let secs = t.elapsed().as_secs_f64();
    rows.push(
        Row::one(
            &format!("offline verification of {n} entries ({:.0} MB of leaves)", bytes as f64 / 1e6),
            format!("{secs:.3} s"),
        )
        .goal(n >= 1_000_000, secs <= 2.0, "<= 2 s for 1M"),
    );
    let head: TreeHead = v.checkpoint.head();
    let idx = n / 3;
    let t = Instant::now();
    let proof = reader.inclusion_proof(idx, n)?;
    let gen_ms = ms(t);
    let hashes = hashes_from_bytes(&proof.hashes)?;
    let t = Instant::now();
    verify_inclusion(leaf_hash(&entries[idx as usize]), idx, &head, &hashes)?;
    let ver_ms = ms(t);
    rows.push(Row::one(
        "inclusion proof (make / verify)",
        format!("{} hashes = {} B; {gen_ms:.3} / {ver_ms:.3} ms", hashes.len(), hashes.len() * 32),
    ));
    let old = n / 2 + 7;
    let old_head = TreeHead { size: old, root: reader.root(old)? };
    let t = Instant::now();
    let proof = reader.consistency_proof(old, n)?;
    let gen_ms = ms(t);
    let hashes = hashes_from_bytes(&proof.hashes)?;
    let t = Instant::now();
    verify_consistency(&old_head, &head, &hashes)?;
    let ver_ms = ms(t);
    rows.push(Row::one(
        "consistency proof (make / verify)",
        format!("{} hashes = {} B; {gen_ms:.3} / {ver_ms:.3} ms", hashes.len(), hashes.len() * 32),
    ));
    Ok(rows)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
