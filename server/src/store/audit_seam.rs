//! The store's single seam to the audit log: the writer stages every audit
//! record through [`AuditSeam`] in the same `sled::Batch` as the queue change
//! it records.
//!
//! TEMPORARY SHIM: `crate::audit::AuditLog` is still a contract stub on main,
//! so this seam stores leaves itself under `z/audit-shim/<index>` (no Merkle
//! hashes, no checkpoints, no proofs). When the audit log lands, the bodies
//! below become calls to `AuditLog::{open, stage, committed, abandon, size}`
//! and the shim prefix goes away; nothing else in the relay changes.

use focal_proto::pb;
use prost::Message;

use crate::RelayError;

const SHIM_PREFIX: &[u8] = b"z/audit-shim/";

/// The audit log as the writer sees it.
pub(crate) struct AuditSeam {
    committed: u64,
    staged: u64,
}

impl AuditSeam {
    /// Opens the log in `tree`. `key_path` and `origin` are for the real
    /// log's checkpoint signer.
    pub(crate) fn open(
        tree: sled::Tree,
        _key_path: &std::path::Path,
        _origin: &str,
    ) -> Result<Self, RelayError> {
        let size = match tree.scan_prefix(SHIM_PREFIX).next_back() {
            Some(kv) => {
                let (k, _) = kv.map_err(RelayError::sled("reading the audit log"))?;
                let idx = super::keys::u64_be(&k[SHIM_PREFIX.len()..]).ok_or_else(|| {
                    RelayError::Corrupt { key: super::keys::show(&k), detail: "bad index".into() }
                })?;
                idx + 1
            }
            None => 0,
        };
        Ok(AuditSeam { committed: size, staged: size })
    }

    /// Adds `record` to `batch`; returns its leaf index.
    pub(crate) fn stage(
        &mut self,
        record: &pb::AuditRecord,
        batch: &mut sled::Batch,
    ) -> Result<u64, RelayError> {
        let idx = self.staged;
        let mut key = SHIM_PREFIX.to_vec();
        key.extend_from_slice(&idx.to_be_bytes());
        batch.insert(key, record.encode_to_vec());
        self.staged += 1;
        Ok(idx)
    }

    /// The batch holding the staged records was applied.
    pub(crate) fn committed(&mut self) {
        self.committed = self.staged;
    }

    /// The batch was not applied: forget what was staged.
    pub(crate) fn abandon(&mut self) {
        self.staged = self.committed;
    }
}

/// Reads every committed leaf (tests; the real log serves entries itself).
pub(crate) fn read_leaves(tree: &sled::Tree) -> Result<Vec<pb::AuditRecord>, RelayError> {
    let mut out = Vec::new();
    for kv in tree.scan_prefix(SHIM_PREFIX) {
        let (k, v) = kv.map_err(RelayError::sled("reading the audit log"))?;
        out.push(super::records::decode(&k, &v)?);
    }
    Ok(out)
}

/// An inclusion proof of leaf `index` in the tree of `tree_size` (0 = latest).
pub(crate) fn prove(
    _tree: &sled::Tree,
    _index: u64,
    _tree_size: u64,
) -> Result<pb::InclusionProof, RelayError> {
    Err(RelayError::Audit("inclusion proofs are served once the audit log is merged (shim in place)".into()))
}
