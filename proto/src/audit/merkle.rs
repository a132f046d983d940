//! RFC 9162 (RFC 6962) Merkle tree hashing and proofs over `tlog_tiles`, a
//! streaming root builder for verifying large logs in constant memory, and
//! [`MemoryLog`], an in-memory log for tests and offline tools.
//!
//! Stored hashes follow `tlog_tiles`' layout (Crosby–Wallach order): leaf
//! `n` adds the hashes at `stored_hash_index(0, n) ..` returned by
//! `stored_hashes`. Any store that can read them back by index is a
//! [`HashReader`] and gets roots and proofs from the functions here.

use tlog_tiles::{Hash, HashReader, tlog};

use super::record::{decode_record, encode_record};
use crate::error::{ProtoError, Result};
use crate::pb;

/// SHA-256(0x00 || leaf): the hash of a leaf.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    tlog::record_hash(leaf)
}

/// SHA-256(0x01 || left || right): the hash of an interior node.
pub fn node_hash(left: Hash, right: Hash) -> Hash {
    tlog::node_hash(left, right)
}

/// A tree size and its root hash.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TreeHead {
    /// Number of leaves.
    pub size: u64,
    /// Root hash (`EMPTY_HASH` for size 0).
    pub root: Hash,
}

/// A 32-byte hash from bytes, naming `what` on error.
pub fn hash_from_bytes(b: &[u8], what: &str) -> Result<Hash> {
    let arr: [u8; 32] =
        b.try_into().map_err(|_| ProtoError::Audit(format!("{what} has {} bytes, expected 32", b.len())))?;
    Ok(Hash(arr))
}

/// Proof hashes as sent in protobuf messages.
pub fn hashes_from_bytes(v: &[Vec<u8>]) -> Result<Vec<Hash>> {
    v.iter().enumerate().map(|(i, b)| hash_from_bytes(b, &format!("proof hash {i}"))).collect()
}

/// Proof hashes sent as one byte string (32 bytes each), as in
/// `CosignRequest.consistency_proof`.
pub fn hashes_from_concatenated(b: &[u8]) -> Result<Vec<Hash>> {
    if !b.len().is_multiple_of(32) {
        return Err(ProtoError::Audit(format!("{} proof bytes are not a whole number of hashes", b.len())));
    }
    b.chunks(32).enumerate().map(|(i, c)| hash_from_bytes(c, &format!("proof hash {i}"))).collect()
}

fn tlog_err(e: tlog::Error) -> ProtoError {
    ProtoError::Audit(format!("hash storage: {e}"))
}

/// Root hash of the first `size` leaves of the tree stored in `r`.
pub fn tree_root<R: HashReader>(r: &R, size: u64) -> Result<Hash> {
    tlog::tree_hash(size, r).map_err(tlog_err)
}

/// Inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
pub fn prove_inclusion<R: HashReader>(r: &R, index: u64, size: u64) -> Result<Vec<Hash>> {
    if index >= size {
        return Err(ProtoError::Audit(format!("leaf {index} is not in a tree of size {size}")));
    }
    tlog::prove_record(size, index, r).map_err(tlog_err)
}

/// Consistency proof from the tree of `old` leaves to the tree of `new` leaves.
pub fn prove_consistency<R: HashReader>(r: &R, old: u64, new: u64) -> Result<Vec<Hash>> {
    if old > new {
        return Err(ProtoError::Audit(format!("old size {old} is larger than new size {new}")));
    }
    if old == 0 {
        return Ok(Vec::new());
    }
    tlog::prove_tree(new, old, r).map_err(tlog_err)
}

/// `(inner, border)` of the audit path of leaf `index` in a tree of `size`
/// leaves (`index < size`): `inner` hashes below the point where the path of
/// `index` and that of the last leaf meet, `border` hashes above it.
fn decompose(index: u64, size: u64) -> (u32, u32) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Number of hashes RFC 9162 (§2.1.3) prescribes for the inclusion proof of
/// leaf `index` in a tree of `size` leaves; `None` if `index >= size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> Option<usize> {
    if index >= size {
        return None;
    }
    let (inner, border) = decompose(index, size);
    Some((inner + border) as usize)
}

/// Number of hashes RFC 9162 (§2.1.4) prescribes for the consistency proof
/// from `old` to `new` leaves (none if `old` is 0 or equals `new`); `None` if
/// `old > new`.
pub fn consistency_proof_len(old: u64, new: u64) -> Option<usize> {
    if old > new {
        return None;
    }
    if old == 0 || old == new {
        return Some(0);
    }
    let (inner, border) = decompose(old - 1, new);
    let shift = old.trailing_zeros();
    // The proof starts with the root of the old tree's last perfect subtree,
    // unless the old tree is itself perfect (the verifier knows its root).
    let seed = usize::from(old != 1u64 << shift);
    Some(seed + (inner - shift + border) as usize)
}

/// Checks that `proof` shows the leaf with hash `leaf` at `index` in the tree
/// `head`. A proof whose length is not the one RFC 9162 prescribes for
/// `(index, size)` is refused before any hashing.
pub fn verify_inclusion(leaf: Hash, index: u64, head: &TreeHead, proof: &[Hash]) -> Result<()> {
    let err = |detail: String| ProtoError::InclusionProof { index, size: head.size, detail };
    let Some(expected) = inclusion_proof_len(index, head.size) else {
        return Err(err("index is outside the tree".into()));
    };
    if proof.len() != expected {
        return Err(err(format!("the proof has {} hashes, expected {expected}", proof.len())));
    }
    tlog::check_record(&proof.to_vec(), head.size, head.root, index, leaf)
        .map_err(|_| err("the path does not lead to the root".into()))
}

