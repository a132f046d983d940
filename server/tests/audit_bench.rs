//! Benchmark, not a test: the cost of appending audit records to the relay's
//! sled-backed log (stage + apply_batch + committed), with and without a
//! flush per batch, and of a checkpoint.
//! Run: `cargo test -p focal-relay --test audit_bench -- --ignored --nocapture`
//! (dev profile: workspace crates unoptimised, dependencies at opt-level 2).

use std::time::Instant;

use focal_proto::pb;
use focal_relay::audit::{AuditLog, LogSigner};

fn record(i: u64) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: pb::AuditKind::Accepted as i32,
        time_ms: 1_700_000_000_000 + i as i64,
        msg_id: (u128::from(i)).to_be_bytes().to_vec(),
        sender: "fp1@carin".into(),
        recipients: vec!["fp3@arinsa".into()],
        peer: "fp1@carin".into(),
        payload_sha256: vec![7; 32],
        size: 12_345,
        handling: pb::HandlingCode::H1 as i32,
        hop: 0,
        priority: pb::Priority::Normal as i32,
        ..Default::default()
    }
}

fn run(label: &str, total: u64, per_batch: u64, flush: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("db")).unwrap();
    let tree = db.open_tree("relay").unwrap();
    let signer = LogSigner::load_or_create(&tmp.path().join("log.key"), "focal/carin/relay").unwrap();
    let mut log = AuditLog::open(tree.clone(), signer).unwrap();
    let t = Instant::now();
    let (mut staging, mut applying, mut flushing) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < total {
        let mut batch = sled::Batch::default();
        let s = Instant::now();
        for _ in 0..per_batch {
            log.stage(&record(i), &mut batch).unwrap();
            i += 1;
        }
        let a = Instant::now();
        log.seal(&mut batch);
        tree.apply_batch(batch).unwrap();
        log.committed();
        let f = Instant::now();
        if flush {
            db.flush().unwrap();
        }
        staging += (a - s).as_secs_f64();
        applying += (f - a).as_secs_f64();
        flushing += f.elapsed().as_secs_f64();
    }
    let dt = t.elapsed();
    let us = |x: f64| x * 1e6 / i as f64;
    println!(
        "{label}: {i} records, {per_batch}/batch, flush={flush}: {dt:.2?} = {:.1} µs/record \
         (stage {:.1}, apply+commit {:.1}, flush {:.1})",
        us(dt.as_secs_f64()),
        us(staging),
        us(applying),
        us(flushing)
    );
    let t = Instant::now();
    let cp = log.checkpoint(0, true).unwrap();
    println!("  checkpoint of size {} signed and stored in {:.2?}", cp.size, t.elapsed());
    let t = Instant::now();
    let p = log.reader().inclusion_proof(total / 3, 0).unwrap();
    println!("  inclusion proof ({} hashes) in {:.2?}", p.hashes.len(), t.elapsed());
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn append_cost() {
    run("single", 20_000, 1, false);
    run("batched", 200_000, 64, false);
    run("durable", 2_000, 1, true);
    run("durable group commit", 20_000, 64, true);
}
