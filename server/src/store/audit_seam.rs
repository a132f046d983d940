//! The store's single seam to the audit log (`crate::audit`): the writer
//! stages every audit record through [`AuditSeam`] in the same `sled::Batch`
//! as the queue change it records, marks it committed or abandoned with the
//! batch, and after each durable flush lets the log sign a checkpoint (at
//! most one per `audit.checkpoint_interval_secs`), so checkpoints only ever
//! cover fsynced leaves.

use std::path::Path;

use focal_proto::pb;

use crate::RelayError;
use crate::audit::{AuditLog, AuditReader, LogSigner};

/// The audit log as the writer sees it.
pub(crate) struct AuditSeam {
    log: AuditLog,
    interval_ms: i64,
    last_checkpoint_ms: Option<i64>,
    /// Records staged in the batch under construction, counted once durable.
    staged: Vec<pb::AuditRecord>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl AuditSeam {
    /// Opens the log in `tree`, with the checkpoint key at `key_path`
    /// (created on first start).
    pub(crate) fn open(
        tree: sled::Tree,
        files: super::durable::SledFiles,
        key_path: &Path,
        origin: &str,
        checkpoint_interval_secs: u64,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Self, RelayError> {
        let signer = LogSigner::load_or_create(key_path, origin)?;
        let log = AuditLog::open_durable(tree, signer, files)?;
        let interval_ms = (checkpoint_interval_secs.max(1) as i64).saturating_mul(1000);
        Ok(AuditSeam { log, interval_ms, last_checkpoint_ms: None, staged: Vec::new(), metrics })
    }

    /// A read view for the Audit service and proofs.
    pub(crate) fn reader(&self) -> AuditReader {
        self.log.reader()
    }

    /// Refuses a record the log would refuse, before anything is staged.
    pub(crate) fn validate(record: &pb::AuditRecord) -> Result<(), RelayError> {
        focal_proto::audit::validate_record(record).map_err(|e| RelayError::Audit(e.to_string()))
    }

    /// Adds `record` to `batch`; returns its leaf index.
    pub(crate) fn stage(
        &mut self,
        record: &pb::AuditRecord,
        batch: &mut sled::Batch,
    ) -> Result<u64, RelayError> {
        let leaf = self.log.stage(record, batch)?;
        self.staged.push(record.clone());
        Ok(leaf)
    }

    /// Writes the staged records' leaves and hashes into `batch` (one key
    /// each for the batch); call it once, just before applying the batch.
    pub(crate) fn seal(&mut self, batch: &mut sled::Batch) {
        self.log.seal(batch);
    }

    /// The batch holding the staged records was applied.
    pub(crate) fn committed(&mut self) {
        self.log.committed();
    }

    /// The batch was not applied: forget what was staged.
    pub(crate) fn abandon(&mut self) {
        self.staged.clear();
        self.log.abandon();
    }

    /// The writer failed: no more checkpoints (see `AuditLog::mark_broken`).
    pub(crate) fn broken(&self) {
        self.log.mark_broken();
    }

    /// Called after a successful flush: the committed leaves are durable
    /// (auditors may fetch them); signs a checkpoint when the interval has
    /// passed and the log grew.
    pub(crate) fn flushed(&mut self, now_ms: i64) {
        self.log.flushed();
        for record in self.staged.drain(..) {
            self.metrics.on_audit(&record);
        }
        let due = self.last_checkpoint_ms.is_none_or(|t| now_ms.saturating_sub(t) >= self.interval_ms);
        if !due || self.log.size() == 0 {
            return;
        }
        match self.log.checkpoint(now_ms, false) {
            Ok(_) => self.last_checkpoint_ms = Some(now_ms),
            Err(e) => tracing::warn!(error = %e, "audit checkpoint failed; retrying after the next commit"),
        }
    }
}
