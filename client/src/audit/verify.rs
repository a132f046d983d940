//! `focal audit verify`: fully offline. Recomputes the Merkle root from
//! the entries the latest checkpoint covers, checks each stored checkpoint's
//! signature and root, the witness quorum on the latest one, and that the
//! latest extends the checkpoint this auditor accepted before (state file):
//! no rollback, no fork. Bytes of `entries.bin` after the covered entries
//! (left by an interrupted fetch) are not read, only counted in
//! [`VerifyReport::left_over_bytes`].

use std::path::Path;

use focal_proto::ProtoError;
use focal_proto::audit::{
    self, Cosignature, LogKey, RootBuilder, SignedCheckpoint, TreeHead, WitnessKey, check_not_rolled_back,
    prefix_fork,
};

use super::AuditError;
use super::dir::{self, EntryReader, State};

/// What a successful verification established.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// Log origin.
    pub origin: String,
    /// Verified size (the entries the latest checkpoint covers).
    pub size: u64,
    /// Verified root, base64.
    pub root: String,
    /// Stored checkpoints whose signature and root were checked.
    pub checkpoints: usize,
    /// Valid cosignatures of the configured witnesses on the latest checkpoint.
    pub cosignatures: Vec<Cosignature>,
    /// Size of the checkpoint accepted before, that this one extends.
    pub previous_size: Option<u64>,
    /// Bytes of `entries.bin` beyond the verified entries (left by an
    /// interrupted or failed fetch): not verified, not read, and not read by
    /// `trace`, `export` or `stats` either. `fetch` re-uses or drops them.
    pub left_over_bytes: u64,
}

fn parse_witnesses(witnesses: &[(String, String)]) -> Result<Vec<WitnessKey>, AuditError> {
    witnesses
        .iter()
        .map(|(name, key)| {
            let k = WitnessKey::parse(key)?;
            if k.witness_name() != name {
                return Err(AuditError::Invalid(format!(
                    "witness {name:?} is configured with a key named {:?}",
                    k.witness_name()
                )));
            }
            Ok(k)
        })
        .collect()
}

