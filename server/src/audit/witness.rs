//! Witnessing (C2SP tlog-witness over the federation link): this relay
//! cosigns its peers' audit-log checkpoints, and gets its own checkpoints
//! cosigned by them, so that a relay showing different histories to
//! different auditors (a fork) is caught by anyone who requires
//! cosignatures (`focal audit verify --witness VKEY --require K`).
//!
//! Two sides, both sans federation I/O:
//!
//! - [`Witness`] (the peer's request): verifies a [`pb::CosignRequest`]'s
//!   checkpoint with the origin's log key, checks it extends the last head
//!   this witness cosigned for that origin (consistency proof from that
//!   size; rollbacks and forks refused, see
//!   [`focal_proto::audit::WitnessState`]), persists the new head, flushes,
//!   and only then answers with a `cosignature/v1` line signed by this
//!   relay's witness key.
//! - [`cosign_request`] / [`accept_cosignature`] (our own log): build the
//!   request for a peer, and verify and store the peer's cosignature
//!   ([`AuditReader::add_cosignature`]) so auditors get it with the
//!   checkpoint (`LogInfo.cosignatures`).
//!
//! Storage: the witness state lives in the relay's single sled tree (the
//! one the store and the audit log use), under the key prefix `a/W/`:
//! `a/W/<origin>` → `u64 BE size ‖ 32-byte root ‖ log verifier key`. The
//! verifier key is pinned at first contact: a later request for the same
//! origin under another key is refused (nobody can take over an origin
//! name). Pinning on first use is safe only if the first comer owns the
//! origin, so a peer's origin is never taken from its Hello alone: it must
//! be [`relay_origin`] of the peer's authenticated certificate identity
//! (`focal/<network>/<name>`, see [`peer_origin`]); a relay of one network
//! claiming another relay's origin is refused before anything is pinned.
//! The same check names a peer's witness key ([`peer_witness_key`]).
//! These writes are outside the store's writer batches (they change
//! no queue); each is made durable (fsync) before the cosignature
//! leaves this relay. Upper-case `W` keeps them apart from the log's own
//! cosignature lines under `a/w/`.
//!
//! # Where it runs
//!
//! - `node::serve` loads the witness key (`witness.key` in the data dir,
//!   created on first start; `focal-relay check` prints its verifier key for
//!   auditors' `--witness`) and opens the [`Witness`] on the store's tree.
//! - A peer's `CosignRequest` arrives on the federation link and is answered
//!   by [`Witness::cosign_for_peer`] in `relaying/inbound.rs`.
//! - Our own checkpoints are sent to each peer by `relaying/cosign.rs`
//!   ([`cosign_request`], [`conflict_size`], [`accept_cosignature`]).
//!
//! `tests/tests/audit/witness.rs` runs the same calls against a real
//! relay's store and checks the result with `focal audit verify --witness …
//! --require 2`; `server/tests/federation_witness.rs` runs them over QUIC.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use focal_proto::audit::{
    Cosignature, Hash, LogKey, TreeHead, WitnessKey, WitnessSigner, WitnessState, add_cosignature,
    hashes_from_concatenated, verify_cosignatures,
};
use focal_proto::pb;
use focal_proto::{Identity, ProtoError};

use super::{AuditReader, relay_origin};
use crate::RelayError;

/// Key prefix of the witness state in the relay's tree.
pub const STATE_PREFIX: &[u8] = b"a/W/";
/// Start of [`pb::CosignResponse::error`] when the request's `old_size` is
/// not the size this witness last cosigned; the size follows (see [`conflict_size`]).
pub const CONFLICT_PREFIX: &str = "conflict: last cosigned size ";

fn werr(what: impl std::fmt::Display) -> RelayError {
    RelayError::Audit(format!("witness: {what}"))
}

fn state_key(origin: &str) -> Vec<u8> {
    [STATE_PREFIX, origin.as_bytes()].concat()
}

/// Signature type byte of Ed25519 signed-note (log) keys.
const ALG_ED25519: u8 = 0x01;

