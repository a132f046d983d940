//! Audit records: the exact bytes of a leaf. Version 1 is the prost encoding
//! of `pb::AuditRecord`; a leaf is accepted only if re-encoding the decoded
//! record gives the same bytes, so every record has exactly one leaf.

use prost::Message;

use crate::error::{ProtoError, Result};
use crate::pb;

/// The record version this code writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// Largest leaf accepted (a record holds no content, only metadata). The
/// largest a relay writes is a record listing every recipient of a context:
/// [`crate::envelope::MAX_RECIPIENTS`] addresses of at most 97 bytes each
/// (about 200 KiB), beside details the relay cuts to a few hundred
/// characters; the unit tests check that such a record fits.
pub const MAX_LEAF_BYTES: usize = 256 * 1024;

/// Checks a record's fields: version, known enum values, id and digest sizes.
pub fn validate_record(r: &pb::AuditRecord) -> Result<()> {
    let bad = |m: String| Err(ProtoError::AuditRecord(m));
    if r.version != RECORD_VERSION {
        return bad(format!("version {} (expected {RECORD_VERSION})", r.version));
    }
    match pb::AuditKind::try_from(r.kind) {
        Ok(pb::AuditKind::Unspecified) => return bad("kind is unspecified".into()),
        Err(_) => return bad(format!("unknown kind {}", r.kind)),
        Ok(_) => {}
    }
    if !r.msg_id.is_empty() && r.msg_id.len() != 16 {
        return bad(format!("msg id of {} bytes (expected 16 or none)", r.msg_id.len()));
    }
    if !r.payload_sha256.is_empty() && r.payload_sha256.len() != 32 {
        return bad(format!("payload digest of {} bytes (expected 32 or none)", r.payload_sha256.len()));
    }
    if pb::HandlingCode::try_from(r.handling).is_err() {
        return bad(format!("unknown handling code {}", r.handling));
    }
    if pb::RefusalReason::try_from(r.reason).is_err() {
        return bad(format!("unknown refusal reason {}", r.reason));
    }
    if pb::Priority::try_from(r.priority).is_err() {
        return bad(format!("unknown priority {}", r.priority));
    }
    if r.time_ms < 0 {
        return bad(format!("negative time {}", r.time_ms));
    }
    let len = r.encoded_len();
    if len > MAX_LEAF_BYTES {
        return bad(format!(
            "encoded record of {len} bytes ({} recipients) exceeds {MAX_LEAF_BYTES}",
            r.recipients.len()
        ));
    }
    Ok(())
}

/// Validates and encodes a record: the returned bytes are the leaf.
pub fn encode_record(r: &pb::AuditRecord) -> Result<Vec<u8>> {
    validate_record(r)?;
    Ok(r.encode_to_vec())
}

/// Decodes a leaf, checking size, validity and canonical encoding.
pub fn decode_record(leaf: &[u8]) -> Result<pb::AuditRecord> {
    if leaf.len() > MAX_LEAF_BYTES {
        return Err(ProtoError::AuditRecord(format!(
            "leaf of {} bytes exceeds {MAX_LEAF_BYTES}",
            leaf.len()
        )));
    }
    let r = pb::AuditRecord::decode(leaf)
        .map_err(|e| ProtoError::AuditRecord(format!("not an AuditRecord: {e}")))?;
    validate_record(&r)?;
    if r.encoded_len() != leaf.len() || r.encode_to_vec() != leaf {
        return Err(ProtoError::AuditRecord("not canonically encoded".into()));
    }
    Ok(r)
}

/// Short lower-case name of a record kind (`accepted`, `peer-refused`, …).
pub fn kind_name(kind: i32) -> &'static str {
    use pb::AuditKind as K;
    match K::try_from(kind) {
        Ok(K::Unspecified) | Err(_) => "unknown",
        Ok(K::Accepted) => "accepted",
        Ok(K::Forwarded) => "forwarded",
        Ok(K::Received) => "received",
        Ok(K::Delivered) => "delivered",
        Ok(K::Acked) => "acked",
        Ok(K::Refused) => "refused",
        Ok(K::Expired) => "expired",
        Ok(K::PeerConnected) => "peer-connected",
        Ok(K::PeerRefused) => "peer-refused",
        Ok(K::CertificateRefused) => "certificate-refused",
        Ok(K::Escalated) => "escalated",
        Ok(K::Purged) => "purged",
        Ok(K::RetentionPurged) => "retention-purged",
        Ok(K::EscalationCancelled) => "escalation-cancelled",
        Ok(K::WitnessForgotten) => "witness-forgotten",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{MAX_NAME_LEN, MAX_NETWORK_LEN};
    use crate::envelope::MAX_RECIPIENTS;

    /// The largest record a relay writes: every recipient of a context with
    /// the longest names, and the longest details and peer it writes.
    fn largest_record() -> pb::AuditRecord {
        let longest = |i: usize| {
            let name = format!("{i:0>width$}", width = MAX_NAME_LEN);
            format!("{name}@{}", "n".repeat(MAX_NETWORK_LEN))
        };
        pb::AuditRecord {
            version: RECORD_VERSION,
            kind: pb::AuditKind::Refused as i32,
            time_ms: i64::MAX,
            msg_id: vec![0xff; 16],
            sender: longest(0),
            recipients: (0..MAX_RECIPIENTS).map(longest).collect(),
            peer: format!("focal://{}/fp/{}", "n".repeat(MAX_NETWORK_LEN), "x".repeat(MAX_NAME_LEN)),
            payload_sha256: vec![0xff; 32],
            size: u64::MAX,
            hop: u32::MAX,
            // Details are cut to at most 300 characters, each up to 4 bytes.
            detail: "\u{10ffff}".repeat(300),
            ..Default::default()
        }
    }

    #[test]
    fn the_largest_record_a_relay_writes_fits_a_leaf() {
        let r = largest_record();
        let leaf = encode_record(&r).expect("fits");
        assert!(leaf.len() <= MAX_LEAF_BYTES, "{} bytes", leaf.len());
        assert_eq!(decode_record(&leaf).expect("decodes"), r);
    }

    #[test]
    fn an_oversized_record_is_refused_before_it_is_encoded() {
        let mut r = largest_record();
        r.recipients.extend(r.recipients.clone());
        let e = validate_record(&r).expect_err("too large").to_string();
        assert!(e.contains("exceeds") && e.contains("4096 recipients"), "{e}");
        assert!(encode_record(&r).is_err());
    }
}
