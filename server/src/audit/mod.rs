//! The network's audit log at this relay, stored in the relay's sled tree
//! under the `a/` key prefix, written in the same batch as the queue change
//! it records.
//!
//! The store writer owns the [`AuditLog`]: for each state change it calls
//! [`AuditLog::stage`] (several times per batch if needed), then
//! [`AuditLog::seal`] (which writes the batch's leaves and hashes as one key
//! each), applies the batch, then calls [`AuditLog::committed`] — or
//! [`AuditLog::abandon`] if the batch was dropped, and after the
//! group-commit flush [`AuditLog::flushed`]. Readers ([`AuditReader`], the gRPC
//! [`service::AuditService`]) see only committed leaves and never take the
//! writer's lock. Checkpoints must cover only durable leaves: call
//! [`AuditLog::checkpoint`] after the group-commit flush that made them so
//! ([`AuditReader::fresh_checkpoint`] flushes by itself).
//!
//! Committed is not durable: between `committed` and `flushed` a crash can
//! lose the batch, and the next leaves written at those indexes are other
//! records. So auditors are served entries and proofs only up to the
//! durable size ([`AuditReader::durable_size`]: what was stored at open,
//! flushed since, or covered by a checkpoint); a larger explicit size is
//! refused (OUT_OF_RANGE, naming the durable size).

mod service;
mod store;
pub mod witness;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use focal_proto::audit::{self, Hash, NoteSigner};
use focal_proto::{Identity, pb};
use tlog_tiles::tlog;

pub use service::AuditService;
pub use store::AuditReader;
use store::{CheckpointState, Shared, StoreHashes, err};

use crate::RelayError;

/// The audit-log origin of the relay whose certificate identity is
/// `relay`: `focal/<network>/<name>` (the default of `audit.origin`). A
/// witness cosigns a peer's log only under this origin, derived from the
/// peer's authenticated certificate, never the one its Hello claims.
pub fn relay_origin(relay: &Identity) -> String {
    format!("focal/{}/{}", relay.network, relay.name)
}

/// Signs checkpoints (Ed25519 log key, signed-note format).
pub struct LogSigner {
    signer: NoteSigner,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner").field("verifier_key", &self.verifier_key()).finish()
    }
}

impl LogSigner {
    /// Loads `path` (PKCS#8 Ed25519) or creates it with mode 0600.
    pub fn load_or_create(path: &Path, origin: &str) -> Result<Self, RelayError> {
        let der = match std::fs::read(path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(path)?,
            Err(e) => return Err(err(format!("reading log key {}: {e}", path.display()))),
        };
        let signer = NoteSigner::from_pkcs8(origin, &der)
            .map_err(|e| err(format!("log key {} with origin {origin:?}: {e}", path.display())))?;
        Ok(LogSigner { signer })
    }

    /// A signer from PKCS#8 bytes (tests, key management tools).
    pub fn from_pkcs8(origin: &str, der: &[u8]) -> Result<Self, RelayError> {
        Ok(LogSigner { signer: NoteSigner::from_pkcs8(origin, der).map_err(err)? })
    }

    /// The checkpoint origin line, e.g. `focal.example/carin/relay.carin`.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The signed-note verifier key string auditors configure.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }
}

/// Writes a new key to `path` (mode 0600), durably: through a temporary
/// file fsynced before its rename, and the directory fsynced after it
/// (`focal_certs::files::replace`). Otherwise a power loss soon after the
/// first start can take the key back, the next start makes another one,
/// and the relay refuses to start because its stored checkpoints no longer
/// verify (the witness key likewise: its cosignatures would no longer
/// match the key peers pinned).
fn create_key_file(path: &Path) -> Result<Vec<u8>, RelayError> {
    let der = NoteSigner::generate_pkcs8().map_err(err)?;
    focal_certs::files::replace(path, &der, focal_certs::files::Mode::Secret)
        .map_err(|e| err(format!("writing key {e}")))?;
    Ok(der)
}

/// The log over the relay's single sled tree. One writer at a time (the
/// store's writer thread owns it).
pub struct AuditLog {
    shared: Arc<Shared>,
    /// Leaves staged in the current batch.
    pending_leaves: Vec<Vec<u8>>,
    /// How many of them the last [`AuditLog::seal`] wrote.
    sealed: usize,
    /// Their stored hashes, from stored index `stored_hash_count(size)` on.
    pending_hashes: Vec<Hash>,
}

