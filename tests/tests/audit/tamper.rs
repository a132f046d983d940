//! Tampering with a fetched log, and a forked history, through the real
//! CLI: each case is a copy of an auditor's directory fetched from a real
//! relay (real TLS), altered as an attacker with disk access would, then
//! `focal audit verify` must exit 1 with one line naming what is wrong.
//! The untouched directory verifies.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use focal_client::ReadOptions;
use focal_proto::Role;
use focal_tests::{Bins, Federation, FocalPoint};

use crate::{copy_dir, draft, fetch_and_verify, json_lines, log_key, ok, quiet, run};

/// Sends `n` messages from nl-fiod to be-ocsc and acknowledges every other one.
async fn traffic(fed: &Federation, n: usize, tag: &str) -> Result<()> {
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("be-ocsc@carin").await?;
    for i in 0..n {
        a.send(&draft(&["be-ocsc@carin"], "audit traffic", &format!("{tag} {i}")), quiet()).await?;
    }
    for (i, m) in b.list_inbox().await?.iter().enumerate() {
        if i % 2 == 0 {
            b.read(&m.reference(), &ReadOptions::default(), quiet()).await?;
            b.ack(&m.reference(), &m.payload_sha256).await?;
        }
    }
    Ok(())
}

/// `entries.bin` as (index, leaf) pairs.
fn read_entries(dir: &Path) -> Result<Vec<(u64, Vec<u8>)>> {
    let bytes = std::fs::read(dir.join("entries.bin"))?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let index = u64::from_be_bytes(bytes[at..at + 8].try_into()?);
        let len = u32::from_be_bytes(bytes[at + 8..at + 12].try_into()?) as usize;
        out.push((index, bytes[at + 12..at + 12 + len].to_vec()));
        at += 12 + len;
    }
    Ok(out)
}

fn write_entries(dir: &Path, entries: &[(u64, Vec<u8>)]) -> Result<()> {
    let mut bytes = Vec::new();
    for (i, leaf) in entries {
        bytes.extend_from_slice(&i.to_be_bytes());
        bytes.extend_from_slice(&(leaf.len() as u32).to_be_bytes());
        bytes.extend_from_slice(leaf);
    }
    std::fs::write(dir.join("entries.bin"), bytes)?;
    Ok(())
}

/// Indexes renumbered 0.. so that the framing is consistent (a careful attacker).
fn renumber(entries: &mut [(u64, Vec<u8>)]) {
    for (i, e) in entries.iter_mut().enumerate() {
        e.0 = i as u64;
    }
}

