//! One peer's outbox: the ordering, in-flight and retry STATE of the durable
//! queue of envelopes and receipts waiting for that peer. The store keeps
//! the items' bytes (keyed by peer and [`Outbox::push`]'s sequence number);
//! this type decides what to send next, when to dial, and what expired.
//!
//! # Order (the exact rule)
//! Items are numbered in arrival order. Small envelopes are PIPELINED (they
//! go on the peer's one transfer stream, whose number is
//! [`Transmit::stream`], and the receiver handles that stream in order);
//! large ones and receipts are SOLO (a stream each, see
//! [`OutboxConfig::pipeline_max_bytes`]). What leaves first:
//! 1. order is kept per (sender, recipient): an item is *ready* only when no
//!    earlier pending item has the same sender and shares a recipient with
//!    it (`deliver_to` of the copy), and no item in flight on one of its
//!    lanes could be overtaken by it: a solo item in flight blocks its
//!    lanes, a solo item waits until its lanes are idle, and a pipelined item
//!    may follow in-flight items of its lanes only on the same (current)
//!    stream. So an item is handled by the peer only after every earlier
//!    item of its lanes was: stored ahead of it on the same stream, or acked,
//!    expired or purged;
//! 2. urgent items overtake normal ones: the earliest ready urgent item goes
//!    first. If every urgent item is held back by rule 1, the earliest urgent
//!    item whose lanes are not busy in flight pulls the items ahead of it in
//!    its (sender, recipient) lanes forward (priority inheritance), so those
//!    go next;
//! 3. otherwise FIFO: the earliest ready pending item;
//! 4. while an urgent item is in flight, nothing normal starts, except behind
//!    it on the same pipelined stream: on any other stream a normal item
//!    could reach the peer's store first.
//!
//! So an urgent message overtakes every normal message of other senders, and
//! of the same sender to other recipients, but never the same sender's
//! earlier messages to the same recipient: DESIGN.md's per (sender,
//! recipient) order holds at every hop, and urgency reorders everything else.
//! Receipts have no order constraint.
//!
//! # In flight, acks, retries
//! At most `window` items are in flight (transmitted, not yet acked). The
//! driver sends pipelined items on one QUIC stream in the order
//! [`Outbox::poll_transmit`] yields them, and solo items each on a stream of
//! its own, concurrently. The receiver persists a stream's items in order
//! (its store writer commits what is waiting together, in one fsync) and,
//! after answering RETRY on a stream, answers RETRY to everything after it
//! on that stream, so nothing overtakes the refused item. [`Transmit::stream`]
//! changes after a RETRY or a lost connection: the driver then finishes that
//! stream and opens a new one, and a lane with items still in flight on the
//! old stream waits for their answers.
//! On [`Outbox::handle_ack`] (STORED, DUPLICATE or REFUSED) the item is
//! removed; the driver deletes it from the store. On
//! [`Outbox::handle_retry`] (RETRY, or an outcome the driver does not know)
//! that item goes back to the head of its lanes and sending holds for a
//! backoff step (one step per hold: the other RETRYs of the same burst do
//! not lengthen it). On [`Outbox::handle_disconnected`] everything in
//! flight goes back to the queue. An item sent again may reach the peer
//! twice; the peer de-duplicates on (sender, msg id).
//!
//! # Link and backoff
//! The outbox also says when to dial ([`Outbox::poll_dial`]): at start, and
//! after a failed dial or a lost connection with exponential backoff from 1 s
//! doubling to 60 s, with jitter ([`super::backoff`]). The backoff resets at
//! once when the peer connects to us or sends anything
//! ([`Outbox::handle_connected`], [`Outbox::handle_peer_activity`], acks), so
//! a peer back from a long outage is served within one round trip, not
//! after the next long timer. The link is kept up even with an empty queue.
//!
//! # Expiry
//! A queued item whose `expires_at_ms` has passed is never sent; it is
//! yielded by [`Outbox::poll_expired`] for the caller to delete, audit and
//! turn into EXPIRED receipts. In-flight items are left to the receiver.
//!
//! Each peer has its own `Outbox`: a slow or dead peer holds only its own
//! queue, never another peer's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use focal_proto::Address;
use serde::{Deserialize, Serialize};

use super::backoff::{Backoff, BackoffConfig, derive_seed};

