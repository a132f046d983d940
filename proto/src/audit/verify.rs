//! Whole-log verification: a checkpoint signed by the log key, every leaf a
//! valid record, the leaves hashing to the signed root, and the checkpoint
//! extending the last one the verifier saw (no rollback, no fork).

use tlog_tiles::Hash;

use super::checkpoint::{LogKey, SignedCheckpoint};
use super::merkle::{RootBuilder, TreeHead, verify_consistency};
use super::record::decode_record;
use crate::error::{ProtoError, Result};

/// The result of [`verify_log`].
#[derive(Clone, Debug)]
pub struct VerifiedLog {
    /// The verified checkpoint.
    pub checkpoint: SignedCheckpoint,
}

/// Checks that `previous` (a head seen before) is not ahead of or
/// different from `new` at the same size.
pub fn check_not_rolled_back(previous: &TreeHead, new: &TreeHead) -> Result<()> {
    if new.size < previous.size {
        return Err(ProtoError::Rollback { seen_size: previous.size, new_size: new.size });
    }
    if new.size == previous.size && new.root != previous.root {
        return Err(ProtoError::Fork(format!(
            "two validly signed checkpoints of size {} with different roots: {} seen before, {} now",
            new.size, previous.root, new.root
        )));
    }
    Ok(())
}

/// The error for a prefix root that differs from the one seen before.
pub fn prefix_fork(previous: &TreeHead, now_at_prefix: Hash, new_size: u64) -> ProtoError {
    ProtoError::Fork(format!(
        "the validly signed log of size {new_size} does not extend the checkpoint of size {} seen before: \
         its first {} entries now hash to {}, they hashed to {}",
        previous.size, previous.size, now_at_prefix, previous.root
    ))
}

/// Verifies a complete log offline.
///
/// `entries` are all leaves from index 0; `checkpoint_note` must be signed by
/// `log_key` and its root must be the root of exactly these leaves, each of
/// which must be a valid canonical record. If `previous` (a head this
/// verifier accepted earlier) is given, the new checkpoint must extend it;
/// `consistency_proof`, if given, is checked from `previous` as well.
pub fn verify_log<'a, I>(
    entries: I,
    checkpoint_note: &str,
    log_key: &LogKey,
    previous: Option<&TreeHead>,
    consistency_proof: Option<&[Hash]>,
) -> Result<VerifiedLog>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let checkpoint = log_key.verify_checkpoint(checkpoint_note)?;
    let head = checkpoint.head();
    if let Some(prev) = previous {
        check_not_rolled_back(prev, &head)?;
    }
    let mut builder = RootBuilder::new();
    let mut prefix_root = None;
    let mut found = 0u64;
    for (index, leaf) in entries.into_iter().enumerate() {
        let index = index as u64;
        found = index + 1;
        if index >= head.size {
            continue;
        }
        decode_record(leaf).map_err(|e| ProtoError::AuditLeafMalformed { index, detail: e.to_string() })?;
        builder.push_leaf(leaf);
        if previous.is_some_and(|p| p.size == builder.size()) {
            prefix_root = Some(builder.root());
        }
    }
    if found < head.size {
        return Err(ProtoError::LogTruncated { expected: head.size, found });
    }
    if found > head.size {
        return Err(ProtoError::LogOverlong { expected: head.size, found });
    }
    let root = builder.root();
    if root != head.root {
        return Err(ProtoError::RootMismatch {
            size: head.size,
            computed: root.to_string(),
            signed: head.root.to_string(),
        });
    }
    if let Some(prev) = previous {
        let at_prefix = if prev.size == 0 { tlog_tiles::EMPTY_HASH } else { prefix_root.unwrap_or_default() };
        if at_prefix != prev.root {
            return Err(prefix_fork(prev, at_prefix, head.size));
        }
        if let Some(proof) = consistency_proof {
            verify_consistency(prev, &head, proof)?;
        }
    }
    Ok(VerifiedLog { checkpoint })
}
