//! Key layout of the relay's single sled tree. Every key starts with a short
//! prefix naming what it holds; addresses never contain a NUL byte, so
//! `<address> 0x00` ends an address unambiguously and prefix scans are exact.
//!
//! | prefix | key after the prefix | value |
//! | --- | --- | --- |
//! | `k/` | `version` | store format version (u32 BE) |
//! | `e/` | msgkey | [`StoredEnvelope`](super::records::StoredEnvelope) |
//! | `p/` | msgkey | payload ciphertext, when at most 64 KiB (else a file) |
//! | `d/` | msgkey | dedup: expires_at_ms (i64 BE) ‖ ACCEPTED leaf index (u64 BE) |
//! | `x/` | expires_at_ms (u64 BE) ‖ msgkey | empty: expiry index of `e/` and `d/` |
//! | `m/` | address 0x00 seq (u64 BE) | [`MailboxEntry`](super::records::MailboxEntry) |
//! | `i/` | address 0x00 msgkey | seq (u64 BE): message -> mailbox slot |
//! | `s/` | address | next seq (u64 BE) ‖ messages waiting (u64 BE) |
//! | `r/` | address 0x00 at_ms (u64 BE) ‖ receipt id (32) | `pb::Receipt` |
//! | `D/` | address | `pb::DirectoryEntry` |
//! | `o/` | peer name 0x00 seq (u64 BE) | [`OutboxRecord`](super::fed::OutboxRecord): a copy queued for a peer; a message only forwarded (one copy, inline payload) is held whole here, with no `e/` and `p/` |
//! | `n/` | [`SeenKey::to_bytes`](crate::core::dedup::SeenKey::to_bytes) | the federation seen-set entry (JSON `SeenEntry`) |
//! | `h/` | alternate 0x00 msgkey | a held escalation copy (JSON `Held`, see `casework`) |
//! | `a/` | … | the audit log (`crate::audit`) |
//! | `z/audit-shim/` | leaf index (u64 BE) | temporary audit shim (see `audit_seam`) |
//!
//! msgkey = sender address ‖ 0x00 ‖ msg id (16 bytes): unique per message,
//! since msg ids are unique per sender.

/// Current store format version.
pub(crate) const VERSION: u32 = 1;
pub(crate) const VERSION_KEY: &[u8] = b"k/version";

pub(crate) const ENVELOPE: &[u8] = b"e/";
pub(crate) const PAYLOAD: &[u8] = b"p/";
pub(crate) const DEDUP: &[u8] = b"d/";
pub(crate) const EXPIRY: &[u8] = b"x/";
pub(crate) const MAILBOX: &[u8] = b"m/";
pub(crate) const MAILBOX_INDEX: &[u8] = b"i/";
pub(crate) const MAILBOX_META: &[u8] = b"s/";
pub(crate) const RECEIPTS: &[u8] = b"r/";
pub(crate) const DIRECTORY: &[u8] = b"D/";
/// Per-peer outboxes: `o/<peer>\0<seq BE>`.
pub const OUTBOX: &[u8] = b"o/";
/// The relay core's seen-set: `n/<SeenKey bytes>`.
pub(crate) const SEEN: &[u8] = b"n/";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// sender ‖ 0x00 ‖ msg id.
pub(crate) fn msg_key(sender: &str, msg_id: &[u8; 16]) -> Vec<u8> {
    cat(&[sender.as_bytes(), &[0], msg_id])
}

pub(crate) fn envelope(mk: &[u8]) -> Vec<u8> {
    cat(&[ENVELOPE, mk])
}
pub(crate) fn payload(mk: &[u8]) -> Vec<u8> {
    cat(&[PAYLOAD, mk])
}
pub(crate) fn dedup(mk: &[u8]) -> Vec<u8> {
    cat(&[DEDUP, mk])
}
pub(crate) fn expiry(expires_at_ms: i64, mk: &[u8]) -> Vec<u8> {
    cat(&[EXPIRY, &(expires_at_ms.max(0) as u64).to_be_bytes(), mk])
}
/// Expiry index keys due at or before `now_ms` are below this bound.
pub(crate) fn expiry_upper(now_ms: i64) -> Vec<u8> {
    cat(&[EXPIRY, &(now_ms.max(0) as u64 + 1).to_be_bytes()])
}
/// (expires_at_ms, msgkey) of an expiry index key.
pub(crate) fn split_expiry(key: &[u8]) -> Option<(i64, &[u8])> {
    let rest = key.strip_prefix(EXPIRY)?;
    let (t, mk) = rest.split_at_checked(8)?;
    Some((u64::from_be_bytes(t.try_into().ok()?) as i64, mk))
}

pub(crate) fn mailbox(addr: &str, seq: u64) -> Vec<u8> {
    cat(&[MAILBOX, addr.as_bytes(), &[0], &seq.to_be_bytes()])
}
pub(crate) fn mailbox_index(addr: &str, mk: &[u8]) -> Vec<u8> {
    cat(&[MAILBOX_INDEX, addr.as_bytes(), &[0], mk])
}
pub(crate) fn mailbox_meta(addr: &str) -> Vec<u8> {
    cat(&[MAILBOX_META, addr.as_bytes()])
}
pub(crate) fn receipts_prefix(addr: &str) -> Vec<u8> {
    cat(&[RECEIPTS, addr.as_bytes(), &[0]])
}
pub(crate) fn receipt(addr: &str, at_ms: i64, receipt_id: &[u8; 32]) -> Vec<u8> {
    cat(&[RECEIPTS, addr.as_bytes(), &[0], &(at_ms.max(0) as u64).to_be_bytes(), receipt_id])
}
pub(crate) fn directory(addr: &str) -> Vec<u8> {
    cat(&[DIRECTORY, addr.as_bytes()])
}

pub(crate) fn outbox(peer: &str, seq: u64) -> Vec<u8> {
    cat(&[OUTBOX, peer.as_bytes(), &[0], &seq.to_be_bytes()])
}
/// (peer, seq) of an outbox key.
pub(crate) fn split_outbox(key: &[u8]) -> Option<(String, u64)> {
    let rest = key.strip_prefix(OUTBOX)?;
    let (peer, seq) = rest.split_at_checked(rest.len().checked_sub(9)?)?;
    let seq = seq.strip_prefix(&[0])?;
    Some((String::from_utf8(peer.to_vec()).ok()?, u64_be(seq)?))
}
pub(crate) fn seen(key_bytes: &[u8]) -> Vec<u8> {
    cat(&[SEEN, key_bytes])
}

pub(crate) fn u64_be(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// A key for error messages: printable ASCII kept, the rest hex-escaped.
pub(crate) fn show(key: &[u8]) -> String {
    key.iter()
        .map(|&b| if b.is_ascii_graphic() { (b as char).to_string() } else { format!("\\x{b:02x}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_keys_round_trip_and_sort() {
        let id = [7u8; 16];
        let mk = msg_key("a@carin", &id);
        assert_eq!(mk.len(), "a@carin".len() + 17);
        let k = expiry(1_000, &mk);
        assert_eq!(split_expiry(&k), Some((1_000, mk.as_slice())));
        assert!(k < expiry_upper(1_000) && expiry_upper(999) <= k);
        assert!(mailbox("a@carin", 2) < mailbox("a@carin", 10));
        // "a@carin\0" is never a prefix of another address's keys.
        assert!(mailbox("a@carin", u64::MAX) < mailbox("a@carin0", 0));
        assert!(
            receipts_prefix("a@carin") != receipts_prefix("ab@carin")[..receipts_prefix("a@carin").len()]
        );
    }
}
