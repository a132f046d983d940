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

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use focal_proto::audit::{self, Hash, NoteSigner};
use focal_proto::pb;
use tlog_tiles::tlog;

pub use service::AuditService;
pub use store::AuditReader;
use store::{CheckpointState, Shared, StoreHashes, err};

use crate::RelayError;

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

/// Writes a new key to `path` (mode 0600, via a temporary file and rename).
fn create_key_file(path: &Path) -> Result<Vec<u8>, RelayError> {
    let der = NoteSigner::generate_pkcs8().map_err(err)?;
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| err(format!("writing log key {}: {e}", path.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(&der).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
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