/// The Hello's `log_origin`, if it is the origin of the peer's
/// authenticated certificate identity `peer` ([`relay_origin`]); refused,
/// naming both, if the peer claims another relay's log.
pub fn peer_origin<'a>(peer: &Identity, hello: &'a pb::Hello) -> Result<&'a str, RelayError> {
    let own = relay_origin(peer);
    if hello.log_origin != own {
        return Err(werr(format!(
            "peer {peer} announces audit-log origin {:?}, but the origin of its certificate identity is {own:?}: it may not speak for another log",
            hello.log_origin
        )));
    }
    Ok(&hello.log_origin)
}

/// The log verifier key of a peer from its Hello: `log_origin` and
/// `log_key` (the raw 32-byte Ed25519 public key). The origin is not
/// checked here: see [`peer_origin`].
pub fn peer_log_key(hello: &pb::Hello) -> Result<LogKey, RelayError> {
    log_key_from_parts(&hello.log_origin, &hello.log_key)
}

/// A log verifier key from its origin and raw 32-byte Ed25519 public key.
pub fn log_key_from_parts(origin: &str, public_key: &[u8]) -> Result<LogKey, RelayError> {
    if public_key.len() != 32 {
        return Err(werr(format!(
            "the log key of {origin:?} has {} bytes, expected a 32-byte Ed25519 public key",
            public_key.len()
        )));
    }
    let material = [&[ALG_ED25519][..], public_key].concat();
    let id = signed_note::key_id(origin, &material);
    LogKey::parse(&format!("{origin}+{id:08x}+{}", B64.encode(material)))
        .map_err(|e| werr(format!("log key of {origin:?}: {e}")))
}

/// The raw 32-byte public key inside a log verifier key string (what this
/// relay puts in its Hello's `log_key`).
pub fn hello_log_key(verifier_key: &str) -> Result<Vec<u8>, RelayError> {
    let b64 = verifier_key.trim().splitn(3, '+').nth(2).unwrap_or_default();
    let material = B64.decode(b64).map_err(|e| werr(format!("log verifier key is not base64: {e}")))?;
    match material.split_first() {
        Some((&ALG_ED25519, key)) if key.len() == 32 => Ok(key.to_vec()),
        _ => Err(werr("log verifier key is not an Ed25519 signed-note key")),
    }
}

/// A witness verifier key from its name and raw 32-byte Ed25519 public key
/// (if peers announce their witness key as raw bytes).
pub fn witness_key_from_parts(name: &str, public_key: &[u8]) -> Result<WitnessKey, RelayError> {
    let material = [&[0x04u8][..], public_key].concat();
    let id = signed_note::key_id(name, &material);
    WitnessKey::parse(&format!("{name}+{id:08x}+{}", B64.encode(material))).map_err(werr)
}

/// The witness name of the relay whose log origin is `log_origin`:
/// `<log_origin>/witness`. Peers derive it from the Hello's `log_origin`,
/// so the Hello carries only the raw `witness_key`.
pub fn witness_name(log_origin: &str) -> String {
    format!("{log_origin}/witness")
}

/// The raw 32-byte public key inside a witness verifier key string (what
/// this relay puts in its Hello's `witness_key`).
pub fn hello_witness_key(verifier_key: &str) -> Result<Vec<u8>, RelayError> {
    let b64 = verifier_key.trim().splitn(3, '+').nth(2).unwrap_or_default();
    let material = B64.decode(b64).map_err(|e| werr(format!("witness verifier key is not base64: {e}")))?;
    match material.split_first() {
        Some((&0x04, key)) if key.len() == 32 => Ok(key.to_vec()),
        _ => Err(werr("witness verifier key is not an Ed25519 cosignature/v1 key")),
    }
}

