//! Benchmarks, not tests (ignored; no assertion on time): offline
//! verification of a large auditor directory with the real `focal audit
//! verify`, and the cost of appending to the relay's log in sled.
//!
//! `cargo test -p focal-tests --test audit bench -- --ignored --nocapture`
//! (`FOCAL_BENCH_ENTRIES`, default 1,000,000). Figures from a debug build
//! are pessimistic; the hashing (ring) is optimised even there.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, ensure};
use focal_proto::audit::{NoteSigner, RootBuilder, encode_record};
use focal_proto::pb;
use focal_relay::audit::{AuditLog, LogSigner};

fn record(i: u64) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: pb::AuditKind::Accepted as i32,
        time_ms: 1_790_000_000_000 + i as i64,
        msg_id: (u128::from(i) * 0x9e37_79b9_7f4a_7c15).to_be_bytes().to_vec(),
        sender: "nl-fiod@carin".into(),
        recipients: vec!["be-ocsc@carin".into()],
        payload_sha256: [7u8; 32].to_vec(),
        size: 4096 + i % 1000,
        handling: 2,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p focal-tests --test audit bench -- --ignored --nocapture"]
async fn bench_offline_verify_and_append() -> Result<()> {
    let bins = focal_tests::bins!();
    let n: u64 = std::env::var("FOCAL_BENCH_ENTRIES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("log");
    std::fs::create_dir_all(dir.join("checkpoints"))?;

    // An auditor directory of n entries with its signed checkpoint.
    let t = Instant::now();
    let signer = NoteSigner::from_pkcs8("focal/carin/relay.carin", &NoteSigner::generate_pkcs8()?)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("entries.bin"))?);
    let mut builder = RootBuilder::new();
    for i in 0..n {
        let leaf = encode_record(&record(i))?;
        w.write_all(&i.to_be_bytes())?;
        w.write_all(&(leaf.len() as u32).to_be_bytes())?;
        w.write_all(&leaf)?;
        builder.push_leaf(&leaf);
    }
    w.flush()?;
    drop(w);
    let note = signer.sign_checkpoint(&builder.head())?;
    std::fs::write(dir.join("checkpoints").join(format!("{n:020}.note")), note)?;
    let bytes = std::fs::metadata(dir.join("entries.bin"))?.len();
    eprintln!("built {n} entries ({bytes} bytes) in {:?}", t.elapsed());

    let t = Instant::now();
    let out = std::process::Command::new(&bins.focal)
        .args(["--json", "audit", "verify", "--dir", dir.to_str().unwrap(), "--key", &signer.verifier_key()])
        .output()?;
    let took = t.elapsed();
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "focal audit verify of {n} entries: {took:?} ({:.0} entries/s); {}",
        n as f64 / took.as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).trim()
    );

    // Appends to the relay's log in sled: one record per batch, and 100 per
    // batch with one flush (the store's group commit).
    let db = sled::open(tmp.path().join("sled"))?;
    let tree = db.open_tree("focal")?;
    let mut log = AuditLog::open(
        tree.clone(),
        LogSigner::load_or_create(&tmp.path().join("audit-log.key"), "focal/carin/relay.carin")?,
    )?;
    let m = 20_000u64;
    let t = Instant::now();
    for i in 0..m {
        let mut batch = sled::Batch::default();
        log.stage(&record(i), &mut batch)?;
        log.seal(&mut batch);
        tree.apply_batch(batch)?;
        log.committed();
    }
    let unflushed = t.elapsed();
    let t = Instant::now();
    let batches = 100u64;
    for b in 0..batches {
        let mut batch = sled::Batch::default();
        for i in 0..100 {
            log.stage(&record(m + b * 100 + i), &mut batch)?;
        }
        log.seal(&mut batch);
        tree.apply_batch(batch)?;
        log.committed();
        tree.flush_async().await?;
    }
    let grouped = t.elapsed();
    let t = Instant::now();
    let cp = log.checkpoint(0, true)?;
    let signing = t.elapsed();
    eprintln!(
        "append: {:.1} µs per record (batch of 1, no flush); {:.1} µs per record in batches of 100 with a flush each \
         ({:?} per batch); checkpoint of size {} signed in {signing:?}",
        unflushed.as_secs_f64() * 1e6 / m as f64,
        grouped.as_secs_f64() * 1e6 / (batches * 100) as f64,
        grouped / batches as u32,
        cp.size
    );
    Ok(())
}