/// What an outbox item is, as the peer's ack names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ItemId {
    /// An envelope copy, acked by `TransferAck { msg_id, sender }`.
    Envelope {
        /// Original sender.
        sender: Address,
        /// Message id.
        msg_id: [u8; 16],
    },
    /// A receipt, acked by `ReceiptAck { receipt_id }`.
    Receipt {
        /// SHA-256 of the receipt's signed body.
        id: [u8; 32],
    },
}

/// An item's metadata as the store persists it next to the item's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// What it is.
    pub id: ItemId,
    /// The recipients this copy carries (its `deliver_to`); empty for receipts.
    pub recipients: Vec<Address>,
    /// Urgent items overtake normal ones (see the module docs for the rule).
    pub urgent: bool,
    /// Never sent after this (unix ms); yielded by `poll_expired` instead.
    pub expires_at_ms: i64,
    /// When it was queued (unix ms), for status and the admin queue listing.
    pub queued_at_ms: i64,
    /// Payload bytes (0 for receipts): items up to
    /// [`OutboxConfig::pipeline_max_bytes`] share the pipelined stream.
    #[serde(default)]
    pub size: u64,
}

/// Outbox parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Most items in flight at once (default 128). A pipelined item costs
    /// a pending answer on the peer's stream, a solo one a stream of its own
    /// (the driver allows fewer of those); higher hides more round-trip time
    /// and lets the peer commit more items per fsync.
    pub window: usize,
    /// Most items queued for this peer; beyond it `push` fails (the caller
    /// answers RETRY to the upstream peer or RESOURCE_EXHAUSTED to a client).
    pub capacity: usize,
    /// Redial and RETRY backoff.
    pub backoff: BackoffConfig,
    /// Envelopes of at most this many payload bytes are PIPELINED: they go
    /// on the peer's one transfer stream in the order yielded, and several
    /// of one (sender, recipient) lane may be in flight on it at once.
    /// Larger envelopes and receipts are SOLO (a stream each, never beside
    /// another item of their lanes). 0 makes every item solo.
    pub pipeline_max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            window: 128,
            capacity: 100_000,
            backoff: BackoffConfig::default(),
            pipeline_max_bytes: 256 * 1024,
        }
    }
}

/// The next item to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The pipelined stream number: pipelined items with the same number go
    /// on one QUIC stream in the order yielded; when the number changes
    /// (after a RETRY or a lost connection), finish that stream and open a
    /// new one. Never run two streams of one number side by side. (Solo
    /// items carry the current number too, and ignore it.)
    pub stream: u64,
    /// Its sequence number (the store key of its bytes).
    pub seq: u64,
    /// What it is.
    pub id: ItemId,
    /// 1 on the first transmission, then 2, 3...
    pub attempt: u32,
    /// True: send it on stream `stream` after the items yielded before it
    /// with that number. False: a solo transfer on a stream of its own.
    pub pipelined: bool,
}

/// An item removed from the outbox (acked, expired or purged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// Its sequence number: delete its bytes from the store.
    pub seq: u64,
    /// Its metadata.
    pub item: OutboxItem,
}

/// An item [`Outbox::purge`] removed, and the transfer the driver must
/// stop if it was in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    /// The item: delete its bytes from the store.
    pub removed: Removed,
    /// Set when it was in flight: the transfer to cancel (also queued for
    /// [`Outbox::poll_cancel`]).
    pub cancel: Option<Cancel>,
}

/// A transfer the driver must stop because its item was purged while in
/// flight. The peer stores a copy only if it had received the whole
/// envelope before the stream was reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// Reset the solo transfer of item `seq`.
    Solo {
        /// The purged item.
        seq: u64,
    },
    /// Reset pipelined stream `stream`. Its other items in flight are back
    /// in the queue (each at the head of its lanes) and go again on a new
    /// stream; the peer de-duplicates any it had stored.
    Stream {
        /// The stream number ([`Transmit::stream`]).
        stream: u64,
    },
}

/// The link to the peer, as the outbox sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No connection; dial at `next_attempt_at_ms`.
    Down {
        /// When `poll_dial` says to dial (unix ms).
        next_attempt_at_ms: i64,
    },
    /// `poll_dial` said to dial; waiting for `handle_connected` or
    /// `handle_dial_failed`.
    Dialing,
    /// Connected (and the hello exchanged).
    Up,
}

/// The outbox is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the outbox for this peer is full ({0} items)")]
pub struct OutboxFull(pub usize);

