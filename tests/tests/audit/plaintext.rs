//! No plaintext anywhere at the relay or in the audit trail: a message
//! whose subject, body, attachment name and attachment content carry a
//! unique marker word is sent, read and acknowledged; every file of the
//! relay's data directory (sled files, payload files: raw bytes, and their
//! names) and the auditor's fetched log and exports (JSON lines and CSV)
//! are searched for the marker, while the payload file still exists and
//! again after the relay stopped. The recipient's saved attachment holds
//! it (the search works).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use focal_client::ReadOptions;
use focal_proto::Role;
use focal_tests::Federation;

use crate::{draft, fetch_and_verify, log_key, ok, quiet};

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.extend(files(&e.path())?);
        } else {
            out.push(e.path());
        }
    }
    Ok(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Files under `dir` whose name or bytes hold any of `needles`; also returns
/// how many files and bytes were searched.
fn grep(dir: &Path, needles: &[Vec<u8>]) -> Result<(Vec<String>, usize, u64)> {
    let (mut hits, mut n, mut bytes) = (Vec::new(), 0, 0);
    for f in files(dir)? {
        let data = std::fs::read(&f)?;
        n += 1;
        bytes += data.len() as u64;
        let name = f.to_string_lossy().into_owned();
        for needle in needles {
            if contains(&data, needle) || contains(name.as_bytes(), needle) {
                hits.push(format!("{name} holds {:?}", String::from_utf8_lossy(needle)));
            }
        }
    }
    Ok((hits, n, bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_store_file_or_export_holds_the_plaintext() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed =
        Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let marker = format!("Quokkamarker{}", hex::encode(rand::random::<[u8; 6]>()));
    let needles: Vec<Vec<u8>> = [marker.clone(), marker.to_lowercase(), marker.to_uppercase()]
        .into_iter()
        .map(String::into_bytes)
        .collect();
    let att = fed.dir().join(format!("{marker}-statement.txt"));
    // Over 64 KiB, so that the relay keeps the payload in a file (smaller ones go into sled).
    std::fs::write(&att, format!("account of {marker} at Blue Yacht BV\n").repeat(3000))?;
    let mut d =
        draft(&["be-ocsc@carin"], &format!("Freezing request {marker}"), &format!("Please freeze {marker}."));
    d.attachments = vec![att.clone()];
    d.case_ref = format!("CASE-{marker}");
    let a = fed.client("nl-fiod@carin").await?;
    let sent = a.send(&d, quiet()).await?;
    // And a small one, whose payload is stored inline in sled.
    let small = a.send(&draft(&["be-ocsc@carin"], &marker, &format!("{marker} {marker}")), quiet()).await?;

    // While the sealed payload sits at the relay.
    let data = fed.relay("carin").data_dir().to_owned();
    let (hits, n, bytes) = grep(&data, &needles)?;
    ensure!(hits.is_empty(), "plaintext at the relay: {hits:?}");
    let payload_files = files(&data.join("payloads"))?;
    ensure!(!payload_files.is_empty(), "the payload should be stored as a file (searched {n} files)");
    eprintln!("no marker in {n} relay files ({bytes} bytes), {} payload files", payload_files.len());

    // Read (the marker is really there once decrypted) and acknowledge.
    let b = fed.client("be-ocsc@carin").await?;
    let m = b.list_inbox().await?.into_iter().find(|m| m.msg_id == sent.msg_id).context("delivered")?;
    let out = fed.dir().join("read");
    let opened = b
        .read(&m.reference(), &ReadOptions { out_dir: Some(out.clone()), overwrite: false }, quiet())
        .await?;
    ensure!(opened.content.subject.contains(&marker));
    let (found, _, _) = grep(&out, &needles)?;
    ensure!(!found.is_empty(), "the search must find the marker in the decrypted attachment");
    b.ack(&m.reference(), &m.payload_sha256).await?;
    let m2 =
        b.list_inbox().await?.into_iter().find(|m| m.msg_id == small.msg_id).context("small delivered")?;
    let opened = b.read(&m2.reference(), &ReadOptions::default(), quiet()).await?;
    ensure!(opened.content.body.contains(&marker));
    b.ack(&m2.reference(), &m2.payload_sha256).await?;

    // The auditor's log and exports.
    let auditor = fed.add_member("audit@carin", Role::Auditor)?.clone();
    let key = log_key(&auditor).await?;
    let log = fed.dir().join("audit-log");
    let size = fetch_and_verify(&auditor, &bins, &log, &key).await?;
    let l = log.to_str().unwrap();
    let trace =
        ok(&auditor, &bins, &["--json", "audit", "trace", &hex::encode(sent.msg_id), "--dir", l]).await?;
    ensure!(trace.contains("\"accepted\"") && trace.contains("\"acked\""), "{trace}");
    let exports = fed.dir().join("exports");
    std::fs::create_dir_all(&exports)?;
    for (format, file) in [("jsonl", "log.jsonl"), ("csv", "log.csv")] {
        let path = exports.join(file);
        ok(
            &auditor,
            &bins,
            &["audit", "export", "--dir", l, "--format", format, "--out", path.to_str().unwrap()],
        )
        .await?;
        ensure!(
            std::fs::read_to_string(&path)?.contains(&hex::encode(sent.msg_id)),
            "{format} export names the message"
        );
    }
    let stats = ok(&auditor, &bins, &["audit", "stats", "--dir", l]).await?;
    std::fs::write(exports.join("stats.txt"), stats)?;
    std::fs::write(exports.join("trace.jsonl"), trace)?;
    for dir in [&log, &exports] {
        let (hits, n, bytes) = grep(dir, &needles)?;
        ensure!(hits.is_empty(), "plaintext in the audit trail: {hits:?}");
        eprintln!("no marker in {n} files ({bytes} bytes) under {}", dir.display());
    }

    // After a graceful stop (everything flushed to the sled files).
    fed.relay_mut("carin").stop().await?;
    let (hits, n, bytes) = grep(&data, &needles)?;
    ensure!(hits.is_empty(), "plaintext at the stopped relay: {hits:?}");
    eprintln!("no marker in {n} relay files ({bytes} bytes) after stop; log of {size} records");
    Ok(())
}
