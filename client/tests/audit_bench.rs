//! Benchmark, not a test: time to verify a 1,000,000-entry log offline.
//! Run: `cargo test -p focal-client --test audit_bench -- --ignored --nocapture`
//! (dev profile: workspace crates unoptimised, dependencies at opt-level 2).

use std::io::Write;
use std::time::Instant;

use focal_proto::audit::{NoteSigner, RootBuilder, encode_record};
use focal_proto::pb;

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn verify_one_million_entries() {
    let n: u64 = std::env::var("FOCAL_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let signer = NoteSigner::from_pkcs8("focal/carin/relay", &NoteSigner::generate_pkcs8().unwrap()).unwrap();

    let t = Instant::now();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("entries.bin")).unwrap());
    let mut b = RootBuilder::new();
    let mut bytes = 0u64;
    for i in 0..n {
        let r = pb::AuditRecord {
            version: 1,
            kind: pb::AuditKind::Delivered as i32,
            time_ms: 1_700_000_000_000 + i as i64,
            msg_id: (u128::from(i)).to_be_bytes().to_vec(),
            sender: format!("fp{}@carin", i % 97),
            recipients: vec![format!("fp{}@arinsa", i % 13), "fp2@gfp".into()],
            peer: "relay.arinsa".into(),
            payload_sha256: vec![(i % 251) as u8; 32],
            size: 10_000 + i,
            handling: pb::HandlingCode::H1 as i32,
            hop: 1,
            reason: 0,
            detail: String::new(),
            priority: pb::Priority::Normal as i32,
        };
        let leaf = encode_record(&r).unwrap();
        f.write_all(&i.to_be_bytes()).unwrap();
        f.write_all(&(leaf.len() as u32).to_be_bytes()).unwrap();
        f.write_all(&leaf).unwrap();
        bytes += 12 + leaf.len() as u64;
        b.push_leaf(&leaf);
    }
    f.flush().unwrap();
    drop(f);
    let note = signer.sign_checkpoint(&b.head()).unwrap();
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    std::fs::write(dir.join("checkpoints").join(format!("{n:020}.note")), note).unwrap();
    println!("built {n} entries ({:.1} MB) in {:.2?}", bytes as f64 / 1e6, t.elapsed());

    // Where the time goes: framing only, + Merkle hashing, + record decoding.
    let data = std::fs::read(dir.join("entries.bin")).unwrap();
    for stage in ["frames", "frames+hash", "frames+hash+decode"] {
        let t = Instant::now();
        let (mut at, mut b) = (0usize, RootBuilder::new());
        while at < data.len() {
            let len = u32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
            let leaf = &data[at + 12..at + 12 + len];
            if stage != "frames" {
                b.push_leaf(leaf);
            }
            if stage == "frames+hash+decode" {
                focal_proto::audit::decode_record(leaf).unwrap();
            }
            at += 12 + len;
        }
        std::hint::black_box(b.root());
        println!("  in memory, {stage}: {:.2?}", t.elapsed());
    }

    let t = Instant::now();
    let report = focal_client::audit::verify(dir, &signer.verifier_key(), &[], 0).unwrap();
    let dt = t.elapsed();
    assert_eq!(report.size, n);
    println!(
        "verify: {n} entries in {dt:.2?} ({:.0} entries/s, {:.0} MB/s)",
        n as f64 / dt.as_secs_f64(),
        bytes as f64 / 1e6 / dt.as_secs_f64()
    );
}
