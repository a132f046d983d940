//! `focal audit fetch`: incremental, resumable download of a relay's log.
//!
//! The relay's fresh checkpoint must be signed by the configured key and
//! extend the one accepted before (consistency proof checked before any
//! entry is downloaded), and the note with the relay's cosignature lines
//! added must still verify; new entries are appended, and only when they
//! hash to the signed root is the checkpoint accepted (checkpoint file,
//! then state file).
//!
//! The rule for entries not (yet) accepted: bytes of `entries.bin` beyond
//! the state file's `entries_bytes` are never read as accepted (`verify`
//! stops at the latest checkpoint, `trace`, `export` and `stats` at the
//! state file, and both report the rest). `fetch` keeps them only when it
//! failed for want of the relay or the disk (an RPC or I/O error: an
//! interrupted download), so that the next fetch can resume; it re-hashes
//! them against the next signed root like any downloaded entry. After any
//! other failure (the relay sent a wrong entry, a malformed record, entries
//! not matching its signed root) it cuts the file back to `entries_bytes`.

use std::path::Path;

use focal_proto::ProtoError;
use focal_proto::audit::{
    self, LogKey, RootBuilder, TreeHead, add_cosignature, check_not_rolled_back, hashes_from_bytes,
    verify_consistency,
};
use focal_proto::pb;
use focal_proto::pb::audit_client::AuditClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::AuditError;
use super::dir::{self, EntryReader, EntryWriter, State};

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchReport {
    /// Size accepted before (0 for a first fetch).
    pub old_size: u64,
    /// Size accepted now.
    pub new_size: u64,
    /// Entries downloaded by this run.
    pub downloaded: u64,
    /// Cosignature lines the relay supplied for the checkpoint.
    pub cosignatures: usize,
}