impl AuditLog {
    /// Opens the log stored in `tree` (size and hashes under `a/`).
    pub fn open(tree: sled::Tree, signer: LogSigner) -> Result<Self, RelayError> {
        AuditLog::open_with(tree, signer, None)
    }

    /// As [`AuditLog::open`], for a log in a relay store's tree: `files`
    /// (that store's sled files) are synced whenever the log makes itself
    /// durable on its own (an auditor's fresh checkpoint).
    pub fn open_durable(
        tree: sled::Tree,
        signer: LogSigner,
        files: crate::store::durable::SledFiles,
    ) -> Result<Self, RelayError> {
        AuditLog::open_with(tree, signer, Some(files))
    }

    fn open_with(
        tree: sled::Tree,
        signer: LogSigner,
        files: Option<crate::store::durable::SledFiles>,
    ) -> Result<Self, RelayError> {
        let (size, latest) = store::recover(&tree, &signer)?;
        let shared = Shared {
            tree,
            signer,
            size: size.into(),
            // What sled gives back at open is what survived; a relay store's
            // files were synced as it opened (`SledFiles::open`).
            durable: size.into(),
            checkpoint: Mutex::new(CheckpointState { latest, issued_at_ms: None }),
            files,
            broken: false.into(),
        };
        Ok(AuditLog {
            shared: Arc::new(shared),
            pending_leaves: Vec::new(),
            sealed: 0,
            pending_hashes: Vec::new(),
        })
    }

    /// A read view sharing this log's state.
    pub fn reader(&self) -> AuditReader {
        AuditReader { shared: self.shared.clone() }
    }

    /// Stages `record` (encoded, the exact leaf bytes) and its Merkle hashes
    /// for `batch` (its msg-id index key and the new size go in now); returns
    /// its leaf index. Before applying the batch call [`AuditLog::seal`];
    /// after it is applied, [`AuditLog::committed`]; if it was not applied,
    /// [`AuditLog::abandon`].
    pub fn stage(&mut self, record: &pb::AuditRecord, batch: &mut sled::Batch) -> Result<u64, RelayError> {
        let leaf = audit::encode_record(record).map_err(err)?;
        let size = self.size();
        let index = size + self.pending_leaves.len() as u64;
        let base = tlog::stored_hash_count(size);
        let reader =
            StoreHashes { tree: &self.shared.tree, pending_base: base, pending: &self.pending_hashes };
        let hashes = tlog::stored_hashes(index, &leaf, &reader)
            .map_err(|e| err(format!("hashing leaf {index}: {e}")))?;
        let first = tlog::stored_hash_index(0, index);
        if first != base + self.pending_hashes.len() as u64 {
            return Err(err(format!("stored hash {first} of leaf {index} does not follow the staged ones")));
        }
        batch.insert(store::SIZE_KEY, &(index + 1).to_be_bytes()[..]);
        if record.msg_id.len() == 16 {
            batch.insert(store::msg_key(&record.msg_id, index), &[][..]);
        }
        self.pending_hashes.extend(hashes);
        self.pending_leaves.push(leaf);
        Ok(index)
    }

    /// Adds the staged leaves and their hashes to `batch`, one key each for
    /// the whole batch (`a/L/<first leaf>`, `a/H/<first hash>`): a few keys
    /// per batch instead of about three per record. Call it once, after the
    /// last [`AuditLog::stage`] and before applying the batch.
    pub fn seal(&mut self, batch: &mut sled::Batch) {
        if self.pending_leaves.is_empty() {
            return;
        }
        let size = self.size();
        batch.insert(store::leaf_pack_key(size), store::encode_leaf_pack(&self.pending_leaves));
        let hashes: Vec<u8> = self.pending_hashes.iter().flat_map(|h| h.0).collect();
        batch.insert(store::hash_pack_key(tlog::stored_hash_count(size)), hashes);
        self.sealed = self.pending_leaves.len();
    }