/// A summary for the admin `Status` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxStatus {
    /// `connected`, `connecting`, `backoff` or `paused`.
    pub state: &'static str,
    /// Items queued or in flight.
    pub queue_depth: usize,
    /// Items in flight.
    pub in_flight: usize,
    /// Oldest item's queue time.
    pub oldest_queued_at_ms: Option<i64>,
    /// Failed dials and lost connections since start.
    pub retries: u64,
    /// Next dial time when down.
    pub next_attempt_at_ms: Option<i64>,
}

#[derive(Clone, Debug)]
struct Entry {
    item: OutboxItem,
    attempts: u32,
}

/// One lane's items in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Busy {
    count: u32,
    stream: Option<u64>,
}

/// One peer's outbox state. See the module docs for the contract.
#[derive(Clone, Debug)]
pub struct Outbox {
    peer: String,
    config: OutboxConfig,
    next_seq: u64,
    items: BTreeMap<u64, Entry>,
    by_id: BTreeMap<ItemId, BTreeSet<u64>>,
    pending: BTreeSet<u64>,
    urgent: BTreeSet<u64>,
    lanes: BTreeMap<(Address, Address), BTreeSet<u64>>,
    /// Pending items without lanes (receipts).
    free: BTreeSet<u64>,
    by_expiry: BTreeSet<(i64, u64)>,
    expired: VecDeque<u64>,
    /// Items in flight, each with its pipelined stream (None: solo).
    in_flight: Vec<(u64, Option<u64>)>,
    /// Transfers to cancel (items purged in flight), for `poll_cancel`.
    cancels: VecDeque<Cancel>,
    /// Lanes of the items in flight: how many, and the pipelined stream they
    /// are all on (None: one solo item). See rule 1.
    busy: BTreeMap<(Address, Address), Busy>,
    link: LinkState,
    hold_until: Option<i64>,
    paused: bool,
    dial_backoff: Backoff,
    retry_backoff: Backoff,
    retries: u64,
    stream: u64,
    /// When set, only items with a lower sequence number may be sent: the
    /// ones whose store batch is fsynced (see [`Outbox::hold_until_durable`]).
    durable_below: Option<u64>,
}

impl Outbox {
    /// An empty outbox for `peer`; the link is down and due for dialing at
    /// `now_ms`. `seed` drives the backoff jitter.
    pub fn new(peer: &str, config: OutboxConfig, seed: u64, now_ms: i64) -> Self {
        Outbox {
            peer: peer.to_owned(),
            config,
            next_seq: 1,
            items: BTreeMap::new(),
            by_id: BTreeMap::new(),
            pending: BTreeSet::new(),
            urgent: BTreeSet::new(),
            lanes: BTreeMap::new(),
            free: BTreeSet::new(),
            by_expiry: BTreeSet::new(),
            expired: VecDeque::new(),
            in_flight: Vec::new(),
            cancels: VecDeque::new(),
            busy: BTreeMap::new(),
            link: LinkState::Down { next_attempt_at_ms: now_ms },
            hold_until: None,
            paused: false,
            dial_backoff: Backoff::new(config.backoff, derive_seed(seed, "dial")),
            retry_backoff: Backoff::new(config.backoff, derive_seed(seed, "retry")),
            retries: 0,
            stream: 1,
            durable_below: None,
        }
    }

    /// From now on, items pushed are not sent before
    /// [`Outbox::durable_up_to`] says their batch is durable; items present
    /// now (restored from the store) are. Without it every item may go at
    /// once (the model's tests and simulations persist synchronously).
    pub fn hold_until_durable(&mut self) {
        self.durable_below = Some(self.next_seq);
    }

    /// The sequence number the next push gets: every item below it is in a
    /// batch staged so far.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Items below `next_seq` (a value of [`Outbox::next_seq`] read when a
    /// batch was staged) are durable now.
    pub fn durable_up_to(&mut self, next_seq: u64) {
        if let Some(d) = &mut self.durable_below {
            *d = (*d).max(next_seq);
        }
    }

    /// The peer's name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Items queued or in flight.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Items in flight on pipelined stream `stream`.
    pub fn in_flight_on(&self, stream: u64) -> usize {
        self.in_flight.iter().filter(|(_, s)| *s == Some(stream)).count()
    }

    /// Most items in flight at once (the configured window).
    pub fn window(&self) -> usize {
        self.config.window
    }