/// Fetches the log behind `client` into `dir`, verifying with `verifier_key`.
pub async fn fetch(
    client: &mut AuditClient<Channel>,
    dir: &Path,
    verifier_key: &str,
) -> Result<FetchReport, AuditError> {
    let key = LogKey::parse(verifier_key)?;
    std::fs::create_dir_all(dir).map_err(AuditError::io(dir))?;
    let state = State::load(dir)?;
    if let Some(st) = &state
        && st.verifier_key != key.as_str()
    {
        return Err(AuditError::KeyMismatch(format!(
            "{} holds a log verified with {} but {} is configured",
            dir.display(),
            st.verifier_key,
            key.as_str()
        )));
    }
    let state_path = dir.join(dir::STATE);
    let bad_state = |detail| AuditError::State { path: state_path.clone(), detail };
    let (prev, frontier, prev_bytes) = match &state {
        Some(st) => {
            (st.head().map_err(bad_state)?, st.frontier_hashes().map_err(bad_state)?, st.entries_bytes)
        }
        None => (TreeHead { size: 0, root: audit::EMPTY_HASH }, Vec::new(), 0),
    };

    // 1. The relay's checkpoint: signed by the key, extending what we accepted.
    let info = client.get_log_info(pb::GetCheckpointRequest { fresh: true }).await?.into_inner();
    if info.verifier_key != key.as_str() {
        return Err(AuditError::KeyMismatch(format!(
            "the relay reports log key {} but {} is configured",
            info.verifier_key,
            key.as_str()
        )));
    }
    let note = info.checkpoint.ok_or_else(|| AuditError::Relay("no checkpoint in the log info".into()))?.note;
    let cp = key
        .verify_checkpoint(&note)
        .map_err(|source| AuditError::At { what: "relay's checkpoint".into(), source })?;
    let head = cp.head();
    check_not_rolled_back(&prev, &head)?;
    if prev.size > 0 && head.size > prev.size {
        let p = client
            .get_consistency_proof(pb::ConsistencyProofRequest { old_size: prev.size, new_size: head.size })
            .await?
            .into_inner();
        let proof = hashes_from_bytes(&p.hashes)?;
        verify_consistency(&prev, &head, &proof).map_err(|e| {
            ProtoError::Fork(format!(
                "the relay's checkpoint of size {} is not an extension of the checkpoint of size {} accepted before ({e})",
                head.size, prev.size
            ))
        })?;
    }
    let mut note_with_cosigs = note.clone();
    for line in &info.cosignatures {
        note_with_cosigs = add_cosignature(&note_with_cosigs, line)
            .map_err(|source| AuditError::At { what: "relay's cosignature line".into(), source })?;
    }
    // What will be written must verify as the checkpoint just checked.
    let final_cp = key.verify_checkpoint(&note_with_cosigs).map_err(|source| AuditError::At {
        what: "relay's checkpoint with its cosignatures".into(),
        source,
    })?;
    if final_cp.head() != head {
        return Err(AuditError::Relay("the cosignature lines changed the checkpoint".into()));
    }

    // 2. Entries already on disk beyond the accepted size (interrupted
    // fetch), up to the first that is damaged or not a valid record.
    let mut builder =
        RootBuilder::from_frontier(prev.size, &frontier).map_err(|e| bad_state(e.to_string()))?;
    let mut offset = prev_bytes;
    if let Some(mut r) = EntryReader::open(dir, prev_bytes, prev.size)? {
        while builder.size() < head.size {
            let Ok(Some(e)) = r.next_entry(true) else { break };
            if audit::decode_record(&e.leaf).is_err() {
                break;
            }
            builder.push_leaf(&e.leaf);
            offset = r.offset;
        }
    }

    // 3. Download the rest, then check the root before accepting anything.
    let start = builder.size();
    let downloaded = async {
        let mut writer = EntryWriter::open(dir, offset)?;
        let result = download(client, &mut writer, &mut builder, start, head.size).await;
        let synced = writer.sync();
        result?;
        let end = synced?;
        if builder.root() != head.root {
            return Err(AuditError::At {
                what: format!("entries {}..{} served by the relay", prev.size, head.size),
                source: ProtoError::RootMismatch {
                    size: head.size,
                    computed: builder.root().to_string(),
                    signed: head.root.to_string(),
                },
            });
        }
        Ok(end)
    }
    .await;
    let entries_bytes = match downloaded {
        Ok(end) => end,
        // Interrupted (relay unreachable, disk error): keep for a resume.
        Err(e @ (AuditError::Rpc(_) | AuditError::Io { .. })) => return Err(e),
        Err(e) => {
            dir::truncate_entries(dir, prev_bytes)?;
            return Err(e);
        }
    };

    // 4. Accept: checkpoint file, then state.
    dir::write_atomic(&dir::checkpoint_path(dir, head.size), note_with_cosigs.as_bytes())?;
    State {
        origin: cp.body.origin.clone(),
        verifier_key: key.as_str().to_owned(),
        size: head.size,
        root: dir::hash_b64(&head.root),
        frontier: builder.frontier().iter().map(dir::hash_b64).collect(),
        entries_bytes,
    }
    .save(dir)?;
    Ok(FetchReport {
        old_size: prev.size,
        new_size: head.size,
        downloaded: head.size - start,
        cosignatures: info.cosignatures.len(),
    })
}

async fn download(
    client: &mut AuditClient<Channel>,
    writer: &mut EntryWriter,
    builder: &mut RootBuilder,
    start: u64,
    end: u64,
) -> Result<(), AuditError> {
    if start >= end {
        return Ok(());
    }
    let mut stream = client.get_entries(pb::EntriesRequest { start, end }).await?.into_inner();
    while let Some(entry) = stream.next().await {
        let entry = entry?;
        let expected = builder.size();
        if entry.index != expected || expected >= end {
            return Err(AuditError::Relay(format!(
                "sent entry {} where entry {expected} was due",
                entry.index
            )));
        }
        audit::decode_record(&entry.leaf)
            .map_err(|e| ProtoError::AuditLeafMalformed { index: entry.index, detail: e.to_string() })?;
        writer.append(entry.index, &entry.leaf)?;
        builder.push_leaf(&entry.leaf);
    }
    if builder.size() != end {
        return Err(AuditError::Relay(format!("the entry stream ended at {} before {end}", builder.size())));
    }
    Ok(())
}
