//! The one error type of `focal-proto`. Each variant names what was wrong so
//! that a relay can turn it into a precise gRPC status or refusal reason.

/// Everything that can go wrong parsing, sealing, opening or verifying
/// protocol data.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    // ---- addresses and identities
    /// An address, network id, role or name failed to parse.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidAddress {
        /// Which kind of value ("address", "network id", "name", "role").
        what: &'static str,
        /// The offending input, truncated to a printable length.
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },

    // ---- frames
    /// A frame announced a length above the codec's maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// Configured maximum.
        max: u64,
    },
    /// The input ended inside a frame.
    #[error("truncated frame: needed {needed} more bytes")]
    FrameTruncated {
        /// How many more bytes the frame needs.
        needed: u64,
    },
    /// A frame's body is not valid protobuf for the expected message.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which message failed to decode.
        what: &'static str,
        /// Decoder detail.
        detail: String,
    },

    // ---- envelope: structure and policy-free validity
    /// A context field is missing or out of range.
    #[error("invalid context: {0}")]
    InvalidContext(String),
    /// The context bytes are not the canonical encoding of the decoded context.
    #[error("context is not canonically encoded")]
    NonCanonicalContext,
    /// The header's payload digest or size does not match the payload.
    #[error("payload does not match the header: {0}")]
    PayloadMismatch(String),

    // ---- envelope: cryptography
    /// The sender signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// A key or certificate could not be parsed or used.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The age header could not be parsed.
    #[error("malformed age header: {0}")]
    MalformedHeader(String),
    /// The age header MAC does not verify.
    #[error("age header MAC mismatch")]
    HeaderMac,
    /// None of the recipient stanzas could be unwrapped with the given key.
    #[error("no recipient stanza matches this key")]
    NoMatchingRecipient,
    /// The X25519 shared secret is all zero (low-order point).
    #[error("X25519 shared secret is all zero")]
    ZeroSharedSecret,
    /// A sealer was given no recipient key, or more than it may seal to.
    #[error("invalid recipients: {0}")]
    InvalidRecipients(String),
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// A payload STREAM chunk failed to authenticate.
    #[error("payload chunk {index} failed authentication")]
    ChunkAuth {
        /// Zero-based chunk index.
        index: u64,
    },
    /// The payload ended before its final chunk.
    #[error("payload truncated: no final chunk")]
    Truncated,
    /// Bytes follow the final chunk.
    #[error("data after the final payload chunk")]
    TrailingData,
    /// An empty non-final chunk or another structural STREAM error.
    #[error("invalid payload stream: {0}")]
    InvalidStream(&'static str),
    /// The plaintext does not start with SHA-256(context): the payload belongs
    /// to another context (re-addressed or swapped).
    #[error("payload is bound to a different context")]
    ContextBinding,
    /// A signed statement (directory entry, receipt, release) failed to verify.
    #[error("invalid {what}: {reason}")]
    InvalidSigned {
        /// Which statement.
        what: &'static str,
        /// Why.
        reason: String,
    },

    // ---- audit log
    /// An audit proof, checkpoint or leaf failed verification (other cases).
    #[error("audit verification failed: {0}")]
    Audit(String),
    /// An audit record is invalid (encoding it or decoding a leaf).
    #[error("invalid audit record: {0}")]
    AuditRecord(String),
    /// Leaf `index` of a log is not a valid, canonically encoded record.
    #[error("audit leaf {index} is malformed: {detail}")]
    AuditLeafMalformed {
        /// Zero-based leaf index.
        index: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// A checkpoint (signed note) cannot be parsed.
    #[error("malformed checkpoint: {0}")]
    CheckpointMalformed(String),
    /// A checkpoint's signature by the log key is missing or does not verify.
    #[error("bad checkpoint signature: {0}")]
    CheckpointSignature(String),
    /// The entries do not hash to the root a signed checkpoint states.
    #[error(
        "root mismatch at size {size}: the entries hash to {computed}, the signed checkpoint says {signed}"
    )]
    RootMismatch {
        /// Tree size of the checkpoint.
        size: u64,
        /// Root computed from the entries (base64).
        computed: String,
        /// Root in the checkpoint (base64).
        signed: String,
    },
    /// The log has fewer entries than its checkpoint covers.
    #[error("log truncated: the checkpoint covers {expected} entries but only {found} are present")]
    LogTruncated {
        /// Size of the checkpoint.
        expected: u64,
        /// Entries present.
        found: u64,
    },
    /// The log has more entries than its checkpoint covers.
    #[error("{found} entries present but the checkpoint covers only {expected}")]
    LogOverlong {
        /// Size of the checkpoint.
        expected: u64,
        /// Entries present.
        found: u64,
    },
    /// An inclusion proof does not verify.
    #[error("invalid inclusion proof for leaf {index} in tree of size {size}: {detail}")]
    InclusionProof {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
        /// Why.
        detail: String,
    },
    /// A consistency proof does not verify.
    #[error("invalid consistency proof from size {old_size} to {new_size}: {detail}")]
    ConsistencyProof {
        /// Smaller tree size.
        old_size: u64,
        /// Larger tree size.
        new_size: u64,
        /// Why.
        detail: String,
    },
    /// A validly signed checkpoint is smaller than one seen before.
    #[error(
        "rollback: the log presents a checkpoint of size {new_size}, but a checkpoint of size {seen_size} was seen before"
    )]
    Rollback {
        /// Size seen before.
        seen_size: u64,
        /// Size presented now.
        new_size: u64,
    },
    /// Two validly signed views of the log disagree: the history changed.
    #[error("fork: {0}")]
    Fork(String),
    /// Witness cosignatures are missing, unknown or invalid.
    #[error("witness cosignatures: {0}")]
    Witness(String),
}

impl ProtoError {
    pub(crate) fn addr(what: &'static str, input: &str, reason: &'static str) -> Self {
        let mut shown: String = input.chars().take(80).collect();
        if input.chars().count() > 80 {
            shown.push('…');
        }
        ProtoError::InvalidAddress { what, input: shown, reason }
    }

    /// Convenience for decode errors of a named message.
    pub fn malformed(what: &'static str, err: impl std::fmt::Display) -> Self {
        ProtoError::Malformed { what, detail: err.to_string() }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ProtoError> = std::result::Result<T, E>;
