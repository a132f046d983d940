//! Values the store keeps under its own prefixes, as prost messages (so a
//! later format can add fields without a migration). Only headers and
//! metadata live here; payload ciphertext is under `p/` or in a file.
//!
//! Audit records about a stored envelope start from
//! [`StoredEnvelope::audit_record`] (the fields every such record shares)
//! and are staged by [`stage_or_log`], so expiry, retention and case work
//! build them one way.

use focal_proto::pb;
use prost::Message;

use super::audit_seam::AuditSeam;
use super::ops::Fatal;
use super::writer::Staged;
use crate::RelayError;

/// `e/<msgkey>`: one accepted envelope held for this relay's recipients.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredEnvelope {
    /// The clear header, with this relay's hop appended.
    #[prost(message, optional, tag = "1")]
    pub header: Option<pb::EnvelopeHeader>,
    /// When this relay accepted it (relay clock, unix ms).
    #[prost(int64, tag = "2")]
    pub received_at_ms: i64,
    /// The context's expires_at_ms.
    #[prost(int64, tag = "3")]
    pub expires_at_ms: i64,
    /// This relay's recipients (mailboxes it was put into).
    #[prost(string, repeated, tag = "4")]
    pub recipients: Vec<String>,
    /// Recipients that have neither acknowledged it nor seen it expire.
    #[prost(string, repeated, tag = "5")]
    pub pending: Vec<String>,
    /// Payload file name under `<data_dir>/payloads/`; empty = inline under `p/`.
    #[prost(string, tag = "6")]
    pub payload_file: String,
    /// Ciphertext size in bytes.
    #[prost(uint64, tag = "7")]
    pub payload_size: u64,
    /// Leaf index of the ACCEPTED audit record.
    #[prost(uint64, tag = "8")]
    pub accepted_leaf: u64,
    /// The sender's address (also in the context; kept for quick access).
    #[prost(string, tag = "9")]
    pub sender: String,
    /// The 16-byte msg id.
    #[prost(bytes = "vec", tag = "10")]
    pub msg_id: Vec<u8>,
    /// Handling code of the context (for audit records).
    #[prost(enumeration = "pb::HandlingCode", tag = "11")]
    pub handling: i32,
    /// Priority of the context (for audit records).
    #[prost(enumeration = "pb::Priority", tag = "12")]
    pub priority: i32,
    /// Outbox copies (`<peer>/<seq>`) still sharing this envelope's payload;
    /// the envelope and payload stay until these and `pending` are empty.
    #[prost(string, repeated, tag = "13")]
    pub forwards: Vec<String>,
}

impl StoredEnvelope {
    /// SHA-256 of the payload ciphertext, from the clear header (empty if
    /// the header is missing).
    pub(crate) fn payload_digest(&self) -> Vec<u8> {
        self.header.as_ref().map(|h| h.payload_sha256.clone()).unwrap_or_default()
    }

    /// An audit record of `kind` about this envelope at `now_ms`, with the
    /// fields every such record shares (msg id, sender, payload digest and
    /// size, handling, priority); the caller adds recipients, peer, hop,
    /// reason and detail.
    pub(crate) fn audit_record(&self, kind: pb::AuditKind, now_ms: i64) -> pb::AuditRecord {
        pb::AuditRecord {
            version: 1,
            kind: kind as i32,
            time_ms: now_ms,
            msg_id: self.msg_id.clone(),
            sender: self.sender.clone(),
            payload_sha256: self.payload_digest(),
            size: self.payload_size,
            handling: self.handling,
            priority: self.priority,
            ..Default::default()
        }
    }
}

/// Stages `record` if it is valid; an invalid one is logged (with `what`
/// it was about) and left out, so the change it records still happens:
/// for records built from stored state, which the relay must be able to
/// clean up even if that state is odd.
pub(super) fn stage_or_log(
    st: &mut Staged<'_>,
    audit: &mut AuditSeam,
    record: &pb::AuditRecord,
    what: &str,
) -> Result<(), Fatal> {
    match AuditSeam::validate(record) {
        Ok(()) => {
            st.audit(audit, record)?;
        }
        Err(e) => tracing::error!(error = %e, what, "audit record invalid; not logged"),
    }
    Ok(())
}

/// `m/<address>\0<seq>`: one waiting message in a mailbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MailboxEntry {
    /// The message's msgkey (see `keys`).
    #[prost(bytes = "vec", tag = "1")]
    pub msg_key: Vec<u8>,
    /// When it was put into the mailbox (relay clock, unix ms).
    #[prost(int64, tag = "2")]
    pub received_at_ms: i64,
}

/// `s/<address>`: mailbox sequence and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxMeta {
    /// Sequence number the next message gets (starts at 1).
    pub next_seq: u64,
    /// Messages waiting.
    pub count: u64,
}

impl MailboxMeta {
    pub(crate) fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_seq.to_be_bytes());
        b[8..].copy_from_slice(&self.count.to_be_bytes());
        b
    }

    pub(crate) fn decode(key: &[u8], v: Option<&[u8]>) -> Result<Self, RelayError> {
        let Some(v) = v else { return Ok(MailboxMeta { next_seq: 1, count: 0 }) };
        let bad = || RelayError::Corrupt { key: super::keys::show(key), detail: "expected 16 bytes".into() };
        let next_seq = super::keys::u64_be(v.get(..8).ok_or_else(bad)?).ok_or_else(bad)?;
        let count = super::keys::u64_be(v.get(8..).ok_or_else(bad)?).ok_or_else(bad)?;
        Ok(MailboxMeta { next_seq, count })
    }
}

/// `d/<msgkey>`: the dedup record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupRecord {
    /// Until when (the message's expires_at_ms) the msg id is remembered.
    pub expires_at_ms: i64,
    /// Leaf index of the ACCEPTED audit record.
    pub accepted_leaf: u64,
}

impl DedupRecord {
    pub(crate) fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.expires_at_ms.to_be_bytes());
        b[8..].copy_from_slice(&self.accepted_leaf.to_be_bytes());
        b
    }

    pub(crate) fn decode(key: &[u8], v: &[u8]) -> Result<Self, RelayError> {
        let bad = || RelayError::Corrupt { key: super::keys::show(key), detail: "expected 16 bytes".into() };
        if v.len() != 16 {
            return Err(bad());
        }
        Ok(DedupRecord {
            expires_at_ms: i64::from_be_bytes(v[..8].try_into().map_err(|_| bad())?),
            accepted_leaf: u64::from_be_bytes(v[8..].try_into().map_err(|_| bad())?),
        })
    }
}

/// Decodes a prost value stored at `key`, naming the key on failure.
pub(crate) fn decode<M: Message + Default>(key: &[u8], v: &[u8]) -> Result<M, RelayError> {
    M::decode(v).map_err(|e| RelayError::Corrupt { key: super::keys::show(key), detail: e.to_string() })
}
