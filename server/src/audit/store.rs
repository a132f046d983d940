//! The audit log's keys in the relay's sled tree, the Merkle hash reader
//! over them, and [`AuditReader`], a lock-free read view that the gRPC
//! service and the relay use while the store writer appends.
//!
//! Keys (all under `a/`, integers big-endian so that keys sort by number):
//! `a/L/<first index>` the leaves of one batch (each as u32 length ‖ bytes) ·
//! `a/H/<first stored hash index>` the batch's stored hashes (32 bytes each) ·
//! `a/size` committed size · `a/c/<size>` signed checkpoint note ·
//! `a/m/<16-byte msg id><index>` (empty value) · `a/w/<size><witness>` cosignature line ·
//! `a/v/<witness>` the largest size that witness cosigned (u64).
//! Stores written before batches were packed hold one key per leaf
//! (`a/l/<index>`) and per hash (`a/h/<stored hash index>`); both forms are
//! read, and a log may hold the old form up to some index and packs after.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use focal_proto::audit::{self, Hash, HashReader, LogKey, TreeHead};
use focal_proto::pb;
use tlog_tiles::tlog;

use super::LogSigner;
use crate::RelayError;

pub(crate) const SIZE_KEY: &[u8] = b"a/size";

fn key(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

pub(crate) fn leaf_key(index: u64) -> Vec<u8> {
    key(b"a/l/", index)
}
pub(crate) fn hash_key(stored_index: u64) -> Vec<u8> {
    key(b"a/h/", stored_index)
}
pub(crate) fn leaf_pack_key(first: u64) -> Vec<u8> {
    key(LEAF_PACK, first)
}
pub(crate) fn hash_pack_key(first: u64) -> Vec<u8> {
    key(HASH_PACK, first)
}
const LEAF_PACK: &[u8] = b"a/L/";
const HASH_PACK: &[u8] = b"a/H/";

/// One batch's leaves as one value: each as u32 BE length ‖ bytes.
pub(crate) fn encode_leaf_pack(leaves: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::with_capacity(leaves.iter().map(|l| 4 + l.len()).sum());
    for l in leaves {
        v.extend_from_slice(&(l.len() as u32).to_be_bytes());
        v.extend_from_slice(l);
    }
    v
}

/// The leaves of a pack stored at `first`.
fn decode_leaf_pack(first: u64, mut v: &[u8]) -> Result<Vec<&[u8]>, RelayError> {
    let mut out = Vec::new();
    while !v.is_empty() {
        let damaged =
            || err(format!("the leaf pack at {first} is damaged (leaf {})", first + out.len() as u64));
        let (len, rest) = v.split_first_chunk::<4>().ok_or_else(damaged)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(damaged());
        }
        out.push(&rest[..len]);
        v = &rest[len..];
    }
    Ok(out)
}

/// The pack under `prefix` with the greatest first index not above `i`.
fn pack_at(tree: &sled::Tree, prefix: &[u8], i: u64) -> Result<Option<(u64, sled::IVec)>, RelayError> {
    let Some(kv) = tree.range(prefix.to_vec()..=key(prefix, i)).next_back() else { return Ok(None) };
    let (k, v) = kv.map_err(err)?;
    Ok(Some((be_u64(&k[prefix.len()..], "pack key")?, v)))
}

/// Stored hash `i`, from its batch's pack or, in an older store, its own key.
pub(crate) fn read_hash(tree: &sled::Tree, i: u64) -> Result<Option<Hash>, RelayError> {
    if let Some((first, v)) = pack_at(tree, HASH_PACK, i)? {
        if v.len() % 32 != 0 {
            return Err(err(format!("the hash pack at {first} is {} bytes, not whole hashes", v.len())));
        }
        let at = ((i - first) as usize).saturating_mul(32);
        if let Some(h) = v.get(at..at.saturating_add(32)) {
            return Ok(Some(Hash(h.try_into().map_err(err)?)));
        }
    }
    match tree.get(hash_key(i)).map_err(err)? {
        None => Ok(None),
        Some(v) => Ok(Some(Hash(
            v.as_ref().try_into().map_err(|_| err(format!("stored hash {i} is not 32 bytes")))?,
        ))),
    }
}