/// The witness key a peer announced in its Hello (name
/// [`witness_name`]`(log_origin)`, raw key `witness_key`); `None` if it
/// announced none (it does not witness). The Hello is trusted for the
/// peer's own keys (the link is mTLS-authenticated as `peer`), not for
/// its name: `log_origin` must be `peer`'s own ([`peer_origin`]).
pub fn peer_witness_key(peer: &Identity, hello: &pb::Hello) -> Result<Option<WitnessKey>, RelayError> {
    if hello.witness_key.is_empty() {
        return Ok(None);
    }
    let origin = peer_origin(peer, hello)?;
    if hello.witness_key.len() != 32 {
        return Err(werr(format!(
            "the witness key of {:?} has {} bytes, expected a 32-byte Ed25519 public key",
            hello.relay,
            hello.witness_key.len()
        )));
    }
    witness_key_from_parts(&witness_name(origin), &hello.witness_key).map(Some)
}

/// What is persisted per origin.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    head: TreeHead,
    log_key: String,
}

impl Stored {
    fn encode(&self) -> Vec<u8> {
        [&self.head.size.to_be_bytes()[..], &self.head.root.0, self.log_key.as_bytes()].concat()
    }

    fn decode(origin: &str, v: &[u8]) -> Result<Self, RelayError> {
        let bad = || werr(format!("stored state of {origin:?} is damaged ({} bytes)", v.len()));
        if v.len() < 40 {
            return Err(bad());
        }
        let size = u64::from_be_bytes(v[..8].try_into().map_err(|_| bad())?);
        let root = Hash(v[8..40].try_into().map_err(|_| bad())?);
        let log_key = String::from_utf8(v[40..].to_vec()).map_err(|_| bad())?;
        Ok(Stored { head: TreeHead { size, root }, log_key })
    }
}

struct Inner {
    state: WitnessState,
    /// Pinned log verifier key per origin.
    keys: BTreeMap<String, String>,
}

/// This relay as a witness of its peers' logs.
pub struct Witness {
    tree: sled::Tree,
    /// sled's files to sync with each flush (see `store::durable`).
    files: Option<crate::store::durable::SledFiles>,
    signer: WitnessSigner,
    inner: Mutex<Inner>,
    /// State writes made so far, and how many of them an fsync covered: a
    /// request that changes nothing (a peer re-sending the checkpoint this
    /// witness already cosigned) needs no fsync unless one is still owed.
    written: std::sync::atomic::AtomicU64,
    synced: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("verifier_key", &self.signer.verifier_key()).finish()
    }
}

impl Witness {
    /// Loads the witness key at `path` (PKCS#8 Ed25519; created with mode
    /// 0600 if missing) as witness `name` (e.g. `<log origin>/witness`).
    pub fn load_or_create_key(path: &Path, name: &str) -> Result<WitnessSigner, RelayError> {
        let der = match std::fs::read(path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => super::create_key_file(path)?,
            Err(e) => return Err(werr(format!("reading witness key {}: {e}", path.display()))),
        };
        WitnessSigner::from_pkcs8(name, &der)
            .map_err(|e| werr(format!("witness key {} named {name:?}: {e}", path.display())))
    }

    /// Syncs `files` (the relay store's sled files) with every flush of the
    /// witness state.
    pub fn with_durable_files(mut self, files: crate::store::durable::SledFiles) -> Self {
        self.files = Some(files);
        self
    }

    /// Opens the witness over `tree` (the relay's tree; state under `a/W/`).
    pub fn open(tree: sled::Tree, signer: WitnessSigner) -> Result<Self, RelayError> {
        let mut heads = Vec::new();
        let mut keys = BTreeMap::new();
        for kv in tree.scan_prefix(STATE_PREFIX) {
            let (k, v) = kv.map_err(werr)?;
            let origin = String::from_utf8(k[STATE_PREFIX.len()..].to_vec())
                .map_err(|_| werr("a stored origin is not UTF-8"))?;
            let s = Stored::decode(&origin, &v)?;
            heads.push((origin.clone(), s.head));
            keys.insert(origin, s.log_key);
        }
        let inner = Inner { state: WitnessState::from_heads(heads), keys };
        Ok(Witness {
            tree,
            files: None,
            signer,
            inner: Mutex::new(inner),
            written: 0.into(),
            synced: 0.into(),
        })
    }

    /// This witness's name.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key auditors pass to `focal audit verify --witness`.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The last head cosigned for `origin`.
    pub fn head(&self, origin: &str) -> Option<TreeHead> {
        self.inner.lock().ok()?.state.head(origin)
    }

