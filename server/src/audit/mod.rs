//! The network's audit log at this relay, stored in the relay's sled tree
//! under the `a/` key prefix, written in the same batch as the queue change
//! it records.
//!
//! CONTRACT (implemented by the audit work; signatures fixed):
#![allow(clippy::todo, unused_variables, missing_docs, dead_code)]

use focal_proto::pb;

/// Signs checkpoints (Ed25519 log key, signed-note format).
pub struct LogSigner {
    _p: (),
}

impl LogSigner {
    /// Loads `path` (PKCS#8 Ed25519) or creates it with mode 0600.
    pub fn load_or_create(path: &std::path::Path, origin: &str) -> Result<Self, crate::RelayError> {
        todo!()
    }
    /// The checkpoint origin line, e.g. `focal.example/carin/relay.carin`.
    pub fn origin(&self) -> &str {
        todo!()
    }
    /// The signed-note verifier key string auditors configure.
    pub fn verifier_key(&self) -> String {
        todo!()
    }
}

/// The log over the relay's single sled tree. One writer at a time (the
/// store's writer task owns it).
pub struct AuditLog {
    _p: (),
}

impl AuditLog {
    /// Opens the log stored in `tree` (size and hashes under `a/`).
    pub fn open(tree: sled::Tree, signer: LogSigner) -> Result<Self, crate::RelayError> {
        todo!()
    }
    /// Adds `record` (encoded, the exact leaf bytes) and its Merkle hashes to
    /// `batch`; returns its leaf index. After the batch is applied call
    /// [`AuditLog::committed`]; if it was not applied, [`AuditLog::abandon`].
    pub fn stage(
        &mut self,
        record: &pb::AuditRecord,
        batch: &mut sled::Batch,
    ) -> Result<u64, crate::RelayError> {
        todo!()
    }
    pub fn committed(&mut self) {
        todo!()
    }
    pub fn abandon(&mut self) {
        todo!()
    }
    /// Committed size.
    pub fn size(&self) -> u64 {
        todo!()
    }
    /// Signs a checkpoint of the committed tree (at most one new one per
    /// second unless `force`), stores it, returns it.
    pub fn checkpoint(&mut self, now_ms: i64, force: bool) -> Result<pb::Checkpoint, crate::RelayError> {
        todo!()
    }
}