/// Leaf `i`, from its batch's pack or, in an older store, its own key.
pub(crate) fn read_leaf(tree: &sled::Tree, i: u64) -> Result<Option<Vec<u8>>, RelayError> {
    if let Some((first, v)) = pack_at(tree, LEAF_PACK, i)?
        && let Some(l) = decode_leaf_pack(first, &v)?.get((i - first) as usize)
    {
        return Ok(Some(l.to_vec()));
    }
    Ok(tree.get(leaf_key(i)).map_err(err)?.map(|v| v.to_vec()))
}

pub(crate) fn checkpoint_key(size: u64) -> Vec<u8> {
    key(b"a/c/", size)
}
pub(crate) fn msg_key(msg_id: &[u8], index: u64) -> Vec<u8> {
    let mut k = b"a/m/".to_vec();
    k.extend_from_slice(msg_id);
    k.extend_from_slice(&index.to_be_bytes());
    k
}
fn cosigned_index_key(witness: &str) -> Vec<u8> {
    [&b"a/v/"[..], witness.as_bytes()].concat()
}

fn cosig_key(size: u64, witness: &str) -> Vec<u8> {
    let mut k = key(b"a/w/", size);
    k.extend_from_slice(witness.as_bytes());
    k
}

pub(crate) fn err(what: impl std::fmt::Display) -> RelayError {
    RelayError::Other(format!("audit log: {what}"))
}

fn be_u64(v: &[u8], what: &str) -> Result<u64, RelayError> {
    let arr: [u8; 8] = v.try_into().map_err(|_| err(format!("{what} is {} bytes, expected 8", v.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// Reads stored hashes from the tree, and from `pending` (hashes staged in a
/// batch not yet applied, starting at stored index `pending_base`).
pub(crate) struct StoreHashes<'a> {
    pub(crate) tree: &'a sled::Tree,
    pub(crate) pending_base: u64,
    pub(crate) pending: &'a [Hash],
}

impl HashReader for StoreHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                if i >= self.pending_base && ((i - self.pending_base) as usize) < self.pending.len() {
                    return Ok(self.pending[(i - self.pending_base) as usize]);
                }
                read_hash(self.tree, i)
                    .map_err(|e| tlog::Error::InvalidInput(e.to_string()))?
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The latest checkpoint and when it was issued.
#[derive(Default)]
pub(crate) struct CheckpointState {
    pub(crate) latest: Option<pb::Checkpoint>,
    pub(crate) issued_at_ms: Option<i64>,
}

/// State shared by the writer ([`super::AuditLog`]) and every reader.
pub(crate) struct Shared {
    pub(crate) tree: sled::Tree,
    pub(crate) signer: LogSigner,
    /// Committed size: leaves below it are applied to the tree.
    pub(crate) size: AtomicU64,
    /// Durable size: leaves below it are fsynced (stored at open, flushed
    /// by the store since, or covered by a checkpoint). Never above `size`.
    /// Only these are served to auditors: a crash may replace the
    /// committed leaves above it with other records.
    pub(crate) durable: AtomicU64,
    pub(crate) checkpoint: Mutex<CheckpointState>,
    /// sled's files to sync after a flush, when the log is a relay store's.
    pub(crate) files: Option<crate::store::durable::SledFiles>,
    /// Set when the store's writer failed (see `AuditLog::mark_broken`).
    pub(crate) broken: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn hashes(&self) -> StoreHashes<'_> {
        StoreHashes { tree: &self.tree, pending_base: 0, pending: &[] }
    }

    pub(crate) fn root(&self, size: u64) -> Result<Hash, RelayError> {
        audit::tree_root(&self.hashes(), size).map_err(err)
    }

    /// Signs and stores a checkpoint of `size` unless one at least as large
    /// exists, or (`!force`) one was issued less than a second before `now_ms`.
    pub(crate) fn issue_checkpoint(
        &self,
        size: u64,
        now_ms: i64,
        force: bool,
    ) -> Result<pb::Checkpoint, RelayError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(err(
                "the store failed a write or an fsync: no checkpoint is signed until a restart has checked what is durable",
            ));
        }
        let mut st = self.checkpoint.lock().map_err(|_| err("checkpoint lock poisoned"))?;
        if let Some(latest) = &st.latest {
            let recent = st.issued_at_ms.is_some_and(|t| now_ms.saturating_sub(t) < 1000);
            if latest.size >= size || (recent && !force) {
                return Ok(latest.clone());
            }
        }
        let root = self.root(size)?;
        let note = self.signer.signer.sign_checkpoint(&TreeHead { size, root }).map_err(err)?;
        self.tree.insert(checkpoint_key(size), note.as_bytes()).map_err(err)?;
        // Callers checkpoint only flushed leaves (see `AuditLog::checkpoint`).
        self.durable.fetch_max(size, Ordering::AcqRel);
        let cp = pb::Checkpoint { note, size, root_hash: root.0.to_vec() };
        st.latest = Some(cp.clone());
        st.issued_at_ms = Some(now_ms);
        Ok(cp)
    }
}