    /// The batch holding every staged leaf, sealed, was applied: they are
    /// committed.
    ///
    /// # Panics
    /// If leaves were staged after the last [`AuditLog::seal`]: the batch
    /// did not hold them, and counting them would make the log claim
    /// entries it never stored.
    pub fn committed(&mut self) {
        assert_eq!(
            self.sealed,
            self.pending_leaves.len(),
            "audit log: a batch was applied without AuditLog::seal after its last stage"
        );
        let size = self.size() + self.pending_leaves.len() as u64;
        self.shared.size.store(size, Ordering::Release);
        self.abandon();
    }

    /// The flush after the last committed batch succeeded: every committed
    /// leaf is durable, and may be served to auditors.
    pub fn flushed(&mut self) {
        self.shared.durable.fetch_max(self.size(), Ordering::AcqRel);
    }

    /// The store's writer failed a batch or an fsync and stops: committed
    /// leaves may not be durable (a later fsync can succeed after a lost
    /// write-back), so no checkpoint is signed from now on; the restart's
    /// recovery decides what the log holds.
    pub fn mark_broken(&self) {
        self.shared.broken.store(true, Ordering::Release);
    }

    /// The batch was dropped: forget every staged leaf.
    pub fn abandon(&mut self) {
        self.pending_leaves.clear();
        self.pending_hashes.clear();
        self.sealed = 0;
    }

    /// Committed size.
    pub fn size(&self) -> u64 {
        self.shared.size.load(Ordering::Acquire)
    }

    /// Signs a checkpoint of the committed tree (at most one new one per
    /// second unless `force`), stores it, returns it. Call it only once the
    /// committed leaves are flushed to disk: a checkpoint of leaves lost in a
    /// crash would later look like a rollback.
    pub fn checkpoint(&mut self, now_ms: i64, force: bool) -> Result<pb::Checkpoint, RelayError> {
        self.shared.issue_checkpoint(self.size(), now_ms, force)
    }
}

/// Records and appends for the audit module's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use focal_proto::pb;

    use super::AuditLog;

    /// An ACCEPTED record numbered `i` (its msg id is `i`).
    pub(crate) fn record(i: u64) -> pb::AuditRecord {
        pb::AuditRecord {
            version: 1,
            kind: pb::AuditKind::Accepted as i32,
            time_ms: 1_700_000_000_000 + i as i64,
            msg_id: (i as u128).to_be_bytes().to_vec(),
            sender: "nl-fiod@carin".into(),
            recipients: vec!["be-ocsc@carin".into()],
            ..Default::default()
        }
    }

    /// Records `range` staged, sealed and applied as the store writer does
    /// (committed, not yet flushed).
    pub(crate) fn append(log: &mut AuditLog, tree: &sled::Tree, range: std::ops::Range<u64>) {
        let mut batch = sled::Batch::default();
        for i in range {
            log.stage(&record(i), &mut batch).unwrap();
        }
        log.seal(&mut batch);
        tree.apply_batch(batch).unwrap();
        log.committed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log and witness keys go through the durable write
    /// (`focal_certs::files::replace`, whose own test covers the fsyncs):
    /// private, nothing but the key left in the directory, the same key on
    /// the next start.
    #[test]
    fn log_and_witness_keys_are_created_private_and_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let log_path = tmp.path().join("audit-log.key");
        let witness_path = tmp.path().join("witness.key");
        let origin = "focal/carin/relay-carin";
        let log = LogSigner::load_or_create(&log_path, origin).unwrap();
        let witness =
            witness::Witness::load_or_create_key(&witness_path, "focal/carin/relay-carin/witness").unwrap();
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["audit-log.key", "witness.key"]);
        #[cfg(unix)]
        for p in [&log_path, &witness_path] {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
        let again = LogSigner::load_or_create(&log_path, origin).unwrap();
        assert_eq!(again.verifier_key(), log.verifier_key());
        let again =
            witness::Witness::load_or_create_key(&witness_path, "focal/carin/relay-carin/witness").unwrap();
        assert_eq!(again.verifier_key(), witness.verifier_key());

        // A key that cannot be written is an error naming the file.
        let missing = tmp.path().join("no-such-dir").join("audit-log.key");
        let e = LogSigner::load_or_create(&missing, origin).unwrap_err().to_string();
        assert!(e.contains("no-such-dir/audit-log.key"), "{e}");
    }
}