    /// The link state.
    pub fn link(&self) -> LinkState {
        self.link
    }

    /// True if `n` more items fit.
    pub fn has_room(&self, n: usize) -> bool {
        self.items.len() + n <= self.config.capacity
    }

    /// An item's metadata.
    pub fn get(&self, seq: u64) -> Option<&OutboxItem> {
        self.items.get(&seq).map(|e| &e.item)
    }

    /// All items with their sequence numbers and attempt counts, in
    /// sequence order (admin queue listing).
    pub fn items(&self) -> impl Iterator<Item = (u64, &OutboxItem, u32)> {
        self.items.iter().map(|(s, e)| (*s, &e.item, e.attempts))
    }

    /// Queues an item; returns its sequence number (the store key).
    pub fn push(&mut self, item: OutboxItem) -> Result<u64, OutboxFull> {
        if !self.has_room(1) {
            return Err(OutboxFull(self.config.capacity));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(seq, item);
        Ok(seq)
    }

    /// Loads items listed by the store at start (any order). Later pushes
    /// get higher sequence numbers. Restoring ignores the capacity.
    pub fn restore(&mut self, items: impl IntoIterator<Item = (u64, OutboxItem)>) {
        for (seq, item) in items {
            if self.items.contains_key(&seq) {
                continue;
            }
            self.next_seq = self.next_seq.max(seq + 1);
            self.insert(seq, item);
        }
        // What the store lists is durable.
        self.durable_up_to(self.next_seq);
    }

    fn insert(&mut self, seq: u64, item: OutboxItem) {
        self.by_id.entry(item.id.clone()).or_default().insert(seq);
        self.items.insert(seq, Entry { item, attempts: 0 });
        self.add_pending(seq);
    }

    fn lane_keys(item: &OutboxItem) -> impl Iterator<Item = (Address, Address)> + '_ {
        let sender = match &item.id {
            ItemId::Envelope { sender, .. } => Some(sender),
            ItemId::Receipt { .. } => None,
        };
        sender.into_iter().flat_map(move |s| item.recipients.iter().map(move |r| (s.clone(), r.clone())))
    }

    fn add_pending(&mut self, seq: u64) {
        let Some(e) = self.items.get(&seq) else { return };
        self.pending.insert(seq);
        if e.item.urgent {
            self.urgent.insert(seq);
        }
        self.by_expiry.insert((e.item.expires_at_ms, seq));
        let mut laned = false;
        for k in Self::lane_keys(&e.item) {
            self.lanes.entry(k).or_default().insert(seq);
            laned = true;
        }
        if !laned {
            self.free.insert(seq);
        }
    }

    fn remove_pending(&mut self, seq: u64) {
        let Some(e) = self.items.get(&seq) else { return };
        self.pending.remove(&seq);
        self.urgent.remove(&seq);
        self.free.remove(&seq);
        self.by_expiry.remove(&(e.item.expires_at_ms, seq));
        for k in Self::lane_keys(&e.item) {
            if let Some(lane) = self.lanes.get_mut(&k) {
                lane.remove(&seq);
                if lane.is_empty() {
                    self.lanes.remove(&k);
                }
            }
        }
    }

    /// The stream an item would go on now: the current pipelined one, or
    /// `None` when it is solo.
    fn stream_for(&self, seq: u64) -> Option<u64> {
        let pipelined = self.config.pipeline_max_bytes > 0
            && self.items.get(&seq).is_some_and(|e| {
                matches!(e.item.id, ItemId::Envelope { .. }) && e.item.size <= self.config.pipeline_max_bytes
            });
        pipelined.then_some(self.stream)
    }