/// Loads and checks the stored state of the log: committed size, last leaf,
/// stored hashes, and the latest checkpoint (signed by `signer`, no larger
/// than the log, with the root the entries give).
pub(crate) fn recover(
    tree: &sled::Tree,
    signer: &LogSigner,
) -> Result<(u64, Option<pb::Checkpoint>), RelayError> {
    let size = match tree.get(SIZE_KEY).map_err(err)? {
        Some(v) => be_u64(&v, "a/size")?,
        None => 0,
    };
    if size > 0 && read_leaf(tree, size - 1)?.is_none() {
        return Err(err(format!("size is {size} but leaf {} is missing: the store is damaged", size - 1)));
    }
    if read_leaf(tree, size)?.is_some() {
        return Err(err(format!("size is {size} but a leaf {size} exists: the store is damaged")));
    }
    let hashes = tlog::stored_hash_count(size);
    if hashes > 0 && read_hash(tree, hashes - 1)?.is_none() {
        return Err(err(format!("stored hash {} of a log of size {size} is missing", hashes - 1)));
    }
    let Some((_, note)) = tree.scan_prefix(b"a/c/").next_back().transpose().map_err(err)? else {
        return Ok((size, None));
    };
    let note = String::from_utf8(note.to_vec()).map_err(|_| err("latest stored checkpoint is not UTF-8"))?;
    let key = LogKey::parse(&signer.verifier_key()).map_err(err)?;
    let cp = key.verify_checkpoint(&note).map_err(|e| {
        err(format!(
            "latest stored checkpoint does not verify with this log key ({e}); was the key replaced?"
        ))
    })?;
    let head = cp.head();
    if head.size > size {
        return Err(err(format!(
            "a checkpoint of size {} was issued but only {size} entries are stored: committed entries were lost",
            head.size
        )));
    }
    let root =
        audit::tree_root(&StoreHashes { tree, pending_base: 0, pending: &[] }, head.size).map_err(err)?;
    if root != head.root {
        return Err(err(format!("the stored entries do not match the checkpoint of size {}", head.size)));
    }
    Ok((size, Some(pb::Checkpoint { note, size: head.size, root_hash: head.root.0.to_vec() })))
}

/// A read-only view of the log, cheap to clone, never blocking the writer:
/// it sees the committed size and reads the tree directly.
#[derive(Clone)]
pub struct AuditReader {
    pub(crate) shared: Arc<Shared>,
}

impl AuditReader {
    /// Committed size.
    pub fn size(&self) -> u64 {
        self.shared.size.load(Ordering::Acquire)
    }