    /// The logs this witness has pinned: (origin, log verifier key, last
    /// head cosigned), by origin.
    pub fn pinned(&self) -> Vec<(String, String, TreeHead)> {
        let Ok(inner) = self.inner.lock() else { return Vec::new() };
        inner.keys.iter().filter_map(|(o, k)| Some((o.clone(), k.clone(), inner.state.head(o)?))).collect()
    }

    /// Forgets the pinned key and last cosigned head of `origin` (durably),
    /// so that its next checkpoint is pinned afresh: the way back for a peer
    /// that started a new log, whose checkpoints are refused until then.
    /// Returns what was forgotten; `None` if nothing was pinned for it.
    pub async fn forget(&self, origin: &str) -> Result<Option<(String, TreeHead)>, RelayError> {
        let forgotten = {
            let mut inner = self.inner.lock().map_err(|_| werr("state lock poisoned"))?;
            let (Some(key), Some(head)) = (inner.keys.get(origin).cloned(), inner.state.head(origin)) else {
                return Ok(None);
            };
            self.tree.remove(state_key(origin)).map_err(werr)?;
            inner.keys.remove(origin);
            inner.state.forget(origin);
            (key, head)
        };
        crate::store::fsync::fsync(&self.tree, self.files.as_ref()).await.map_err(werr)?;
        Ok(Some(forgotten))
    }

    /// Answers the request of `peer` (its authenticated certificate
    /// identity), the log key taken from its Hello: refused unless the
    /// Hello's origin is `peer`'s own ([`peer_origin`]), so that no relay
    /// can pin its key under another relay's origin.
    pub async fn cosign_for_peer(
        &self,
        peer: &Identity,
        hello: &pb::Hello,
        req: &pb::CosignRequest,
    ) -> pb::CosignResponse {
        match peer_origin(peer, hello).and_then(|_| peer_log_key(hello)) {
            Ok(key) => self.cosign(&key, req, now_secs()).await,
            Err(e) => refusal(e.to_string()),
        }
    }

    /// Answers `req` for the log whose verifier key is `log_key`: a
    /// cosignature line, or an `error` naming why (bad signature, rollback,
    /// fork, unproven growth, `old_size` conflict, storage failure).
    /// The first key seen for an origin is pinned: the caller vouches that
    /// the origin of `log_key` belongs to whoever asks (as
    /// [`Witness::cosign_for_peer`] does).
    pub async fn cosign(
        &self,
        log_key: &LogKey,
        req: &pb::CosignRequest,
        now_secs: u64,
    ) -> pb::CosignResponse {
        let line = match self.cosign_and_store(log_key, req, now_secs) {
            Ok(line) => line,
            Err(e) => return refusal(e),
        };
        // The new head must be durable before the cosignature leaves: after a
        // crash this witness must still refuse a fork of what it signed.
        let written = self.written.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) < written {
            if let Err(e) = crate::store::fsync::fsync(&self.tree, self.files.as_ref()).await {
                return refusal(format!("witness state not persisted: {e}"));
            }
            self.synced.fetch_max(written, Ordering::AcqRel);
        }
        pb::CosignResponse { cosignature_line: line, error: String::new() }
    }

    fn cosign_and_store(
        &self,
        log_key: &LogKey,
        req: &pb::CosignRequest,
        now_secs: u64,
    ) -> Result<String, String> {
        let origin = log_key.name().to_owned();
        let cp = log_key.verify_checkpoint(&req.checkpoint_note).map_err(|e| e.to_string())?;
        let proof = hashes_from_concatenated(&req.consistency_proof).map_err(|e| e.to_string())?;
        let mut inner = self.inner.lock().map_err(|_| "witness state lock poisoned".to_owned())?;
        if let Some(pinned) = inner.keys.get(&origin)
            && pinned != log_key.as_str()
        {
            return Err(format!(
                "log {origin} was witnessed with key {pinned}; refusing a checkpoint signed with {}",
                log_key.as_str()
            ));
        }
        if let Some(seen) = inner.state.head(&origin)
            && req.old_size != seen.size
            && cp.head().size >= seen.size
        {
            return Err(format!(
                "{CONFLICT_PREFIX}{} for {origin}; send a consistency proof from that size, not {}",
                seen.size, req.old_size
            ));
        }
        let line = inner
            .state
            .cosign(&self.signer, log_key, &req.checkpoint_note, req.old_size, &proof, now_secs)
            .map_err(|e| e.to_string())?;
        let stored = Stored { head: cp.head(), log_key: log_key.as_str().to_owned() };
        // What the tree holds, not what memory holds: a failed insert leaves
        // memory ahead of the tree, and the next request must write it.
        let encoded = stored.encode();
        let unchanged = self.tree.get(state_key(&origin)).ok().flatten().is_some_and(|v| *v == *encoded);
        if !unchanged {
            if let Err(e) = self.tree.insert(state_key(&origin), encoded) {
                // Memory is ahead of the disk; stay strict but give nothing out.
                return Err(format!("witness state not stored: {e}"));
            }
            self.written.fetch_add(1, Ordering::AcqRel);
        }
        inner.keys.insert(origin, stored.log_key);
        Ok(line)
    }
}