    /// Sequence numbers of the items in flight.
    fn in_flight_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.in_flight.iter().map(|(s, _)| *s)
    }

    fn add_in_flight(&mut self, seq: u64) -> Option<u64> {
        let stream = self.stream_for(seq);
        let Some(e) = self.items.get(&seq) else { return stream };
        for k in Self::lane_keys(&e.item) {
            let b = self.busy.entry(k).or_insert(Busy { count: 0, stream });
            debug_assert!(b.stream == stream && stream.is_some() || b.count == 0, "rule 1 broken");
            b.count += 1;
        }
        self.in_flight.push((seq, stream));
        stream
    }

    /// Removes `seq` from the in-flight list; true if it was there.
    fn remove_in_flight(&mut self, seq: u64) -> bool {
        let Some(pos) = self.in_flight.iter().position(|(s, _)| *s == seq) else { return false };
        self.in_flight.remove(pos);
        if let Some(e) = self.items.get(&seq) {
            for k in Self::lane_keys(&e.item) {
                if let Some(b) = self.busy.get_mut(&k) {
                    b.count -= 1;
                    if b.count == 0 {
                        self.busy.remove(&k);
                    }
                }
            }
        }
        true
    }

    fn forget(&mut self, seq: u64) -> Option<Removed> {
        self.remove_pending(seq);
        self.remove_in_flight(seq);
        self.expired.retain(|s| *s != seq);
        let e = self.items.remove(&seq)?;
        if let Some(set) = self.by_id.get_mut(&e.item.id) {
            set.remove(&seq);
            if set.is_empty() {
                self.by_id.remove(&e.item.id);
            }
        }
        Some(Removed { seq, item: e.item })
    }

    /// The lane heads an item waits for: the earliest pending item in each
    /// of its lanes (itself when it is first).
    fn earliest_blocker(&self, seq: u64) -> u64 {
        let Some(e) = self.items.get(&seq) else { return seq };
        Self::lane_keys(&e.item)
            .filter_map(|k| self.lanes.get(&k).and_then(|l| l.first().copied()))
            .fold(seq, u64::min)
    }

    /// True if one of the item's lanes has an item in flight that it may
    /// not follow: a solo one, one on an older stream, or any when it is
    /// solo itself. (Pipelined items of the current stream may be followed
    /// by more of their lanes: the receiver handles the stream in order.)
    fn lane_busy(&self, seq: u64) -> bool {
        let Some(e) = self.items.get(&seq) else { return false };
        if self.busy.is_empty() {
            return false;
        }
        let follows = self.stream_for(seq);
        Self::lane_keys(&e.item)
            .any(|k| self.busy.get(&k).is_some_and(|b| follows.is_none() || b.stream != follows))
    }

    /// Rule 1: first pending in each of its lanes, and no lane in flight.
    fn ready(&self, seq: u64) -> bool {
        self.earliest_blocker(seq) == seq && !self.lane_busy(seq)
    }

    fn is_urgent(&self, seq: u64) -> bool {
        self.items.get(&seq).is_some_and(|e| e.item.urgent)
    }

    fn select(&self) -> Option<u64> {
        if let Some(u) = self.urgent.iter().copied().find(|&u| self.ready(u)) {
            return Some(u);
        }
        for &u in &self.urgent {
            // Priority inheritance: walk to the pending lane head ahead of it.
            let mut cur = u;
            loop {
                let b = self.earliest_blocker(cur);
                if b == cur {
                    break;
                }
                cur = b;
            }
            if !self.lane_busy(cur) {
                return Some(cur);
            }
        }
        // FIFO. The earliest pending item heads all its lanes; it is ready
        // unless a lane is in flight. Else the earliest ready lane head (an
        // item without lanes, i.e. a receipt, is always ready).
        let first = *self.pending.first()?;
        if !self.lane_busy(first) {
            return Some(first);
        }
        let free = self.free.first().copied();
        self.lanes
            .values()
            .filter_map(|lane| lane.first().copied())
            .filter(|&s| self.ready(s))
            .chain(free)
            .min()
    }

    fn collect_expired(&mut self, now_ms: i64) {
        while let Some(&(at, seq)) = self.by_expiry.first() {
            if at > now_ms {
                break;
            }
            self.remove_pending(seq);
            self.expired.push_back(seq);
        }
    }

    /// Items in flight on the streams `on` picks (`None`: solo) go back to
    /// the queue, each at the head of its lanes.
    fn return_in_flight(&mut self, on: impl Fn(Option<u64>) -> bool) {
        for (seq, stream) in self.in_flight.clone() {
            if on(stream) {
                self.remove_in_flight(seq);
                self.add_pending(seq);
            }
        }
    }

    /// The next item to send, if the link is up, not held or paused, and the
    /// window has room. Expired items are set aside for `poll_expired`.
    pub fn poll_transmit(&mut self, now_ms: i64) -> Option<Transmit> {
        self.collect_expired(now_ms);
        if let Some(h) = self.hold_until {
            if now_ms < h {
                return None;
            }
            self.hold_until = None;
        }
        if self.link != LinkState::Up || self.paused || self.in_flight.len() >= self.config.window {
            return None;
        }
        let seq = self.select()?;
        if self.durable_below.is_some_and(|d| seq >= d) {
            // Its batch is not fsynced yet: a crash now would leave the peer
            // holding a copy this relay has no record of. The writer wakes
            // the sender after the fsync.
            return None;
        }
        if !self.is_urgent(seq) {
            // Rule 4: nothing normal starts while an urgent item is in flight,
            // unless both are on the current pipelined stream (the urgent
            // one is ahead of it there).
            let follows = self.stream_for(seq);
            if self.in_flight.iter().any(|&(f, st)| self.is_urgent(f) && (follows.is_none() || st != follows))
            {
                return None;
            }
        }
        self.remove_pending(seq);
        let stream = self.add_in_flight(seq);
        let e = self.items.get_mut(&seq)?;
        e.attempts += 1;
        Some(Transmit {
            stream: self.stream,
            seq,
            id: e.item.id.clone(),
            attempt: e.attempts,
            pipelined: stream.is_some(),
        })
    }

    /// The next queued item that expired undelivered; the caller deletes it,
    /// audits EXPIRED and sends EXPIRED receipts for envelopes.
    pub fn poll_expired(&mut self, now_ms: i64) -> Option<Removed> {
        self.collect_expired(now_ms);
        let seq = self.expired.pop_front()?;
        self.forget(seq)
    }

    /// True when the driver should dial the peer now (the state becomes
    /// `Dialing` until `handle_connected` or `handle_dial_failed`).
    pub fn poll_dial(&mut self, now_ms: i64) -> bool {
        match self.link {
            LinkState::Down { next_attempt_at_ms } if now_ms >= next_attempt_at_ms => {
                self.link = LinkState::Dialing;
                true
            }
            _ => false,
        }
    }

    /// When to poll next (unix ms; a past time means now): next dial, end of
    /// a RETRY hold, or the next expiry.
    pub fn poll_timeout(&self) -> Option<i64> {
        if !self.expired.is_empty() {
            return Some(i64::MIN);
        }
        let mut t = self.by_expiry.first().map(|(at, _)| *at);
        let mut consider = |x: i64| t = Some(t.map_or(x, |y| y.min(x)));
        if let LinkState::Down { next_attempt_at_ms } = self.link {
            consider(next_attempt_at_ms);
        }
        if let Some(h) = self.hold_until
            && self.link == LinkState::Up
            && !self.pending.is_empty()
        {
            consider(h);
        }
        t
    }

    /// The link is up (our dial succeeded or the peer connected to us).
    /// Resets the backoff. Idempotent.
    pub fn handle_connected(&mut self, _now_ms: i64) {
        self.link = LinkState::Up;
        self.dial_backoff.reset();
        self.retry_backoff.reset();
        self.hold_until = None;
    }

    /// A dial failed; the next attempt waits one backoff step. Ignored when
    /// the link is up (a concurrent incoming connection won).
    pub fn handle_dial_failed(&mut self, now_ms: i64) {
        if self.link != LinkState::Up {
            self.retries += 1;
            self.link = LinkState::Down { next_attempt_at_ms: now_ms + self.dial_backoff.next_delay_ms() };
        }
    }

    /// The connection is gone: in-flight items return to the queue (each at
    /// the head of its lanes), and redialing waits one backoff step.
    pub fn handle_disconnected(&mut self, now_ms: i64) {
        self.return_in_flight(|_| true);
        self.stream += 1;
        self.hold_until = None;
        if matches!(self.link, LinkState::Up | LinkState::Dialing) {
            self.retries += 1;
            self.link = LinkState::Down { next_attempt_at_ms: now_ms + self.dial_backoff.next_delay_ms() };
        }
    }

    /// The peer sent something (or knocked): reset the backoff; when down,
    /// dial at once.
    pub fn handle_peer_activity(&mut self, now_ms: i64) {
        self.dial_backoff.reset();
        if let LinkState::Down { .. } = self.link {
            self.link = LinkState::Down { next_attempt_at_ms: now_ms };
        }
    }

    /// The peer acknowledged `id` (STORED, DUPLICATE or REFUSED): the
    /// earliest in-flight item with that id (else the earliest queued one)
    /// is removed and returned for the store to delete. `None`: no such item
    /// (a late or repeated ack; ignore it).
    pub fn handle_ack(&mut self, id: &ItemId, now_ms: i64) -> Option<Removed> {
        self.handle_peer_activity(now_ms);
        self.retry_backoff.reset();
        let seqs = self.by_id.get(id)?;
        let seq = self.in_flight_seqs().find(|s| seqs.contains(s)).or_else(|| seqs.first().copied())?;
        self.forget(seq)
    }

    /// The peer answered RETRY for `id` (or the outcome is unknown): that
    /// item goes back to the queue, at the head of its lanes, and sending
    /// holds for one backoff step unless a hold is already running. The
    /// other items in flight are independent (no shared lane) and wait for
    /// their own answers. Returns false if `id` was not in flight.
    pub fn handle_retry(&mut self, id: &ItemId, now_ms: i64) -> bool {
        self.handle_peer_activity(now_ms);
        let Some(seqs) = self.by_id.get(id) else { return false };
        let Some(seq) = self.in_flight_seqs().find(|s| seqs.contains(s)) else {
            return false;
        };
        self.remove_in_flight(seq);
        self.add_pending(seq);
        self.stream += 1;
        if self.hold_until.is_none_or(|h| now_ms >= h) {
            self.hold_until = Some(now_ms + self.retry_backoff.next_delay_ms());
        }
        true
    }

    /// True if item `seq` is in flight on its `attempt`-th transmission: a
    /// driver with concurrent transfers checks this before reporting an
    /// unknown outcome, so a stale failure (from a connection already
    /// reported lost) does not return a newer transmission to the queue.
    pub fn is_in_flight(&self, seq: u64, attempt: u32) -> bool {
        self.is_in_flight_any(seq) && self.items.get(&seq).is_some_and(|e| e.attempts == attempt)
    }

    /// True if item `seq` is in flight (any attempt).
    pub fn is_in_flight_any(&self, seq: u64) -> bool {
        self.in_flight_seqs().any(|s| s == seq)
    }

    /// Admin: stop or resume sending (the link stays up).
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Admin: retry now (reset backoff, dial at once if down, end a hold).
    pub fn retry_now(&mut self, now_ms: i64) {
        self.handle_peer_activity(now_ms);
        self.retry_backoff.reset();
        self.hold_until = None;
    }

    /// Admin or retention: drop an item, queued or in flight. An item in
    /// flight is not left to reach the peer: its transfer is to be cancelled
    /// ([`Purged::cancel`], also yielded by [`Outbox::poll_cancel`]). A
    /// pipelined one shares its stream with the items written before and
    /// after it, so those in flight on it go back to the queue and the
    /// outbox moves to a new stream number.
    pub fn purge(&mut self, seq: u64) -> Option<Purged> {
        let flying = self.in_flight.iter().find(|(s, _)| *s == seq).map(|&(_, stream)| stream);
        let removed = self.forget(seq)?;
        let Some(flying) = flying else { return Some(Purged { removed, cancel: None }) };
        let cancel = match flying {
            None => Cancel::Solo { seq },
            Some(stream) => {
                self.return_in_flight(|on| on == Some(stream));
                if self.stream == stream {
                    self.stream += 1;
                }
                Cancel::Stream { stream }
            }
        };
        self.cancels.push_back(cancel);
        Some(Purged { removed, cancel: Some(cancel) })
    }

    /// Drops an item whose bytes are gone from the store; its transfer has
    /// already ended.
    pub fn drop_lost(&mut self, seq: u64) -> Option<Removed> {
        self.forget(seq)
    }

    /// The next transfer to cancel (an item purged in flight).
    pub fn poll_cancel(&mut self) -> Option<Cancel> {
        self.cancels.pop_front()
    }

    /// Admin status.
    pub fn status(&self) -> OutboxStatus {
        let (state, next) = match self.link {
            _ if self.paused => ("paused", None),
            LinkState::Up => ("connected", None),
            LinkState::Dialing => ("connecting", None),
            LinkState::Down { next_attempt_at_ms } => ("backoff", Some(next_attempt_at_ms)),
        };
        OutboxStatus {
            state,
            queue_depth: self.items.len(),
            in_flight: self.in_flight.len(),
            oldest_queued_at_ms: self.items.values().map(|e| e.item.queued_at_ms).min(),
            retries: self.retries,
            next_attempt_at_ms: next,
        }
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