/// `focal audit verify` must fail with exit 1 and one stderr line holding every needle.
async fn must_fail(
    auditor: &FocalPoint,
    bins: &Bins,
    dir: &Path,
    key: &str,
    case: &str,
    needles: &[&str],
) -> Result<()> {
    let d = dir.to_str().context("dir")?;
    let out = run(auditor, bins, &["audit", "verify", "--dir", d, "--key", key]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    ensure!(out.status.code() == Some(1), "{case}: verify exited {:?}; stderr {stderr}", out.status.code());
    ensure!(stderr.lines().count() == 1, "{case}: want one line, got {stderr}");
    for n in needles {
        ensure!(stderr.contains(n), "{case}: {stderr:?} should mention {n:?}");
    }
    eprintln!("tamper case {case}: {stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_logs_fail_verify_naming_the_fault() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed =
        Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let auditor = fed.add_member("audit@carin", Role::Auditor)?.clone();
    let key = log_key(&auditor).await?;
    let base = fed.dir().join("audit-base");
    // Three fetches with traffic in between: three stored checkpoints.
    let mut sizes = Vec::new();
    for round in 0..3 {
        traffic(&fed, 6, &format!("round {round}")).await?;
        sizes.push(fetch_and_verify(&auditor, &bins, &base, &key).await?);
    }
    let entries = read_entries(&base)?;
    let n = entries.len() as u64;
    ensure!(n == sizes[2] && sizes[0] < sizes[1] && sizes[1] < sizes[2], "sizes {sizes:?}, {n} entries");
    let t = Instant::now();
    let d = base.to_str().unwrap();
    let v =
        json_lines(&ok(&auditor, &bins, &["--json", "audit", "verify", "--dir", d, "--key", &key]).await?)?;
    eprintln!("untouched log of {n} entries verifies in {:?} (CLI process included)", t.elapsed());
    assert_eq!(v[0]["size"], n);
    assert_eq!(v[0]["checkpoints"], 3);

    let case_dir = |name: &str| -> Result<PathBuf> {
        let p = fed.dir().join(format!("case-{name}"));
        copy_dir(&base, &p)?;
        Ok(p)
    };
    // A byte of an entry in the second checkpoint's range: the sender's name, still a valid record.
    let k = (sizes[0] + sizes[1]) / 2;
    let dir = case_dir("byte")?;
    let mut e = entries.clone();
    let leaf = &mut e[k as usize].1;
    let at = leaf.windows(7).position(|w| w == b"nl-fiod").with_context(|| format!("sender in leaf {k}"))?;
    leaf[at + 6] = b'e'; // nl-fioe
    write_entries(&dir, &e)?;
    let range = format!("entries {}..{}", sizes[0], sizes[1]);
    must_fail(&auditor, &bins, &dir, &key, "one byte of an entry", &[&range, "root mismatch at size"])
        .await?;

    // A byte that breaks the record encoding: named by its index.
    let dir = case_dir("garbage")?;
    let mut e = entries.clone();
    e[k as usize].1[0] ^= 0xff;
    write_entries(&dir, &e)?;
    must_fail(&auditor, &bins, &dir, &key, "a garbled entry", &[&format!("leaf {k}")]).await?;

    // Deleted entry: with its index left as is, and renumbered.
    let dir = case_dir("delete")?;
    let mut e = entries.clone();
    e.remove(k as usize);
    write_entries(&dir, &e)?;
    must_fail(&auditor, &bins, &dir, &key, "deleted entry", &[&format!("position {k}"), "deleted"]).await?;
    renumber(&mut e);
    write_entries(&dir, &e)?;
    must_fail(
        &auditor,
        &bins,
        &dir,
        &key,
        "deleted entry, renumbered",
        &[&range, "root mismatch", "truncated", &format!("only {}", n - 1)],
    )
    .await?;

    // Two entries swapped: framing, then renumbered (only the hashes can tell).
    let dir = case_dir("reorder")?;
    let mut e = entries.clone();
    e.swap(k as usize, k as usize + 1);
    write_entries(&dir, &e)?;
    must_fail(&auditor, &bins, &dir, &key, "reordered entries", &["reordered"]).await?;
    renumber(&mut e);
    write_entries(&dir, &e)?;
    must_fail(&auditor, &bins, &dir, &key, "reordered, renumbered", &[&range, "root mismatch"]).await?;

    // Truncated: whole entries cut, and a cut inside an entry.
    let dir = case_dir("truncate")?;
    write_entries(&dir, &entries[..entries.len() - 3])?;
    must_fail(&auditor, &bins, &dir, &key, "truncated log", &["truncated", &format!("covers {n}")]).await?;
    write_entries(&dir, &entries)?;
    let len = std::fs::metadata(base.join("entries.bin"))?.len();
    std::fs::OpenOptions::new().write(true).open(dir.join("entries.bin"))?.set_len(len - 5)?;
    must_fail(&auditor, &bins, &dir, &key, "cut inside an entry", &[&format!("entry {}", n - 1)]).await?;

    // A checkpoint altered (root changed, signature kept) or its signature removed.
    let dir = case_dir("checkpoint")?;
    let cp = dir.join("checkpoints").join(format!("{:020}.note", sizes[1]));
    let note = std::fs::read_to_string(&cp)?;
    let mut lines: Vec<String> = note.lines().map(str::to_owned).collect();
    lines[1] = (sizes[1] + 1).to_string();
    std::fs::write(&cp, lines.join("\n") + "\n")?;
    must_fail(&auditor, &bins, &dir, &key, "altered checkpoint", &["checkpoint", "signature"]).await?;

    // An entry appended beyond the signed size (as an interrupted fetch
    // leaves them): verify succeeds on the signed entries and warns, naming
    // the bytes; export and stats leave the entry out.
    let dir = case_dir("append")?;
    let mut e = entries.clone();
    e.push((n, entries[0].1.clone()));
    write_entries(&dir, &e)?;
    let extra = 12 + entries[0].1.len();
    let a = dir.to_str().unwrap();
    let out = ok(&auditor, &bins, &["audit", "verify", "--dir", a, "--key", &key]).await?;
    let warning = format!("warning: {extra} bytes of entries.bin beyond the accepted log");
    ensure!(out.contains(&warning) && out.contains("run `focal audit fetch` again"), "{out}");
    let v =
        json_lines(&ok(&auditor, &bins, &["--json", "audit", "verify", "--dir", a, "--key", &key]).await?)?;
    ensure!(v[0]["size"] == n && v[0]["left_over_bytes"] == extra, "{v:?}");
    ensure!(crate::export(&auditor, &bins, &dir).await?.len() as u64 == n, "export holds the appended entry");
    let stats = run(&auditor, &bins, &["audit", "stats", "--dir", a]).await?;
    let stderr = String::from_utf8_lossy(&stats.stderr);
    ensure!(stats.status.success() && stderr.contains(&warning), "stats: {stderr}");
    ensure!(String::from_utf8_lossy(&stats.stdout).starts_with(&format!("{n} records")), "stats");

    // And the untouched one still verifies.
    ok(&auditor, &bins, &["audit", "verify", "--dir", d, "--key", &key]).await?;
    Ok(())
}

/// Two relays of CARIN with the same log key (copied before the second
/// starts) and different traffic: an auditor who accepted the first
/// relay's history is refused the second one's, by `fetch` (consistency
/// proof) and by offline `verify` (prefix root); a brand-new auditor alone
/// cannot tell (that is what witnesses are for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_history_is_refused_by_an_auditor_who_saw_the_other() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut honest =
        Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let mut forked = Federation::builder()
        .focal_point_unenrolled("nl-fiod@carin")
        .focal_point_unenrolled("be-ocsc@carin")
        .start()
        .await?;
    // The forking relay: same origin, same log key, its own history.
    let key_file = honest.relay("carin").data_dir().join("audit-log.key");
    {
        let r = forked.relay_mut("carin");
        r.stop().await?;
        let data = r.data_dir().to_owned();
        std::fs::remove_dir_all(&data)?;
        std::fs::create_dir_all(&data)?;
        std::fs::copy(&key_file, data.join("audit-log.key"))?;
        r.start().await?;
    }
    for fp in ["nl-fiod@carin", "be-ocsc@carin"] {
        forked.fp(fp).enrol().await?;
    }

    let a1 = honest.add_member("audit-one@carin", Role::Auditor)?.clone();
    let a2 = forked.add_member("audit-two@carin", Role::Auditor)?.clone();
    let key = log_key(&a1).await?;
    ensure!(log_key(&a2).await? == key, "the two relays must share the log key");

    traffic(&honest, 4, "honest").await?;
    let dir1 = honest.dir().join("audit-one");
    let n1 = fetch_and_verify(&a1, &bins, &dir1, &key).await?;
    traffic(&forked, 12, "forked").await?;

    // The second auditor holds the history fetched from the first relay.
    let dir2 = forked.dir().join("audit-two");
    copy_dir(&dir1, &dir2)?;
    let d2 = dir2.to_str().unwrap();
    let out = run(&a2, &bins, &["audit", "fetch", "--dir", d2, "--key", &key]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    ensure!(out.status.code() == Some(1), "fetch of the fork exited {:?}: {stderr}", out.status.code());
    ensure!(stderr.contains("fork") && stderr.contains(&format!("size {n1}")), "{stderr}");
    eprintln!("fork case fetch: {stderr}");
    // Nothing of the fork was accepted: the directory still verifies as the honest log.
    let v = json_lines(&ok(&a2, &bins, &["--json", "audit", "verify", "--dir", d2, "--key", &key]).await?)?;
    assert_eq!(v[0]["size"], n1);

    // A brand-new auditor of the forked relay verifies it: nothing to compare with.
    let dir3 = forked.dir().join("audit-fresh");
    let n2 = fetch_and_verify(&a2, &bins, &dir3, &key).await?;
    ensure!(n2 > n1, "the fork must be longer ({n2} vs {n1})");
    // The forked log handed to the first auditor (its state file kept): verify refuses it offline.
    let merged = honest.dir().join("audit-one-merged");
    copy_dir(&dir3, &merged)?;
    std::fs::copy(dir1.join("state.json"), merged.join("state.json"))?;
    must_fail(&a1, &bins, &merged, &key, "forked log, offline", &["fork", &format!("size {n1}")]).await?;
    // Also with the honest checkpoint beside the forked ones: two signed views that disagree.
    let both = honest.dir().join("audit-one-both");
    copy_dir(&dir3, &both)?;
    let honest_cp = format!("checkpoints/{n1:020}.note");
    std::fs::copy(dir1.join(&honest_cp), both.join(&honest_cp))?;
    must_fail(
        &a1,
        &bins,
        &both,
        &key,
        "forked log beside the honest checkpoint",
        &["fork", &format!("{n1:020}.note")],
    )
    .await?;
    Ok(())
}