    /// Durable size: the leaves below it survive a crash as they are. The
    /// Audit service serves entries and proofs only up to it.
    pub fn durable_size(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Refuses a tree size beyond the durable size, naming it.
    pub(crate) fn check_durable(&self, size: u64) -> Result<(), RelayError> {
        let durable = self.durable_size();
        if size > durable {
            return Err(err(format!(
                "tree size {size} is beyond the durable size {durable} of the log (entries above it are not yet fsynced)"
            )));
        }
        Ok(())
    }

    /// Checkpoint origin.
    pub fn origin(&self) -> &str {
        self.shared.signer.origin()
    }

    /// Signed-note verifier key of the log.
    pub fn verifier_key(&self) -> String {
        self.shared.signer.verifier_key()
    }

    fn check_range(&self, start: u64, end: u64) -> Result<(), RelayError> {
        let size = self.size();
        if start > end || end > size {
            return Err(err(format!("range {start}..{end} is not within the log of size {size}")));
        }
        Ok(())
    }

    /// Leaves `start..end` (exclusive), which must be committed (the Audit
    /// service also requires them durable, see [`AuditReader::durable_size`]).
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<pb::AuditEntry>, RelayError> {
        self.check_range(start, end)?;
        let tree = &self.shared.tree;
        let mut out = Vec::with_capacity((end - start).min(4096) as usize);
        let mut index = start;
        while index < end {
            // The pack holding `index` gives it and the leaves after it.
            if let Some((first, v)) = pack_at(tree, LEAF_PACK, index)? {
                let leaves = decode_leaf_pack(first, &v)?;
                let from = (index - first) as usize;
                if from < leaves.len() {
                    for l in &leaves[from..leaves.len().min(from + (end - index) as usize)] {
                        out.push(pb::AuditEntry { index, leaf: l.to_vec() });
                        index += 1;
                    }
                    continue;
                }
            }
            let leaf = tree.get(leaf_key(index)).map_err(err)?;
            let leaf = leaf.ok_or_else(|| err(format!("leaf {index} is missing from the store")))?;
            out.push(pb::AuditEntry { index, leaf: leaf.to_vec() });
            index += 1;
        }
        Ok(out)
    }

    /// One committed leaf.
    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, RelayError> {
        self.check_range(index, index.saturating_add(1))?;
        read_leaf(&self.shared.tree, index)?
            .ok_or_else(|| err(format!("leaf {index} is missing from the store")))
    }

    /// Root of the first `size` committed leaves.
    pub fn root(&self, size: u64) -> Result<Hash, RelayError> {
        self.check_range(0, size)?;
        self.shared.root(size)
    }

    /// Indexes of every committed record naming `msg_id`, in log order.
    pub fn indexes_of(&self, msg_id: &[u8]) -> Result<Vec<u64>, RelayError> {
        if msg_id.len() != 16 {
            return Err(err(format!("msg id of {} bytes, expected 16", msg_id.len())));
        }
        let size = self.size();
        let mut out = Vec::new();
        let prefix = [&b"a/m/"[..], msg_id].concat();
        for kv in self.shared.tree.scan_prefix(prefix) {
            let (k, _) = kv.map_err(err)?;
            let index = be_u64(&k[4 + 16..], "msg index key")?;
            if index < size {
                out.push(index);
            }
        }
        Ok(out)
    }

    /// Every committed record naming `msg_id`, with its index.
    pub fn records_of(&self, msg_id: &[u8]) -> Result<Vec<(u64, pb::AuditRecord)>, RelayError> {
        self.indexes_of(msg_id)?
            .into_iter()
            .map(|i| Ok((i, audit::decode_record(&self.leaf(i)?).map_err(err)?)))
            .collect()
    }

    /// The latest checkpoint issued.
    pub fn latest_checkpoint(&self) -> Option<pb::Checkpoint> {
        self.shared.checkpoint.lock().ok().and_then(|st| st.latest.clone())
    }

    /// The stored checkpoint of exactly `size`, if one was issued.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<pb::Checkpoint>, RelayError> {
        let Some(note) = self.shared.tree.get(checkpoint_key(size)).map_err(err)? else { return Ok(None) };
        let root = self.root(size)?;
        let note = String::from_utf8(note.to_vec()).map_err(|_| err("stored checkpoint is not UTF-8"))?;
        Ok(Some(pb::Checkpoint { note, size, root_hash: root.0.to_vec() }))
    }

    /// Makes everything committed durable, then checkpoints it (if larger
    /// than the latest checkpoint). For on-demand requests of auditors.
    pub async fn fresh_checkpoint(&self, now_ms: i64) -> Result<pb::Checkpoint, RelayError> {
        let size = self.size();
        crate::store::fsync::fsync(&self.shared.tree, self.shared.files.as_ref()).await.map_err(err)?;
        self.shared.issue_checkpoint(size, now_ms, true)
    }

