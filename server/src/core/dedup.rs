//! The seen-set: which (sender, msg id) envelopes, and which receipts, this
//! relay has already handled, kept until they expire.
//!
//! Every hop de-duplicates, so that at-least-once transfer between relays
//! becomes exactly-once delivery to each recipient. An entry records the
//! RECIPIENTS already handled (delivered locally, queued for a peer, or
//! refused), not just the key: a relay can legitimately receive two copies of
//! one message carrying different `deliver_to` sets, and the second copy must
//! still be handled for the recipients the first did not carry. A copy whose
//! recipients were all handled is a duplicate.
//!
//! Entries live until their `expires_at_ms` (the envelope's expiry plus a
//! grace covering clock skew, chosen by [`crate::core::RelayCore`]); after
//! that the policy check refuses the envelope as expired anyway.
//!
//! Persistence contract: every change returns the full updated
//! [`SeenEntry`]; the store writes it (under its own key, e.g.
//! `d/<key bytes>`) in the same batch as the queue change it belongs to.
//! [`SeenSet::expire`] returns the keys it dropped, for the store to delete.
//! At start, [`SeenSet::restore`] takes back whatever the store lists.

use std::collections::{BTreeMap, BTreeSet};

use focal_proto::Address;
use serde::{Deserialize, Serialize};

/// What is de-duplicated.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SeenKey {
    /// An envelope: its signed sender and msg id (unique per sender).
    Message {
        /// `Context.sender`.
        sender: Address,
        /// `Context.msg_id`.
        msg_id: [u8; 16],
    },
    /// A receipt: SHA-256 of its signed body (`ReceiptTransfer.receipt_id`).
    Receipt {
        /// The receipt id.
        id: [u8; 32],
    },
}

impl SeenKey {
    /// Bytes suitable as a store key suffix: `m` + msg id + sender, or `r` +
    /// receipt id. Distinct keys give distinct bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SeenKey::Message { sender, msg_id } => {
                let mut v = vec![b'm'];
                v.extend_from_slice(msg_id);
                v.extend_from_slice(sender.to_string().as_bytes());
                v
            }
            SeenKey::Receipt { id } => {
                let mut v = vec![b'r'];
                v.extend_from_slice(id);
                v
            }
        }
    }
}

/// One persisted entry of the seen-set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenEntry {
    /// What was seen.
    pub key: SeenKey,
    /// When the entry may be forgotten (unix ms).
    pub expires_at_ms: i64,
    /// Recipients already handled (always empty for receipts).
    pub recipients: Vec<Address>,
}

#[derive(Clone, Debug)]
struct Slot {
    expires_at_ms: i64,
    recipients: BTreeSet<Address>,
}

/// The seen-set is full: refuse new work with STORE_FULL until entries expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the de-duplication table is full ({0} entries)")]
pub struct SeenFull(pub usize);

/// The in-memory seen-set, bounded by `capacity` keys.
#[derive(Clone, Debug)]
pub struct SeenSet {
    capacity: usize,
    slots: BTreeMap<SeenKey, Slot>,
    by_expiry: BTreeSet<(i64, SeenKey)>,
}

