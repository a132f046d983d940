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
//! Bounds: envelopes and receipts each have room for `capacity` keys, so
//! receipts (which any relay of the federation can sign, and which are kept
//! for the receipt lifetime) can never take the room envelopes need. A
//! receipt delivered by a peer is charged to that peer, and one peer's
//! receipts may hold at most a quarter of the receipts' room: a rogue peer
//! flooding receipts is answered RETRY while other peers' receipts pass.
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
    /// The peer a receipt's entry is charged to (the one that delivered it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged_to: Option<String>,
}

#[derive(Clone, Debug)]
struct Slot {
    expires_at_ms: i64,
    recipients: BTreeSet<Address>,
    charged_to: Option<String>,
}

/// The seen-set has no room for the key: refuse new work with STORE_FULL
/// until entries expire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeenFull {
    /// Envelope keys at their bound.
    #[error("the de-duplication table is full ({0} envelopes)")]
    Envelopes(usize),
    /// Receipt keys at their bound.
    #[error("the de-duplication table is full ({0} receipts)")]
    Receipts(usize),
    /// The receipts charged to one peer at their bound.
    #[error("peer {peer} already has {limit} receipts in the de-duplication table")]
    PeerReceipts {
        /// The peer.
        peer: String,
        /// Its bound.
        limit: usize,
    },
}

/// The in-memory seen-set: at most `capacity` envelope keys and as many
/// receipt keys, a quarter of those per peer.
#[derive(Clone, Debug)]
pub struct SeenSet {
    capacity: usize,
    slots: BTreeMap<SeenKey, Slot>,
    by_expiry: BTreeSet<(i64, SeenKey)>,
    receipts: usize,
    receipts_by_peer: BTreeMap<String, usize>,
}

impl SeenSet {
    /// An empty set holding at most `capacity` keys of each kind.
    pub fn new(capacity: usize) -> Self {
        SeenSet {
            capacity,
            slots: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            receipts: 0,
            receipts_by_peer: BTreeMap::new(),
        }
    }