fn refusal(error: impl std::fmt::Display) -> pb::CosignResponse {
    pb::CosignResponse { cosignature_line: String::new(), error: error.to_string() }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The size a witness reported in a conflict refusal: retry the request
/// with a consistency proof from it.
pub fn conflict_size(resp: &pb::CosignResponse) -> Option<u64> {
    let rest = resp.error.strip_prefix(CONFLICT_PREFIX)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A request to cosign `checkpoint` of our log, proving consistency from
/// `old_size` (the size the witness last cosigned; 0 for a first contact).
pub fn cosign_request(
    reader: &AuditReader,
    checkpoint: &pb::Checkpoint,
    old_size: u64,
) -> Result<pb::CosignRequest, RelayError> {
    let old_size = old_size.min(checkpoint.size);
    let proof = if old_size == 0 {
        Vec::new()
    } else {
        reader.consistency_proof(old_size, checkpoint.size)?.hashes.concat()
    };
    Ok(pb::CosignRequest { checkpoint_note: checkpoint.note.clone(), consistency_proof: proof, old_size })
}

/// Verifies a peer's cosignature of `note` (a checkpoint of this relay's
/// own log) by `witness`, and stores it with the checkpoint so auditors
/// receive it. Refuses a response with an error, a note that is not our
/// stored checkpoint, and a line that is not a valid cosignature by `witness`.
pub fn accept_cosignature(
    reader: &AuditReader,
    note: &str,
    response: &pb::CosignResponse,
    witness: &WitnessKey,
) -> Result<Cosignature, RelayError> {
    let name = witness.witness_name();
    if !response.error.is_empty() {
        return Err(werr(format!("{name} refused to cosign: {}", response.error)));
    }
    let own = LogKey::parse(&reader.verifier_key()).map_err(werr)?;
    let cp = own.verify_checkpoint(note).map_err(|e| werr(format!("not a checkpoint of this log: {e}")))?;
    let size = cp.head().size;
    let stored = reader
        .checkpoint_at(size)?
        .ok_or_else(|| werr(format!("no checkpoint of size {size} was issued")))?;
    if stored.root_hash != cp.head().root.0 {
        return Err(werr(format!("the note's root differs from the stored checkpoint of size {size}")));
    }
    let cosigned = add_cosignature(note, &response.cosignature_line)
        .map_err(|e| werr(format!("response of {name}: {e}")))?;
    let found = verify_cosignatures(&cosigned, std::slice::from_ref(witness), 1).map_err(|e| match e {
        ProtoError::Witness(m) => werr(format!("response of {name}: {m}")),
        e => werr(e),
    })?;
    let line = response.cosignature_line.strip_suffix('\n').unwrap_or(&response.cosignature_line);
    reader.add_cosignature(size, name, &format!("{line}\n"))?;
    found.into_iter().next().ok_or_else(|| werr(format!("no cosignature by {name}")))
}

#[cfg(test)]
#[path = "witness_tests.rs"]
mod tests;
