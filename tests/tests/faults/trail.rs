//! [`Trail`]: one relay's audit log as an auditor follows it through a
//! fault run. Each [`Trail::observe`] asks the relay for a fresh signed
//! checkpoint, checks its signature and keeps it, and fetches the new
//! entries into a local directory with the client library
//! (`focal_client::audit::fetch`, which itself refuses a checkpoint that
//! does not extend the one it accepted before). [`Trail::finish`] proves
//! every kept checkpoint consistent with the one before it (consistency
//! proofs from the relay, checked with `focal_proto::audit`) and verifies
//! the fetched log offline (`focal_client::audit::verify`).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use focal_proto::audit::{LogKey, TreeHead, hashes_from_bytes, verify_consistency};
use focal_proto::pb;
use focal_tests::{Federation, FocalPoint};

/// A relay's log as followed by its network's auditor.
pub(crate) struct Trail {
    network: String,
    auditor: FocalPoint,
    key: String,
    dir: PathBuf,
    heads: Vec<TreeHead>,
}

impl Trail {
    /// Adds `auditor@<network>` to the federation and starts following its log.
    pub(crate) async fn new(fed: &mut Federation, network: &str) -> Result<Trail> {
        let auditor = fed.add_member(&format!("auditor@{network}"), focal_proto::Role::Auditor)?.clone();
        let info = auditor
            .client()
            .await?
            .audit()
            .get_log_info(pb::GetCheckpointRequest { fresh: false })
            .await?
            .into_inner();
        let dir = fed.dir().join(format!("trail-{network}"));
        Ok(Trail { network: network.into(), auditor, key: info.verifier_key, dir, heads: Vec::new() })
    }

    /// Checkpoints kept so far.
    pub(crate) fn checkpoints(&self) -> usize {
        self.heads.len()
    }

    /// Size of the last checkpoint kept.
    pub(crate) fn size(&self) -> u64 {
        self.heads.last().map_or(0, |h| h.size)
    }

    /// Takes a fresh checkpoint from the (running) relay and fetches the log.
    pub(crate) async fn observe(&mut self) -> Result<()> {
        let what = || format!("audit log of {}", self.network);
        let client = self.auditor.client().await.with_context(what)?;
        let info = client
            .audit()
            .get_log_info(pb::GetCheckpointRequest { fresh: true })
            .await
            .with_context(what)?
            .into_inner();
        let note = info.checkpoint.context("log info without a checkpoint")?.note;
        let cp = LogKey::parse(&self.key)?.verify_checkpoint(&note).with_context(what)?;
        self.heads.push(cp.head());
        focal_client::audit::fetch(&mut client.audit(), &self.dir, &self.key)
            .await
            .with_context(|| format!("fetching the {}", what()))?;
        Ok(())
    }

    /// Proves each kept checkpoint consistent with the previous one, then
    /// verifies the fetched log offline. Returns the verified size.
    pub(crate) async fn finish(&mut self) -> Result<u64> {
        self.observe().await?;
        let mut audit = self.auditor.client().await?.audit();
        for pair in self.heads.windows(2) {
            let (old, new) = (&pair[0], &pair[1]);
            ensure!(
                new.size >= old.size,
                "{}: checkpoint of size {} after one of size {} (rollback)",
                self.network,
                new.size,
                old.size
            );
            if new.size == old.size {
                ensure!(new.root == old.root, "{}: two roots for size {}", self.network, old.size);
                continue;
            }
            if old.size == 0 {
                continue; // the empty tree is a prefix of every tree
            }
            let proof = audit
                .get_consistency_proof(pb::ConsistencyProofRequest { old_size: old.size, new_size: new.size })
                .await?
                .into_inner();
            verify_consistency(old, new, &hashes_from_bytes(&proof.hashes)?).with_context(|| {
                format!("{}: checkpoint {} -> {} not consistent", self.network, old.size, new.size)
            })?;
        }
        let report = focal_client::audit::verify(&self.dir, &self.key, &[], 0)
            .with_context(|| format!("offline verification of the audit log of {}", self.network))?;
        ensure!(
            report.size >= self.size(),
            "{}: verified {} entries, last checkpoint {}",
            self.network,
            report.size,
            self.size()
        );
        Ok(report.size)
    }
}
