//! Who may read a network's audit log, over real mTLS: CARIN's auditor and
//! admin may; an auditor of ARINSA (valid certificate, ARINSA's CA)
//! connecting to CARIN's relay is refused on every Audit RPC, and so is a
//! CARIN focal point, through the library and through `focal audit fetch`.

use std::path::PathBuf;

use std::error::Error as _;

use anyhow::{Context, Result, ensure};
use focal_client::ProfileFile;
use focal_proto::pb::{self, inclusion_proof_request::Leaf};
use focal_proto::{Address, Role};
use focal_tests::{Federation, FocalPoint};
use tonic::Code;

use crate::{fetch_and_verify, log_key, run};

/// Calls every Audit RPC as `fp`, each on a fresh connection (a TLS
/// refusal closes the connection it happens on); returns each outcome.
async fn every_rpc(fp: &FocalPoint) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let mut out = Vec::new();
    for rpc in ["GetLogInfo", "GetEntries", "GetInclusionProof", "GetConsistencyProof"] {
        let client = match fp.client().await {
            Ok(c) => c,
            Err(e) => {
                out.push((rpc, Err(tonic::Status::unknown(format!("transport error: connect: {e:#}")))));
                continue;
            }
        };
        let mut a = client.audit();
        let r = match rpc {
            "GetLogInfo" => a.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.map(drop),
            "GetEntries" => match a.get_entries(pb::EntriesRequest { start: 0, end: 0 }).await {
                Ok(resp) => resp.into_inner().message().await.map(drop),
                Err(e) => Err(e),
            },
            "GetInclusionProof" => {
                let req = pb::InclusionProofRequest { tree_size: 0, leaf: Some(Leaf::Index(0)) };
                a.get_inclusion_proof(req).await.map(drop)
            }
            _ => {
                let req = pb::ConsistencyProofRequest { old_size: 0, new_size: 0 };
                a.get_consistency_proof(req).await.map(drop)
            }
        };
        out.push((rpc, r));
    }
    out
}

/// Every RPC refused: by the Audit service (PERMISSION_DENIED naming
/// `needle`) or, with `tls_ok`, already by the relay's TLS layer (fatal
/// alert `access_denied` to a client certificate it does not admit, or the
/// connection that alert closed).
fn all_denied(
    who: &str,
    results: &[(&str, Result<(), tonic::Status>)],
    needle: &str,
    tls_ok: bool,
) -> Result<Vec<String>> {
    let mut how = Vec::new();
    for (rpc, r) in results {
        let status = r.as_ref().err().with_context(|| format!("{who} was served {rpc}"))?;
        let full = format!("{status:?}");
        if tls_ok && (full.contains("transport error") || full.contains("Error(Transport")) {
            // The alert, or the connection it closed (broken pipe, reset).
            how.push(format!(
                "{rpc}: refused by TLS ({})",
                status.source().map_or(full.clone(), |e| format!("{e:?}"))
            ));
            continue;
        }
        ensure!(status.code() == Code::PermissionDenied, "{who} {rpc}: {status:?}");
        ensure!(
            status.message().contains(needle),
            "{who} {rpc}: {:?} should mention {needle:?}",
            status.message()
        );
        how.push(format!("{rpc}: PERMISSION_DENIED"));
    }
    Ok(how)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_networks_own_auditors_read_its_log() -> Result<()> {
    let bins = focal_tests::bins!();
    let mut fed = Federation::builder()
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .focal_point("za-afu@arinsa")
        .start()
        .await?;
    let a = fed.client("nl-fiod@carin").await?;
    a.send(&crate::draft(&["be-ocsc@carin"], "s", "b"), crate::quiet()).await?;

    // CARIN's auditor and admin: served.
    let own = fed.add_member("audit@carin", Role::Auditor)?.clone();
    let key = log_key(&own).await?;
    let size = fetch_and_verify(&own, &bins, &fed.dir().join("own"), &key).await?;
    ensure!(size >= 1);
    let admin = fed.add_member("secretariat@carin", Role::Admin)?.clone();
    for (rpc, r) in every_rpc(&admin).await {
        r.with_context(|| format!("admin of carin refused {rpc}"))?;
    }

    // ARINSA's auditor, with a profile pointing at CARIN's relay.
    let foreign = fed.add_member("audit@arinsa", Role::Auditor)?.clone();
    let carin = fed.relay("carin");
    let dir = fed.dir().join("arinsa-auditor-at-carin");
    std::fs::create_dir_all(&dir)?;
    let profile = ProfileFile {
        relay: carin.grpc_addr().to_string(),
        relay_network: "carin".into(),
        relay_name: Some(carin.name.clone()),
        relay_server_name: None,
        cert: foreign.cert.cert.clone(),
        key: foreign.cert.key.clone(),
        trust_bundle: fed.pki.trust_bundle_path(),
        crls: fed.pki.crl_paths(),
        key_dir: PathBuf::from("keys"),
        store_dir: PathBuf::from("store"),
        retention: None,
    };
    let profile_path = dir.join("profile.toml");
    std::fs::write(&profile_path, profile.to_toml())?;
    let intruder = FocalPoint {
        address: Address::parse_member("audit@arinsa")?,
        dir: dir.clone(),
        profile_path,
        cert: foreign.cert.clone(),
    };
    // The relay admits only its own network's members on the client API:
    // its TLS layer refuses the certificate (and audits that); were it let
    // through, the Audit service would refuse it by network.
    let how = all_denied("auditor of arinsa", &every_rpc(&intruder).await, "network carin", true)?;
    eprintln!("arinsa auditor at carin, library: {how:?}");
    let d = dir.join("log");
    let out = run(&intruder, &bins, &["audit", "fetch", "--dir", d.to_str().unwrap(), "--key", &key]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{stderr}");
    // TLS 1.3: the client learns of the refusal when it reads the alert
    // ("received fatal alert: AccessDenied"), or only when the closed
    // connection breaks its first request ("broken pipe", "connection
    // closed"); either way, exit 1 and nothing fetched. The relay's own log
    // (below) names the reason.
    ensure!(
        stderr.contains("PERMISSION_DENIED") && stderr.contains("arinsa")
            || ["AccessDenied", "broken pipe", "connection closed"].iter().any(|n| stderr.contains(n)),
        "{stderr}"
    );
    eprintln!("arinsa auditor at carin, CLI: {}", stderr.trim());
    ensure!(!d.join("entries.bin").exists(), "nothing may be written for a refused fetch");
    // CARIN's own log records the refusal, naming the certificate.
    let own_dir = fed.dir().join("own");
    fetch_and_verify(&own, &bins, &own_dir, &key).await?;
    let refusals: Vec<_> = crate::export(&own, &bins, &own_dir)
        .await?
        .into_iter()
        .filter(|r| r["kind"] == "certificate-refused" && r.to_string().contains("arinsa"))
        .collect();
    ensure!(!refusals.is_empty(), "no certificate-refused record names the arinsa auditor");
    eprintln!("carin's log: {}", refusals[0]);

    // A focal point of CARIN: refused.
    let fp = fed.fp("nl-fiod@carin");
    all_denied("focal point", &every_rpc(fp).await, "role fp", false)?;
    let d = fp.dir.join("log");
    let out = run(fp, &bins, &["audit", "fetch", "--dir", d.to_str().unwrap(), "--key", &key]).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1) && stderr.contains("PERMISSION_DENIED"), "{stderr}");
    eprintln!("focal point at carin: {}", stderr.trim());
    Ok(())
}
