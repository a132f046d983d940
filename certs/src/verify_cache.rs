//! A memo of successful certificate verifications, owned by one
//! [`crate::TrustStore`] snapshot.
//!
//! Every envelope, receipt and directory entry carries its signer's
//! certificate, and every relay on the path verifies it: the same few
//! certificates, thousands of times a second. A verification depends only on
//! the certificate bytes, the usage, the trust snapshot (CAs and CRLs) and
//! the time; the snapshot is immutable and a reload builds a new one (with an
//! empty memo), so a hit stays correct as long as the time is inside the
//! window in which the full check would pass again: the certificate's and
//! its CA's validity, and before the CA's CRL `nextUpdate` (a CRL past it
//! refuses everything, fail closed). Only successes are remembered; a
//! refusal is computed again each time, with its full error.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::verify::{Usage, VerifiedPeer};

/// Entries kept before the memo is emptied and refilled.
pub(crate) const MAX_ENTRIES: usize = 4096;

/// A successful verification and the times (Unix seconds, inclusive) in
/// which repeating it gives the same answer.
#[derive(Clone, Debug)]
pub(crate) struct Memo {
    pub(crate) peer: VerifiedPeer,
    pub(crate) valid_from: i64,
    pub(crate) valid_until: i64,
}

/// Key: SHA-256 of the certificate DER and the usage checked.
type Key = ([u8; 32], Usage);

/// The memo itself (bounded).
#[derive(Debug, Default)]
pub(crate) struct VerifyCache {
    entries: Mutex<HashMap<Key, Memo>>,
}

impl VerifyCache {
    pub(crate) fn key(der: &[u8], usage: Usage) -> Key {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut k = [0u8; 32];
        k.copy_from_slice(digest.as_ref());
        (k, usage)
    }

    /// The remembered verification, if `now` is inside its window.
    pub(crate) fn get(&self, key: &Key, now: i64) -> Option<VerifiedPeer> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|m| m.valid_from <= now && now <= m.valid_until)
            .map(|m| m.peer.clone())
    }

    pub(crate) fn put(&self, key: Key, memo: Memo) {
        if memo.valid_from > memo.valid_until {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, memo);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use focal_proto::Identity;

    fn memo(from: i64, until: i64) -> Memo {
        Memo {
            peer: VerifiedPeer {
                identity: Identity::from_uri("focal://carin/fp/nl").unwrap(),
                ed25519_public: [7; 32],
                not_after: std::time::UNIX_EPOCH,
            },
            valid_from: from,
            valid_until: until,
        }
    }

    #[test]
    fn a_memo_answers_only_inside_its_window_and_the_memo_stays_bounded() {
        let c = VerifyCache::default();
        let k = VerifyCache::key(b"cert", Usage::Client);
        c.put(k, memo(10, 20));
        assert!(c.get(&k, 9).is_none());
        assert!(c.get(&k, 10).is_some() && c.get(&k, 20).is_some());
        assert!(c.get(&k, 21).is_none());
        assert!(c.get(&VerifyCache::key(b"cert", Usage::Server), 15).is_none(), "usage is part of the key");
        c.put(VerifyCache::key(b"empty", Usage::Client), memo(30, 20));
        assert_eq!(c.len(), 1, "an empty window is not stored");
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            c.put(VerifyCache::key(&i.to_be_bytes(), Usage::Client), memo(0, 100));
        }
        assert!(c.len() <= MAX_ENTRIES);
    }
}