    /// Receipt keys one peer may hold.
    pub fn receipts_per_peer(&self) -> usize {
        (self.capacity / 4).max(1)
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

    /// True if inserting envelope `key` would need room the set does not have.
    pub fn would_overflow(&self, key: &SeenKey) -> bool {
        self.room_for(key, None).is_err()
    }

    /// Whether a new `key` (charged to `peer`) fits.
    fn room_for(&self, key: &SeenKey, peer: Option<&str>) -> Result<(), SeenFull> {
        if self.slots.contains_key(key) {
            return Ok(());
        }
        match key {
            SeenKey::Message { .. } if self.slots.len() - self.receipts >= self.capacity => {
                Err(SeenFull::Envelopes(self.capacity))
            }
            SeenKey::Receipt { .. } if self.receipts >= self.capacity => {
                Err(SeenFull::Receipts(self.capacity))
            }
            SeenKey::Receipt { .. }
                if peer.is_some_and(|p| {
                    self.receipts_by_peer.get(p).is_some_and(|&n| n >= self.receipts_per_peer())
                }) =>
            {
                Err(SeenFull::PeerReceipts {
                    peer: peer.unwrap_or_default().to_owned(),
                    limit: self.receipts_per_peer(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Records `recipients` of `key` as handled (merging with what is there)
    /// and returns the entry to persist. The later of the two expiries wins.
    pub fn insert(
        &mut self,
        key: SeenKey,
        recipients: impl IntoIterator<Item = Address>,
        expires_at_ms: i64,
    ) -> Result<SeenEntry, SeenFull> {
        self.insert_charged(key, recipients, expires_at_ms, None)
    }

    /// Records a receipt delivered by `peer` (None: from this relay's own
    /// clients), charged to it.
    pub fn insert_receipt(
        &mut self,
        id: [u8; 32],
        expires_at_ms: i64,
        peer: Option<&str>,
    ) -> Result<SeenEntry, SeenFull> {
        self.insert_charged(SeenKey::Receipt { id }, [], expires_at_ms, peer)
    }

    fn insert_charged(
        &mut self,
        key: SeenKey,
        recipients: impl IntoIterator<Item = Address>,
        expires_at_ms: i64,
        peer: Option<&str>,
    ) -> Result<SeenEntry, SeenFull> {
        self.room_for(&key, peer)?;
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
                let charged_to = match key {
                    SeenKey::Receipt { .. } => {
                        self.receipts += 1;
                        if let Some(p) = peer {
                            *self.receipts_by_peer.entry(p.to_owned()).or_default() += 1;
                        }
                        peer.map(str::to_owned)
                    }
                    SeenKey::Message { .. } => None,
                };
                self.by_expiry.insert((expires_at_ms, key.clone()));
                self.slots.entry(key.clone()).or_insert(Slot {
                    expires_at_ms,
                    recipients: BTreeSet::new(),
                    charged_to,
                })
            }
        };
        slot.recipients.extend(recipients);
        Ok(SeenEntry {
            key,
            expires_at_ms: slot.expires_at_ms,
            recipients: slot.recipients.iter().cloned().collect(),
            charged_to: slot.charged_to.clone(),
        })
    }

    /// Forgets `key`'s slot and what it was charged to.
    fn remove(&mut self, key: &SeenKey) {
        let Some(slot) = self.slots.remove(key) else { return };
        if let SeenKey::Receipt { .. } = key {
            self.receipts -= 1;
            if let Some(p) = slot.charged_to
                && let Some(n) = self.receipts_by_peer.get_mut(&p)
            {
                *n -= 1;
                if *n == 0 {
                    self.receipts_by_peer.remove(&p);
                }
            }
        }
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
                self.remove(&key);
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
            charged_to: s.charged_to.clone(),
        })
    }

    /// Loads entries listed by the store (merging duplicates). Restoring
    /// ignores the capacity: what is on disk was admitted before.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = SeenEntry>) {
        let cap = self.capacity;
        self.capacity = usize::MAX;
        for e in entries {
            let _ = self.insert_charged(e.key, e.recipients, e.expires_at_ms, e.charged_to.as_deref());
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
    fn a_peer_flooding_receipts_blocks_neither_envelopes_nor_other_peers() {
        let mut s = SeenSet::new(8);
        let rid = |n: u8| [n; 32];
        // One peer may hold a quarter of the receipts' room.
        for n in 0..2 {
            s.insert_receipt(rid(n), 100, Some("relay-rogue")).unwrap();
        }
        let e = s.insert_receipt(rid(2), 100, Some("relay-rogue")).unwrap_err();
        assert_eq!(e, SeenFull::PeerReceipts { peer: "relay-rogue".into(), limit: 2 });
        assert!(e.to_string().contains("relay-rogue already has 2 receipts"), "{e}");
        assert!(s.insert_receipt(rid(0), 100, Some("relay-rogue")).is_ok(), "a known receipt needs no room");
        // Other peers and local clients still fit, up to the receipts' room.
        for n in 10..16 {
            let peer = ["relay-gfp", "relay-arinsa", "relay-rrag"][(n % 3) as usize];
            s.insert_receipt(rid(n), 100, if n == 15 { None } else { Some(peer) }).unwrap();
        }
        assert_eq!(s.insert_receipt(rid(20), 100, None), Err(SeenFull::Receipts(8)));
        // Envelopes have their own room.
        for n in 0..8 {
            s.insert(key(n), [a("x@arinsa")], 100).unwrap();
        }
        assert_eq!(s.insert(key(9), [], 100), Err(SeenFull::Envelopes(8)));
        // Charges survive a restart and are released at expiry.
        let mut t = SeenSet::new(8);
        t.restore(s.entries().collect::<Vec<_>>());
        assert!(t.insert_receipt(rid(3), 100, Some("relay-rogue")).is_err());
        t.expire(100);
        assert!(t.is_empty());
        t.insert_receipt(rid(3), 200, Some("relay-rogue")).unwrap();
        t.insert_receipt(rid(4), 200, Some("relay-rogue")).unwrap();
    }

    #[test]
    fn bounded_and_restorable() {
        let mut s = SeenSet::new(2);
        s.insert(key(1), [a("x@arinsa")], 10).unwrap();
        s.insert(SeenKey::Receipt { id: [9; 32] }, [], 20).unwrap();
        s.insert(key(2), [], 30).unwrap();
        assert_eq!(s.insert(key(3), [], 30), Err(SeenFull::Envelopes(2)));
        s.insert(key(1), [a("z@arinsa")], 10).unwrap();
        let listed: Vec<SeenEntry> = s.entries().collect();
        let mut t = SeenSet::new(1);
        t.restore(listed.clone());
        assert_eq!(t.entries().collect::<Vec<_>>(), listed);
        assert_eq!(t.expire(10), vec![key(1)]);
        assert_ne!(key(1).to_bytes(), SeenKey::Receipt { id: [1; 32] }.to_bytes());
    }
}