    /// `tree_size`, or the latest checkpoint's size when it is 0.
    fn resolve_size(&self, tree_size: u64) -> Result<u64, RelayError> {
        if tree_size != 0 {
            return Ok(tree_size);
        }
        self.latest_checkpoint().map(|c| c.size).ok_or_else(|| err("no checkpoint has been issued yet"))
    }

    /// Inclusion proof of leaf `index` in the tree of `tree_size` (0 = latest
    /// checkpoint), which must be durable.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<pb::InclusionProof, RelayError> {
        let size = self.resolve_size(tree_size)?;
        self.check_durable(size)?;
        if index >= size {
            return Err(err(format!("leaf {index} is not in the tree of size {size}")));
        }
        let hashes = audit::prove_inclusion(&self.shared.hashes(), index, size).map_err(err)?;
        Ok(pb::InclusionProof {
            leaf_index: index,
            tree_size: size,
            hashes: hashes.iter().map(|h| h.0.to_vec()).collect(),
            leaf: self.leaf(index)?,
            checkpoint: self.checkpoint_at(size)?,
        })
    }

    /// Inclusion proof of the first record naming `msg_id`.
    pub fn inclusion_proof_by_msg_id(
        &self,
        msg_id: &[u8],
        tree_size: u64,
    ) -> Result<pb::InclusionProof, RelayError> {
        let size = self.resolve_size(tree_size)?;
        let first = self.indexes_of(msg_id)?.into_iter().find(|&i| i < size);
        let index = first.ok_or_else(|| {
            err(format!("no record of message {} in the first {size} leaves", hex::encode(msg_id)))
        })?;
        self.inclusion_proof(index, size)
    }

    /// Consistency proof from `old_size` to `new_size` (0 = latest
    /// checkpoint), which must be durable.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<pb::ConsistencyProof, RelayError> {
        let new_size = self.resolve_size(new_size)?;
        self.check_durable(new_size)?;
        if old_size > new_size {
            return Err(err(format!("old size {old_size} is larger than new size {new_size}")));
        }
        let hashes = audit::prove_consistency(&self.shared.hashes(), old_size, new_size).map_err(err)?;
        Ok(pb::ConsistencyProof { old_size, new_size, hashes: hashes.iter().map(|h| h.0.to_vec()).collect() })
    }

    /// Stores a witness cosignature line for the checkpoint of `size`.
    pub fn add_cosignature(&self, size: u64, witness: &str, line: &str) -> Result<(), RelayError> {
        let mut batch = sled::Batch::default();
        batch.insert(cosig_key(size, witness), line.as_bytes());
        if self.last_cosigned(witness)?.is_none_or(|latest| size > latest) {
            batch.insert(cosigned_index_key(witness), &size.to_be_bytes());
        }
        self.shared.tree.apply_batch(batch).map_err(err)
    }

    /// The largest checkpoint size `witness` has cosigned, from its index
    /// key (one read, however many cosignatures are stored). `None` also for
    /// a store written before the index: the witness then answers with a
    /// conflict naming its size, which the requester retries with.
    pub fn last_cosigned(&self, witness: &str) -> Result<Option<u64>, RelayError> {
        match self.shared.tree.get(cosigned_index_key(witness)).map_err(err)? {
            Some(v) => be_u64(&v, "cosigned size").map(Some),
            None => Ok(None),
        }
    }

    /// Cosignature lines stored for the checkpoint of `size`.
    pub fn cosignatures(&self, size: u64) -> Result<Vec<String>, RelayError> {
        self.shared
            .tree
            .scan_prefix(key(b"a/w/", size))
            .map(|kv| {
                let (_, v) = kv.map_err(err)?;
                String::from_utf8(v.to_vec()).map_err(|_| err("stored cosignature is not UTF-8"))
            })
            .collect()
    }

    /// Origin, key, latest checkpoint and its cosignatures.
    pub fn info(&self) -> Result<pb::LogInfo, RelayError> {
        let checkpoint = self.latest_checkpoint();
        let cosignatures = match &checkpoint {
            Some(c) => self.cosignatures(c.size)?,
            None => Vec::new(),
        };
        Ok(pb::LogInfo {
            origin: self.origin().to_owned(),
            verifier_key: self.verifier_key(),
            checkpoint,
            cosignatures,
        })
    }
}
