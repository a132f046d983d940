//! Witnessing end to end, short of the federation link (which the driver
//! wires to `focal_relay::audit::witness`): two witnesses (the ARINSA and
//! GFP relays' witness components, each on its own sled store) cosign
//! CARIN's real relay log; the relay serves the cosignatures with its
//! checkpoint, and `focal audit verify --witness … --require 2` accepts
//! them. A relay that forks its log gets no cosignature from witnesses that
//! saw the honest log, so a brand-new auditor requiring one refuses the
//! fork that it could not otherwise detect.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use focal_proto::audit::WitnessKey;
use focal_proto::pb;
use focal_proto::{Identity, Role};
use focal_relay::audit::witness::{Witness, accept_cosignature, cosign_request, hello_log_key};
use focal_relay::audit::{AuditLog, LogSigner};
use focal_tests::Federation;

use crate::{fetch_and_verify, json_lines, log_key, ok, quiet, run};

/// A witness on its own sled store under `dir`.
fn witness(dir: &Path, name: &str) -> Result<(sled::Db, Witness)> {
    let db = sled::open(dir.join("sled"))?;
    let tree = db.open_tree("focal")?;
    let signer = Witness::load_or_create_key(&dir.join("witness.key"), name)?;
    Ok((db, Witness::open(tree, signer)?))
}

/// With `relay` stopped: opens its log, checkpoints it, asks each witness
/// to cosign (as over the federation link from `relay`, its certificate
/// identity) and stores what they return. Returns the refusals.
async fn cosign_round(
    relay: &Identity,
    data_dir: &Path,
    origin: &str,
    witnesses: &[(Witness, WitnessKey)],
) -> Result<Vec<String>> {
    let db = sled::open(data_dir.join("sled"))?;
    let tree = db.open_tree("focal")?;
    let mut log = AuditLog::open(tree, LogSigner::load_or_create(&data_dir.join("audit-log.key"), origin)?)?;
    let reader = log.reader();
    let cp = log.checkpoint(focal_client::util::now_ms(), true)?;
    let hello = pb::Hello {
        log_origin: reader.origin().to_owned(),
        log_key: hello_log_key(&reader.verifier_key())?,
        witness_key: vec![],
        ..Default::default()
    };
    let mut refusals = Vec::new();
    for (w, key) in witnesses {
        let old = w.head(origin).map_or(0, |h| h.size);
        let resp = w.cosign_for_peer(relay, &hello, &cosign_request(&reader, &cp, old)?).await;
        match accept_cosignature(&reader, &cp.note, &resp, key) {
            Ok(_) => {}
            Err(e) => refusals.push(e.to_string()),
        }
    }
    db.flush_async().await?;
    Ok(refusals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosigned_checkpoints_verify_and_a_fork_gets_no_cosignature() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut honest =
        Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let auditor = honest.add_member("audit@carin", Role::Auditor)?.clone();
    let key = log_key(&auditor).await?;
    let origin = key.split('+').next().context("origin")?.to_owned();
    let a = honest.client("nl-fiod@carin").await?;
    for i in 0..5 {
        a.send(&crate::draft(&["be-ocsc@carin"], "witnessed", &format!("{i}")), quiet()).await?;
    }

    let wdir = honest.dir().join("witnesses");
    let mut ws = Vec::new();
    let mut dbs = Vec::new();
    for name in ["focal/arinsa/relay.arinsa/witness", "focal/gfp/relay.gfp/witness"] {
        let dir = wdir.join(name.replace('/', "_"));
        std::fs::create_dir_all(&dir)?;
        let (db, w) = witness(&dir, name)?;
        let k = WitnessKey::parse(&w.verifier_key())?;
        dbs.push(db);
        ws.push((w, k));
    }
    let vkeys: Vec<String> = ws.iter().map(|(w, _)| w.verifier_key()).collect();

    // Two rounds (first contact, then growth with a consistency proof).
    for round in 0..2 {
        let r = honest.relay_mut("carin");
        r.stop().await?;
        let refusals =
            cosign_round(&r.config.relay_identity(), &r.config.data_dir.clone(), &origin, &ws).await?;
        ensure!(refusals.is_empty(), "round {round}: {refusals:?}");
        r.start().await?;
        let dir = honest.dir().join("audit");
        fetch_and_verify(&auditor, &bins, &dir, &key).await?;
        let d = dir.to_str().unwrap();
        let mut args = vec!["--json", "audit", "verify", "--dir", d, "--key", &key, "--require", "2"];
        for v in &vkeys {
            args.extend(["--witness", v.as_str()]);
        }
        let v = json_lines(&ok(&auditor, &bins, &args).await?)?;
        ensure!(v[0]["cosigned_by"].as_array().map(Vec::len) == Some(2), "{v:?}");
        eprintln!("round {round}: size {} cosigned by {}", v[0]["size"], v[0]["cosigned_by"]);
        // Three required of two witnesses: refused, naming the count.
        *args.iter_mut().find(|a| **a == "2").unwrap() = "3";
        let out = run(&auditor, &bins, &args[1..]).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(1) && stderr.contains("3 required, 2 valid"), "{stderr}");
        a.send(&crate::draft(&["be-ocsc@carin"], "more", "traffic"), quiet()).await?;
    }

    // The fork: same log key, other traffic, on another relay.
    let mut forked = Federation::builder()
        .focal_point_unenrolled("nl-fiod@carin")
        .focal_point_unenrolled("be-ocsc@carin")
        .start()
        .await?;
    {
        let r = forked.relay_mut("carin");
        r.stop().await?;
        let data = r.data_dir().to_owned();
        std::fs::remove_dir_all(&data)?;
        std::fs::create_dir_all(&data)?;
        std::fs::copy(honest.relay("carin").data_dir().join("audit-log.key"), data.join("audit-log.key"))?;
        r.start().await?;
    }
    for fp in ["nl-fiod@carin", "be-ocsc@carin"] {
        forked.fp(fp).enrol().await?;
    }
    let f = forked.client("nl-fiod@carin").await?;
    for i in 0..30 {
        f.send(&crate::draft(&["be-ocsc@carin"], "forked", &format!("{i}")), quiet()).await?;
    }
    let r = forked.relay_mut("carin");
    r.stop().await?;
    let refusals = cosign_round(&r.config.relay_identity(), &r.config.data_dir.clone(), &origin, &ws).await?;
    ensure!(refusals.len() == 2, "both witnesses must refuse the fork: {refusals:?}");
    for e in &refusals {
        ensure!(e.contains("refused to cosign") && e.contains("fork"), "{e}");
    }
    eprintln!("fork refused by witnesses: {}", refusals[0]);
    r.start().await?;
    // A brand-new auditor of the forking relay: the log is consistent and
    // validly signed, so only the missing cosignatures give it away.
    let newcomer = forked.add_member("audit-new@carin", Role::Auditor)?.clone();
    let dir = forked.dir().join("audit-new");
    let size = fetch_and_verify(&newcomer, &bins, &dir, &key).await?;
    let d = dir.to_str().unwrap();
    let mut args = vec!["audit", "verify", "--dir", d, "--key", &key, "--require", "1"];
    for v in &vkeys {
        args.extend(["--witness", v.as_str()]);
    }
    let out = run(&newcomer, &bins, &args).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1) && stderr.contains("1 required, 0 valid"), "{stderr}");
    eprintln!("forked log of {size} entries, new auditor requiring a witness: {}", stderr.trim());
    drop(dbs);
    Ok(())
}