impl SeenSet {
    /// An empty set holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        SeenSet { capacity, slots: BTreeMap::new(), by_expiry: BTreeSet::new() }
    }

    /// True if `key` was seen (for any recipient).
    pub fn contains(&self, key: &SeenKey) -> bool {
        self.slots.contains_key(key)
    }

    /// True if `recipient`'s share of `key` was handled.
    pub fn handled(&self, key: &SeenKey, recipient: &Address) -> bool {
        self.slots.get(key).is_some_and(|s| s.recipients.contains(recipient))
    }

    /// The recipients of `copy` not handled yet, in the order given.
    pub fn unhandled(&self, key: &SeenKey, copy: &[Address]) -> Vec<Address> {
        match self.slots.get(key) {
            None => copy.to_vec(),
            Some(s) => copy.iter().filter(|r| !s.recipients.contains(r)).cloned().collect(),
        }
    }

    /// True if inserting `key` would need room the set does not have.
    pub fn would_overflow(&self, key: &SeenKey) -> bool {
        !self.slots.contains_key(key) && self.slots.len() >= self.capacity
    }

    /// Records `recipients` of `key` as handled (merging with what is there)
    /// and returns the entry to persist. The later of the two expiries wins.
    pub fn insert(
        &mut self,
        key: SeenKey,
        recipients: impl IntoIterator<Item = Address>,
        expires_at_ms: i64,
    ) -> Result<SeenEntry, SeenFull> {
        if self.would_overflow(&key) {
            return Err(SeenFull(self.capacity));
        }
        let slot = match self.slots.get_mut(&key) {
            Some(slot) => {
                if expires_at_ms > slot.expires_at_ms {
                    self.by_expiry.remove(&(slot.expires_at_ms, key.clone()));
                    slot.expires_at_ms = expires_at_ms;
                    self.by_expiry.insert((expires_at_ms, key.clone()));
                }
                slot
            }
            None => {
                self.by_expiry.insert((expires_at_ms, key.clone()));
                self.slots.entry(key.clone()).or_insert(Slot { expires_at_ms, recipients: BTreeSet::new() })
            }
        };
        slot.recipients.extend(recipients);
        Ok(SeenEntry {
            key,
            expires_at_ms: slot.expires_at_ms,
            recipients: slot.recipients.iter().cloned().collect(),
        })
    }

    /// Drops entries with `expires_at_ms <= now_ms`; returns their keys so
    /// the store can delete them.
    pub fn expire(&mut self, now_ms: i64) -> Vec<SeenKey> {
        let mut gone = Vec::new();
        while let Some((at, _)) = self.by_expiry.first() {
            if *at > now_ms {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.slots.remove(&key);
                gone.push(key);
            }
        }
        gone
    }

    /// Earliest expiry in the set, if any.
    pub fn next_expiry(&self) -> Option<i64> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    /// Every entry, in key order (for a full rewrite or inspection).
    pub fn entries(&self) -> impl Iterator<Item = SeenEntry> + '_ {
        self.slots.iter().map(|(k, s)| SeenEntry {
            key: k.clone(),
            expires_at_ms: s.expires_at_ms,
            recipients: s.recipients.iter().cloned().collect(),
        })
    }

    /// Loads entries listed by the store (merging duplicates). Restoring
    /// ignores the capacity: what is on disk was admitted before.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = SeenEntry>) {
        let cap = self.capacity;
        self.capacity = usize::MAX;
        for e in entries {
            let _ = self.insert(e.key, e.recipients, e.expires_at_ms);
        }
        self.capacity = cap;
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn key(n: u8) -> SeenKey {
        SeenKey::Message { sender: a("nl-fiod@carin"), msg_id: [n; 16] }
    }

    #[test]
    fn tracks_recipients_per_key_and_expires() {
        let mut s = SeenSet::new(10);
        let (x, y) = (a("x@arinsa"), a("y@rrag"));
        assert_eq!(s.unhandled(&key(1), &[x.clone(), y.clone()]), vec![x.clone(), y.clone()]);
        let e = s.insert(key(1), [x.clone()], 1_000).unwrap();
        assert_eq!(e.recipients, vec![x.clone()]);
        assert!(s.contains(&key(1)) && s.handled(&key(1), &x) && !s.handled(&key(1), &y));
        assert_eq!(s.unhandled(&key(1), &[x.clone(), y.clone()]), vec![y.clone()]);
        let e = s.insert(key(1), [y.clone()], 500).unwrap();
        assert_eq!((e.expires_at_ms, e.recipients.len()), (1_000, 2), "later expiry wins, recipients merge");
        s.insert(key(2), [], 2_000).unwrap();
        assert_eq!(s.next_expiry(), Some(1_000));
        assert!(s.expire(999).is_empty());
        assert_eq!(s.expire(1_000), vec![key(1)]);
        assert!(!s.contains(&key(1)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn bounded_and_restorable() {
        let mut s = SeenSet::new(2);
        s.insert(key(1), [a("x@arinsa")], 10).unwrap();
        s.insert(SeenKey::Receipt { id: [9; 32] }, [], 20).unwrap();
        assert_eq!(s.insert(key(3), [], 30), Err(SeenFull(2)));
        s.insert(key(1), [a("z@arinsa")], 10).unwrap();
        let listed: Vec<SeenEntry> = s.entries().collect();
        let mut t = SeenSet::new(1);
        t.restore(listed.clone());
        assert_eq!(t.entries().collect::<Vec<_>>(), listed);
        assert_eq!(t.expire(10), vec![key(1)]);
        assert_ne!(key(1).to_bytes(), SeenKey::Receipt { id: [1; 32] }.to_bytes());
    }
}