/// Verifies the log in `dir` against `verifier_key`, requiring
/// `required_witnesses` valid cosignatures from `witnesses` (name, verifier
/// key) on the latest checkpoint. On success the state file records the
/// latest checkpoint as accepted.
pub fn verify(
    dir: &Path,
    verifier_key: &str,
    witnesses: &[(String, String)],
    required_witnesses: usize,
) -> Result<VerifyReport, AuditError> {
    let key = LogKey::parse(verifier_key)?;
    let witness_keys = parse_witnesses(witnesses)?;

    // Every stored checkpoint must be signed by the log key and named by its size.
    let mut cps: Vec<(String, SignedCheckpoint)> = Vec::new();
    for (path, note) in dir::checkpoints(dir)? {
        let what = path.display().to_string();
        let cp =
            key.verify_checkpoint(&note).map_err(|source| AuditError::At { what: what.clone(), source })?;
        if dir::checkpoint_path(dir, cp.head().size) != path {
            return Err(AuditError::At {
                what,
                source: ProtoError::CheckpointMalformed(format!(
                    "holds a checkpoint of size {}",
                    cp.head().size
                )),
            });
        }
        cps.push((what, cp));
    }
    let Some((latest_path, latest)) = cps.last().cloned() else {
        return Err(AuditError::NoCheckpoint(dir.to_owned()));
    };
    let head = latest.head();
    let cosignatures = audit::verify_cosignatures(&latest.note, &witness_keys, required_witnesses)
        .map_err(|source| AuditError::At { what: latest_path.clone(), source })?;

    // The state file: what this auditor accepted before.
    let state = State::load(dir)?;
    let previous = match &state {
        Some(st) => {
            if st.verifier_key != key.as_str() {
                return Err(AuditError::KeyMismatch(format!(
                    "this directory was verified with {} but {} is configured",
                    st.verifier_key,
                    key.as_str()
                )));
            }
            Some(st.head().map_err(|detail| AuditError::State { path: dir.join(dir::STATE), detail })?)
        }
        None => None,
    };
    if let Some(prev) = &previous {
        check_not_rolled_back(prev, &head)?;
    }

    // One pass over the entries: framing, index order, record validity,
    // and the root at every size that a checkpoint or the state names.
    let mut builder = RootBuilder::new();
    let mut roots_at = Vec::new(); // (cp position, computed root) for stored checkpoints
    let mut prefix_root = previous.filter(|p| p.size == 0).map(|p| p.root);
    let mut next_cp = cps.iter().position(|(_, c)| c.head().size > 0).unwrap_or(cps.len());
    for i in 0..next_cp {
        roots_at.push((i, audit::EMPTY_HASH)); // size-0 checkpoints: the empty tree
    }
    let mut frontier_at_head = (head.size == 0).then(Vec::new);
    let mut offset_at_head = 0;
    let mut left_over_bytes = 0;
    if let Some(mut r) = EntryReader::open(dir, 0, 0)? {
        // Only the entries the latest checkpoint covers: anything after them
        // was never matched to a signed root and is reported, not read.
        while builder.size() < head.size {
            let Some(e) = r.next_entry(false)? else { break };
            audit::decode_record(&e.leaf)
                .map_err(|err| ProtoError::AuditLeafMalformed { index: e.index, detail: err.to_string() })?;
            builder.push_leaf(&e.leaf);
            let n = builder.size();
            while next_cp < cps.len() && cps[next_cp].1.head().size == n {
                roots_at.push((next_cp, builder.root()));
                next_cp += 1;
            }
            if previous.is_some_and(|p| p.size == n) {
                prefix_root = Some(builder.root());
            }
        }
        if builder.size() == head.size {
            frontier_at_head = Some(builder.frontier());
            offset_at_head = r.offset;
            left_over_bytes = r.len.saturating_sub(r.offset);
        }
    }
    if builder.size() < head.size {
        let short = ProtoError::LogTruncated { expected: head.size, found: builder.size() };
        // Entries missing in the middle (deleted and renumbered) show as an
        // earlier checkpoint the entries no longer match: name that range.
        if let Some((i, r)) = roots_at.iter().find(|(i, r)| cps[*i].1.head().root != *r) {
            let good = if *i == 0 { 0 } else { cps[*i - 1].1.head().size };
            let bad = cps[*i].1.head();
            return Err(AuditError::At {
                what: format!(
                    "entries {good}..{} (changed, deleted or reordered; entries 0..{good} match the checkpoint of size {good}; {short})",
                    bad.size
                ),
                source: ProtoError::RootMismatch {
                    size: bad.size,
                    computed: r.to_string(),
                    signed: bad.root.to_string(),
                },
            });
        }
        return Err(short.into());
    }

    // Tampering first: the entries must give the latest signed root.
    let root = builder.root();
    if root != head.root {
        // Name the first stored checkpoint the entries no longer match.
        let first_bad = roots_at
            .iter()
            .find(|(i, r)| cps[*i].1.head().root != *r)
            .map(|(i, _)| *i)
            .unwrap_or(cps.len() - 1);
        let good = if first_bad == 0 { 0 } else { cps[first_bad - 1].1.head().size };
        let bad = cps[first_bad].1.head();
        return Err(AuditError::At {
            what: format!(
                "entries {good}..{} (changed, deleted or reordered; entries 0..{good} match the checkpoint of size {good})",
                bad.size
            ),
            source: ProtoError::RootMismatch {
                size: bad.size,
                computed: roots_at
                    .iter()
                    .find(|(i, _)| *i == first_bad)
                    .map_or(root, |(_, r)| *r)
                    .to_string(),
                signed: bad.root.to_string(),
            },
        });
    }
    // The entries match the latest checkpoint: any older signed view they do
    // not match is a fork signed by the log key.
    for (i, r) in &roots_at {
        let old = cps[*i].1.head();
        if old.root != *r {
            return Err(AuditError::At { what: cps[*i].0.clone(), source: prefix_fork(&old, *r, head.size) });
        }
    }
    if let (Some(prev), Some(at)) = (&previous, prefix_root)
        && at != prev.root
    {
        return Err(AuditError::At {
            what: format!("checkpoint accepted before (state file {})", dir.join(dir::STATE).display()),
            source: prefix_fork(prev, at, head.size),
        });
    }

    let frontier = frontier_at_head.unwrap_or_default();
    State {
        origin: latest.body.origin.clone(),
        verifier_key: key.as_str().to_owned(),
        size: head.size,
        root: dir::hash_b64(&head.root),
        frontier: frontier.iter().map(dir::hash_b64).collect(),
        entries_bytes: offset_at_head,
    }
    .save(dir)?;
    Ok(VerifyReport {
        origin: latest.body.origin,
        size: head.size,
        root: dir::hash_b64(&head.root),
        checkpoints: cps.len(),
        cosignatures,
        previous_size: previous.map(|p: TreeHead| p.size),
        left_over_bytes,
    })
}
