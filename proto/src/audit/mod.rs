//! Audit log, sans I/O: record encoding, RFC 9162 Merkle hashing, C2SP
//! checkpoints (signed notes) and witness cosignatures, inclusion and
//! consistency proofs, and whole-log verification.
//!
//! The relay stores the log in sled (`focal_relay::audit`), auditors keep a
//! copy on disk (`focal_client::audit`); both use the types here, and
//! [`MemoryLog`] serves tests and offline tools. Hashing and proofs come from
//! the `tlog_tiles` crate (a port of Go's `sumdb/tlog`), notes from
//! `signed_note`; this module adds Focal's record format, key handling with
//! `ring`, C2SP `cosignature/v1` and errors that name what is wrong.

mod checkpoint;
mod cosign;
mod merkle;
mod record;
mod verify;

pub use checkpoint::{
    CheckpointBody, LogKey, MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES, NoteSigner, SignedCheckpoint,
    note_signatures,
};
pub use cosign::{
    Cosignature, WitnessKey, WitnessSigner, WitnessState, add_cosignature, verify_cosignatures,
};
pub use merkle::{
    MemoryLog, RootBuilder, TreeHead, consistency_proof_len, hash_from_bytes, hashes_from_bytes,
    hashes_from_concatenated, inclusion_proof_len, leaf_hash, node_hash, prove_consistency, prove_inclusion,
    tree_root, verify_consistency, verify_inclusion,
};
pub use record::{MAX_LEAF_BYTES, RECORD_VERSION, decode_record, encode_record, kind_name, validate_record};
pub use tlog_tiles::{EMPTY_HASH, HASH_SIZE, Hash, HashReader};
pub use verify::{VerifiedLog, check_not_rolled_back, prefix_fork, verify_log};