/// Checks that `proof` shows `old` is a prefix of `new`. A proof whose
/// length is not the one RFC 9162 prescribes for `(old, new)` is refused
/// before any hashing.
pub fn verify_consistency(old: &TreeHead, new: &TreeHead, proof: &[Hash]) -> Result<()> {
    let err =
        |detail: String| ProtoError::ConsistencyProof { old_size: old.size, new_size: new.size, detail };
    let Some(expected) = consistency_proof_len(old.size, new.size) else {
        return Err(err("old size is larger than new size".into()));
    };
    if proof.len() != expected {
        return Err(err(format!("the proof has {} hashes, expected {expected}", proof.len())));
    }
    if old.size == 0 {
        if old.root != tlog::EMPTY_HASH {
            return Err(err("the empty tree has a non-empty root".into()));
        }
        return Ok(());
    }
    tlog::check_tree(&proof.to_vec(), new.size, new.root, old.size, old.root)
        .map_err(|_| err(format!("{} hashes do not link the two roots", proof.len())))
}

/// Computes roots while leaves stream past, keeping only the `log2(n)`
/// roots of the perfect subtrees of the current size (its "frontier").
#[derive(Clone, Debug, Default)]
pub struct RootBuilder {
    size: u64,
    /// (height, hash) of perfect subtrees, largest first.
    frontier: Vec<(u32, Hash)>,
}

impl RootBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        RootBuilder::default()
    }

    /// Resumes from a saved frontier (see [`RootBuilder::frontier`]).
    pub fn from_frontier(size: u64, hashes: &[Hash]) -> Result<Self> {
        if hashes.len() != size.count_ones() as usize {
            return Err(ProtoError::Audit(format!(
                "a frontier of size {size} needs {} hashes, got {}",
                size.count_ones(),
                hashes.len()
            )));
        }
        let heights = (0..64u32).rev().filter(|h| size & (1u64 << h) != 0);
        Ok(RootBuilder { size, frontier: heights.zip(hashes.iter().copied()).collect() })
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree hashes, largest first.
    pub fn frontier(&self) -> Vec<Hash> {
        self.frontier.iter().map(|(_, h)| *h).collect()
    }

    /// Adds a leaf.
    pub fn push_leaf(&mut self, leaf: &[u8]) {
        self.push_hash(leaf_hash(leaf));
    }

    /// Adds a leaf by its hash.
    pub fn push_hash(&mut self, mut h: Hash) {
        let mut height = 0;
        while let Some(&(top, left)) = self.frontier.last() {
            if top != height {
                break;
            }
            self.frontier.pop();
            h = node_hash(left, h);
            height += 1;
        }
        self.frontier.push((height, h));
        self.size += 1;
    }

    /// Root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.frontier.iter().rev();
        let Some(&(_, mut h)) = it.next() else { return tlog::EMPTY_HASH };
        for &(_, left) in it {
            h = node_hash(left, h);
        }
        h
    }

    /// Size and root.
    pub fn head(&self) -> TreeHead {
        TreeHead { size: self.size, root: self.root() }
    }
}

/// A log held in memory: leaves and stored hashes.
#[derive(Clone, Debug, Default)]
pub struct MemoryLog {
    leaves: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
}

impl HashReader for MemoryLog {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| self.hashes.get(i as usize).copied().ok_or(tlog::Error::IndexesNotInTree))
            .collect()
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryLog::default()
    }

    /// Builds a log from raw leaves (not checked; see [`MemoryLog::append_record`]).
    pub fn from_leaves<I: IntoIterator<Item = Vec<u8>>>(leaves: I) -> Self {
        let mut log = MemoryLog::new();
        for leaf in leaves {
            log.append(leaf);
        }
        log
    }

    /// Appends raw leaf bytes, returning the leaf index.
    pub fn append(&mut self, leaf: Vec<u8>) -> u64 {
        let n = self.leaves.len() as u64;
        let new = tlog::stored_hashes(n, &leaf, self).expect("memory log holds every earlier hash");
        self.hashes.extend(new);
        self.leaves.push(leaf);
        n
    }

    /// Encodes (validating) and appends a record, returning the leaf index.
    pub fn append_record(&mut self, r: &pb::AuditRecord) -> Result<u64> {
        Ok(self.append(encode_record(r)?))
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Leaf `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<&[u8]> {
        self.leaves.get(usize::try_from(index).ok()?).map(Vec::as_slice)
    }

    /// All leaves, in order.
    pub fn leaves(&self) -> &[Vec<u8>] {
        &self.leaves
    }

    /// Decodes leaf `index`.
    pub fn record(&self, index: u64) -> Result<pb::AuditRecord> {
        let leaf = self
            .leaf(index)
            .ok_or_else(|| ProtoError::Audit(format!("no leaf {index} in a log of size {}", self.size())))?;
        decode_record(leaf).map_err(|e| ProtoError::AuditLeafMalformed { index, detail: e.to_string() })
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size > self.size() {
            return Err(ProtoError::Audit(format!("size {size} is beyond the log's {} leaves", self.size())));
        }
        Ok(())
    }

    /// Root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        tree_root(self, size)
    }

    /// Current size and root.
    pub fn head(&self) -> TreeHead {
        TreeHead { size: self.size(), root: tree_root(self, self.size()).expect("all hashes are present") }
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        prove_inclusion(self, index, size)
    }

    /// Consistency proof from `old` to `new` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.check_size(new)?;
        prove_consistency(self, old, new)
    }
}
