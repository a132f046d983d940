//! [`RelayCore`]: routing table, policy, seen-set and one outbox per peer,
//! composed into the single object the relay's driver owns.
//!
//! # Contract with the driver (in call order)
//! Startup:
//! 1. `RelayCore::from_config(&config, seed, now_ms)` (seed: anything
//!    unpredictable, e.g. from the OS RNG; it only spreads redials).
//! 2. `restore_seen(entries)` with every persisted [`SeenEntry`], and
//!    `restore_outbox(peer, items)` with every persisted `(seq,
//!    OutboxItem)` of each peer.
//!
//! An envelope arrives (a client's Send, or a peer's TransferStart +
//! payload, stored to a temporary key while it streams):
//! 1. Verify signature and certificate, and for a client that the context's
//!    sender is the caller's certificate identity (not here); build a
//!    [`RouteInput`] with [`RouteInput::from_pb`].
//! 2. `handle_envelope(now, &input, &origin)` -> [`Verdict`]:
//!    - `Handled(d)`: in ONE store batch: the seen entry `d.seen`; a mailbox
//!      copy for each of `d.local` (after checking the member exists: an
//!      unknown member becomes an UNKNOWN_RECIPIENT receipt); for each of
//!      `d.forwards` the copy under `(peer, seq)` with this relay's hop
//!      ([`RoutingTable::hop`]) appended and `deliver_to` set, plus its
//!      [`OutboxItem`] (`outbox(peer).get(seq)`); a REFUSED receipt for each
//!      of `d.refused` (signed, then `handle_receipt` with `Origin::Local`);
//!      the audit records. Flush, then answer ACCEPTED / `TransferAck` with
//!      [`Verdict::transfer_status`].
//!    - `Duplicate`: answer DUPLICATE (a client: the original acceptance).
//!    - `Refused(r)`: a client gets an error status naming `r`; a peer gets
//!      REFUSED and, for each recipient of the copy, a REFUSED receipt.
//!    - `Retry(r)`: store nothing; a peer gets RETRY, a client
//!      RESOURCE_EXHAUSTED. After a RETRY to a peer, every later envelope
//!      of that peer on the same transfer stream gets RETRY too
//!      (`handle_envelope_on`), until `handle_peer_stream(peer)`.
//!
//!    Answers go out only after the flush of the batch that holds the
//!    decision (a later flush covers earlier ones). A failed flush is fatal:
//!    stop the process; the restart restores what is on disk, and upstream
//!    retries fill any gap.
//!
//! A receipt arrives (a client's Ack, a relay-made refusal or expiry, or a
//! peer's ReceiptTransfer): `handle_receipt(now, &input, &origin)` ->
//! [`ReceiptVerdict`], persisted and answered the same way.
//!
//! Link events: `handle_hello(peer, networks)` after a verified hello, then
//! `outbox_mut(peer)`'s `handle_connected` / `handle_disconnected` /
//! `handle_dial_failed`, `handle_ack` / `handle_retry` for `TransferAck` and
//! `ReceiptAck` (delete the returned item from the store in the batch of its
//! FORWARDED audit record), `handle_peer_activity` for any other frame.
//! `handle_peer_stream(peer)` when the peer opens a new transfer stream or
//! its connection is lost (it ends the RETRY latch, see `handle_envelope`).
//!
//! After every input, and when the time from `poll_timeout` has come:
//! `poll_expired` until `None` (delete, audit EXPIRED, sign EXPIRED receipts
//! for envelope items and feed them to `handle_receipt`), `poll_dial` until
//! `None` (start a dial per name), and for each connected peer
//! `outbox_mut(peer).poll_transmit(now)` until `None` (stream the stored
//! item on the peer's transfer stream, in that order). Now and then (each
//! minute): `expire_seen(now)` and delete the returned keys.

use std::collections::BTreeMap;

use focal_proto::{Address, NetworkId, pb};

use super::backoff::derive_seed;
use super::broadcast::BroadcastPolicy;
use super::dedup::{SeenEntry, SeenKey, SeenSet};
use super::escalation::{EscalationPolicy, Escalations};
use super::outbox::{ItemId, Outbox, OutboxConfig, OutboxItem, Removed};
use super::policy::Policy;
use super::routing::{RouteInput, RoutingTable, route};
use super::{CoreError, Refusal};
use crate::config::RelayConfig;

/// Sizing of a relay core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreSettings {
    /// Outbox parameters (same for every peer).
    pub outbox: OutboxConfig,
    /// Most seen-set keys. Each costs roughly 150 bytes plus 50 per
    /// recipient, and lives until its message expires (up to
    /// `limits.max_lifetime_secs`); beyond it new envelopes get RETRY /
    /// RESOURCE_EXHAUSTED (STORE_FULL). 250 000 keys is about 50 MiB.
    pub seen_capacity: usize,
    /// How long receipts are kept for de-duplication and may wait in an
    /// outbox (ms).
    pub receipt_ttl_ms: i64,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            outbox: OutboxConfig::default(),
            seen_capacity: 250_000,
            receipt_ttl_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

/// Where an input came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client of this relay, or this relay itself (its own receipts).
    Local,
    /// The named peer relay.
    Peer(String),
}

/// A copy queued for a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The peer.
    pub peer: String,
    /// Its outbox sequence number (store key).
    pub seq: u64,
    /// The copy's `deliver_to`.
    pub deliver_to: Vec<Address>,
}

/// What handling an envelope changed; the driver persists all of it in one
/// batch before answering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disposition {
    /// Local recipients: one mailbox copy each.
    pub local: Vec<Address>,
    /// Copies queued for peers.
    pub forwards: Vec<Forward>,
    /// Recipients refused, with the reason for their non-delivery receipt.
    pub refused: Vec<(Address, Refusal)>,
    /// Recipients of this copy already handled earlier (skipped).
    pub duplicates: Vec<Address>,
    /// The seen-set entry to persist.
    pub seen: SeenEntry,
}

/// The outcome of [`RelayCore::handle_envelope`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Something new was decided; persist it.
    Handled(Disposition),
    /// Every recipient of this copy was handled before.
    Duplicate,
    /// The envelope as a whole is refused; nothing changed.
    Refused(Refusal),
    /// Temporarily refused (rate, full queue); nothing changed.
    Retry(Refusal),
}

impl Verdict {
    /// The `TransferAck` status to answer a peer with.
    pub fn transfer_status(&self) -> pb::TransferStatus {
        match self {
            Verdict::Handled(d) if d.local.is_empty() && d.forwards.is_empty() => pb::TransferStatus::Refused,
            Verdict::Handled(_) => pb::TransferStatus::Stored,
            Verdict::Duplicate => pb::TransferStatus::Duplicate,
            Verdict::Refused(_) => pb::TransferStatus::Refused,
            Verdict::Retry(_) => pb::TransferStatus::Retry,
        }
    }
}

/// A receipt travelling back to the original sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptInput {
    /// SHA-256 of the signed body (`ReceiptTransfer.receipt_id`).
    pub receipt_id: [u8; 32],
    /// `ReceiptBody.original_sender`: whose inbox it goes to.
    pub original_sender: Address,
    /// `ReceiptTransfer.hops` as received.
    pub hops: Vec<pb::Hop>,
    /// Queue it as urgent (e.g. the receipt of an urgent message).
    pub urgent: bool,
}

/// The outcome of [`RelayCore::handle_receipt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptVerdict {
    /// Put it in `inbox`'s receipts (the original sender is local).
    Local {
        /// The original sender.
        inbox: Address,
        /// Seen entry to persist.
        seen: SeenEntry,
    },
    /// Queued for `peer` under `seq` (store it with this relay's hop).
    Forward {
        /// Next hop.
        peer: String,
        /// Outbox sequence number.
        seq: u64,
        /// Seen entry to persist.
        seen: SeenEntry,
    },
    /// From a relay that is not a peer: refuse, record nothing.
    Refused(Refusal),
    /// No way back (loop, unknown network): audit and drop it.
    Undeliverable {
        /// Why.
        refusal: Refusal,
        /// Seen entry to persist.
        seen: SeenEntry,
    },
    /// Seen before: answer DUPLICATE.
    Duplicate,
    /// Temporarily refused (full queue): answer RETRY.
    Retry(Refusal),
}

impl ReceiptVerdict {
    /// The `ReceiptAck` status to answer a peer with.
    pub fn transfer_status(&self) -> pb::TransferStatus {
        match self {
            ReceiptVerdict::Local { .. } | ReceiptVerdict::Forward { .. } => pb::TransferStatus::Stored,
            ReceiptVerdict::Undeliverable { .. } | ReceiptVerdict::Refused(_) => pb::TransferStatus::Refused,
            ReceiptVerdict::Duplicate => pb::TransferStatus::Duplicate,
            ReceiptVerdict::Retry(_) => pb::TransferStatus::Retry,
        }
    }
}

/// An outbox item that expired undelivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// Whose outbox held it.
    pub peer: String,
    /// Its sequence number (delete from the store).
    pub seq: u64,
    /// Its metadata (for envelopes, `recipients` get EXPIRED receipts).
    pub item: OutboxItem,
}

fn store_full(what: impl std::fmt::Display) -> Refusal {
    Refusal::new(pb::RefusalReason::StoreFull, what.to_string())
}

/// The relay's decision state. See the module docs for the contract.
#[derive(Clone, Debug)]
pub struct RelayCore {
    table: RoutingTable,
    policy: Policy,
    seen: SeenSet,
    outboxes: BTreeMap<String, Outbox>,
    receipt_ttl_ms: i64,
    /// Per peer: the transfer stream answered RETRY last, and why.
    latched: BTreeMap<String, (u64, Refusal)>,
    escalations: Escalations,
    broadcast: BroadcastPolicy,
}

impl RelayCore {
    /// A core over `table` and `policy`, with an outbox per peer of the table.
    pub fn new(table: RoutingTable, policy: Policy, settings: CoreSettings, seed: u64, now_ms: i64) -> Self {
        let outboxes = table
            .peers()
            .map(|p| {
                (p.name.clone(), Outbox::new(&p.name, settings.outbox, derive_seed(seed, &p.name), now_ms))
            })
            .collect();
        let network = table.network().clone();
        RelayCore {
            escalations: Escalations::new(EscalationPolicy::none(network.clone())),
            broadcast: BroadcastPolicy::open(network),
            table,
            policy,
            seen: SeenSet::new(settings.seen_capacity),
            outboxes,
            receipt_ttl_ms: settings.receipt_ttl_ms,
            latched: BTreeMap::new(),
        }
    }

    /// A core for a relay config with default sizing (receipts are kept as
    /// long as the longest message lifetime).
    pub fn from_config(config: &RelayConfig, seed: u64, now_ms: i64) -> Result<Self, CoreError> {
        let table = RoutingTable::from_config(config)?;
        let policy = Policy::new(config.network.clone(), &config.policy, &config.limits)?;
        let ttl = i64::try_from(config.limits.max_lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let settings = CoreSettings { receipt_ttl_ms: ttl, ..CoreSettings::default() };
        let mut core = RelayCore::new(table, policy, settings, seed, now_ms);
        core.escalations =
            Escalations::new(EscalationPolicy::from_config(&config.network, &config.escalation)?);
        core.broadcast = BroadcastPolicy::from_config(&config.network, &config.broadcast)?;
        Ok(core)
    }

    /// Held escalation copies and their timers (see [`super::escalation`]).
    pub fn escalations(&self) -> &Escalations {
        &self.escalations
    }

    /// Held escalation copies, to hold, cancel, release and restore.
    pub fn escalations_mut(&mut self) -> &mut Escalations {
        &mut self.escalations
    }

    /// Who may broadcast (see [`super::broadcast`]).
    pub fn broadcast(&self) -> &BroadcastPolicy {
        &self.broadcast
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The policy (and its rate state).
    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    /// The seen-set.
    pub fn seen(&self) -> &SeenSet {
        &self.seen
    }

    /// One peer's outbox.
    pub fn outbox(&self, peer: &str) -> Option<&Outbox> {
        self.outboxes.get(peer)
    }

    /// One peer's outbox, for link events and `poll_transmit`.
    pub fn outbox_mut(&mut self, peer: &str) -> Option<&mut Outbox> {
        self.outboxes.get_mut(peer)
    }

    /// Outbox items are sent only once their store batch is durable (the
    /// relay's store writer calls this at start, then reports each fsync
    /// with [`RelayCore::durable`]).
    pub fn hold_until_durable(&mut self) {
        for o in self.outboxes.values_mut() {
            o.hold_until_durable();
        }
    }

    /// Where each outbox's pushes stand now: read while staging a batch,
    /// handed to [`RelayCore::durable`] once that batch is fsynced.
    pub fn durable_marks(&self) -> Vec<(String, u64)> {
        self.outboxes.iter().map(|(p, o)| (p.clone(), o.next_seq())).collect()
    }

    /// The batch whose [`RelayCore::durable_marks`] these are is durable.
    pub fn durable(&mut self, marks: &[(String, u64)]) {
        for (peer, next_seq) in marks {
            if let Some(o) = self.outboxes.get_mut(peer) {
                o.durable_up_to(*next_seq);
            }
        }
    }

    /// All outboxes, by peer name.
    pub fn outboxes(&self) -> impl Iterator<Item = &Outbox> {
        self.outboxes.values()
    }

    /// Loads persisted seen entries.
    pub fn restore_seen(&mut self, entries: impl IntoIterator<Item = SeenEntry>) {
        self.seen.restore(entries);
    }

    /// Loads a peer's persisted outbox items.
    pub fn restore_outbox(
        &mut self,
        peer: &str,
        items: impl IntoIterator<Item = (u64, OutboxItem)>,
    ) -> Result<(), CoreError> {
        let o = self.outboxes.get_mut(peer).ok_or_else(|| CoreError::UnknownPeer(peer.to_owned()))?;
        o.restore(items);
        Ok(())
    }

    /// A verified hello from `peer` announcing `networks` (counts as activity).
    pub fn handle_hello(
        &mut self,
        peer: &str,
        networks: Vec<NetworkId>,
        now_ms: i64,
    ) -> Result<(), CoreError> {
        self.table.set_served(peer, networks)?;
        if let Some(o) = self.outboxes.get_mut(peer) {
            o.handle_peer_activity(now_ms);
        }
        Ok(())
    }

    fn peer_activity(&mut self, origin: &Origin, now_ms: i64) -> Result<(), Refusal> {
        if let Origin::Peer(p) = origin {
            let o = self.outboxes.get_mut(p).ok_or_else(|| {
                Refusal::new(pb::RefusalReason::Policy, format!("{p} is not a peer of this relay"))
            })?;
            o.handle_peer_activity(now_ms);
        }
        Ok(())
    }

    fn latched(&self, origin: &Origin, stream: u64) -> Option<Refusal> {
        let Origin::Peer(p) = origin else { return None };
        let (s, r) = self.latched.get(p)?;
        if *s != stream {
            return None;
        }
        Some(Refusal::new(
            r.reason,
            format!("{} (an earlier transfer on this stream was answered RETRY)", r.detail),
        ))
    }

    fn latch(&mut self, origin: &Origin, stream: u64, r: &Refusal) {
        if let Origin::Peer(p) = origin {
            self.latched.insert(p.clone(), (stream, r.clone()));
        }
    }

    /// A new transfer stream from `peer` began, or its connection was lost:
    /// after a RETRY, this relay answers RETRY to everything else on the
    /// same stream (so nothing overtakes the refused item), until this call
    /// or a RETRY on another stream of that peer.
    pub fn handle_peer_stream(&mut self, peer: &str) {
        self.latched.remove(peer);
    }

    /// Decides what happens to an envelope copy. See the module docs.
    pub fn handle_envelope(&mut self, now_ms: i64, input: &RouteInput, origin: &Origin) -> Verdict {
        self.handle_envelope_on(now_ms, input, origin, 0)
    }

    /// [`Self::handle_envelope`] for a copy that arrived on transfer stream
    /// `stream` of its peer (a number unique among that connection's
    /// streams): the RETRY latch holds per stream, so a transfer on another
    /// stream neither ends it nor is caught by it.
    pub fn handle_envelope_on(
        &mut self,
        now_ms: i64,
        input: &RouteInput,
        origin: &Origin,
        stream: u64,
    ) -> Verdict {
        if let Err(r) = self.peer_activity(origin, now_ms) {
            return Verdict::Refused(r);
        }
        if let Some(r) = self.latched(origin, stream) {
            return Verdict::Retry(r);
        }
        let v = self.envelope_verdict(now_ms, input, origin);
        if let Verdict::Retry(r) = &v {
            self.latch(origin, stream, r);
        }
        v
    }

    fn envelope_verdict(&mut self, now_ms: i64, input: &RouteInput, origin: &Origin) -> Verdict {
        match origin {
            Origin::Peer(p) => {
                if let Err(r) = self.policy.check_peer_rate(p, now_ms) {
                    return Verdict::Retry(r);
                }
            }
            Origin::Local => {
                if input.sender.network() != self.table.network() {
                    let d = format!(
                        "sender {} is not a member of network {}",
                        input.sender,
                        self.table.network()
                    );
                    return Verdict::Refused(Refusal::new(pb::RefusalReason::Policy, d));
                }
                if let Err(r) = self.policy.check_sender_rate(&input.sender, now_ms) {
                    return Verdict::Retry(r);
                }
            }
        }
        if let Err(r) = self.policy.check_envelope(now_ms, input) {
            return Verdict::Refused(r);
        }
        let key = input.key();
        let copy = input.copy_recipients();
        let new = self.seen.unhandled(&key, copy);
        if new.is_empty() {
            return Verdict::Duplicate;
        }
        let duplicates: Vec<Address> = copy.iter().filter(|r| !new.contains(r)).cloned().collect();
        let from_peer = match origin {
            Origin::Peer(p) => Some(p.as_str()),
            Origin::Local => None,
        };
        let decision = route(&self.table, &input.hops, &new, from_peer);
        let mut refused = decision.refused;
        let mut allowed = |r: &Address| match self.policy.check_recipient(&input.sender, r, input.handling) {
            Ok(()) => true,
            Err(e) => {
                refused.push((r.clone(), e));
                false
            }
        };
        let local: Vec<Address> = decision.local.into_iter().filter(|r| allowed(r)).collect();
        let mut plan: Vec<(String, Vec<Address>)> = Vec::new();
        for (peer, rcpts) in decision.forward {
            let keep: Vec<Address> = rcpts.into_iter().filter(|r| allowed(r)).collect();
            if !keep.is_empty() {
                plan.push((peer, keep));
            }
        }
        // Check room everywhere before changing anything.
        if self.seen.would_overflow(&key) {
            return Verdict::Retry(store_full("the de-duplication table is full"));
        }
        if let Some((peer, _)) =
            plan.iter().find(|(p, _)| !self.outboxes.get(p).is_some_and(|o| o.has_room(1)))
        {
            return Verdict::Retry(store_full(format!("the outbox for {peer} is full")));
        }
        let grace = self.policy.max_clock_skew_ms();
        let seen = match self.seen.insert(key, new, input.expires_at_ms.saturating_add(grace)) {
            Ok(e) => e,
            Err(full) => return Verdict::Retry(store_full(full)),
        };
        let mut forwards = Vec::new();
        for (peer, deliver_to) in plan {
            let item = OutboxItem {
                id: ItemId::Envelope { sender: input.sender.clone(), msg_id: input.msg_id },
                recipients: deliver_to.clone(),
                urgent: input.is_urgent(),
                expires_at_ms: input.expires_at_ms,
                queued_at_ms: now_ms,
                size: input.payload_size,
            };
            // Room was checked above, and there is one push per peer.
            if let Some(Ok(seq)) = self.outboxes.get_mut(&peer).map(|o| o.push(item)) {
                forwards.push(Forward { peer, seq, deliver_to });
            }
        }
        Verdict::Handled(Disposition { local, forwards, refused, duplicates, seen })
    }

    /// Decides where a receipt goes. See the module docs. Receipts have no
    /// order among themselves, so the RETRY latch neither holds them nor is
    /// set by them.
    pub fn handle_receipt(&mut self, now_ms: i64, input: &ReceiptInput, origin: &Origin) -> ReceiptVerdict {
        if let Err(r) = self.peer_activity(origin, now_ms) {
            return ReceiptVerdict::Refused(r);
        }
        self.receipt_verdict(now_ms, input, origin)
    }

    fn receipt_verdict(&mut self, now_ms: i64, input: &ReceiptInput, origin: &Origin) -> ReceiptVerdict {
        let key = SeenKey::Receipt { id: input.receipt_id };
        if self.seen.contains(&key) {
            return ReceiptVerdict::Duplicate;
        }
        let from_peer = match origin {
            Origin::Peer(p) => Some(p.as_str()),
            Origin::Local => None,
        };
        let d = route(&self.table, &input.hops, std::slice::from_ref(&input.original_sender), from_peer);
        let expires_at_ms = now_ms.saturating_add(self.receipt_ttl_ms);
        let target = d.forward.into_iter().next().map(|(peer, _)| peer);
        if let Some(peer) = &target
            && !self.outboxes.get(peer).is_some_and(|o| o.has_room(1))
        {
            return ReceiptVerdict::Retry(store_full(format!("the outbox for {peer} is full")));
        }
        let seen = match self.seen.insert_receipt(input.receipt_id, expires_at_ms, from_peer) {
            Ok(e) => e,
            Err(full) => return ReceiptVerdict::Retry(store_full(full)),
        };
        if !d.local.is_empty() {
            return ReceiptVerdict::Local { inbox: input.original_sender.clone(), seen };
        }
        if let Some(peer) = target {
            let item = OutboxItem {
                id: ItemId::Receipt { id: input.receipt_id },
                recipients: vec![],
                urgent: input.urgent,
                expires_at_ms,
                queued_at_ms: now_ms,
                size: 0,
            };
            if let Some(Ok(seq)) = self.outboxes.get_mut(&peer).map(|o| o.push(item)) {
                return ReceiptVerdict::Forward { peer, seq, seen };
            }
        }
        let refusal = d.refused.into_iter().next().map(|(_, r)| r).unwrap_or_else(|| {
            Refusal::new(pb::RefusalReason::UnknownNetwork, "no route back to the original sender")
        });
        ReceiptVerdict::Undeliverable { refusal, seen }
    }

    /// The next expired outbox item of any peer.
    pub fn poll_expired(&mut self, now_ms: i64) -> Option<Expired> {
        self.outboxes.iter_mut().find_map(|(peer, o)| {
            o.poll_expired(now_ms).map(|Removed { seq, item }| Expired { peer: peer.clone(), seq, item })
        })
    }

    /// The next peer to dial.
    pub fn poll_dial(&mut self, now_ms: i64) -> Option<String> {
        self.outboxes.iter_mut().find_map(|(peer, o)| o.poll_dial(now_ms).then(|| peer.clone()))
    }

    /// When to poll next (unix ms; a past time means now).
    pub fn poll_timeout(&self) -> Option<i64> {
        self.outboxes.values().filter_map(Outbox::poll_timeout).min()
    }

    /// Drops seen entries past their expiry and stale rate buckets; returns
    /// the keys to delete from the store.
    pub fn expire_seen(&mut self, now_ms: i64) -> Vec<SeenKey> {
        self.policy.prune(now_ms);
        self.seen.expire(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Limits, PolicyConfig};

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn core(limits: Limits, settings: CoreSettings) -> RelayCore {
        let mut t = RoutingTable::new("relay-carin", NetworkId::new("carin").unwrap()).unwrap();
        t.add_peer("relay-gfp", NetworkId::new("gfp").unwrap(), true).unwrap();
        let p = Policy::new(t.network().clone(), &PolicyConfig::default(), &limits).unwrap();
        RelayCore::new(t, p, settings, 1, 0)
    }

    fn input(rcpts: &[&str]) -> RouteInput {
        RouteInput {
            msg_id: [7; 16],
            sender: a("s@carin"),
            recipients: rcpts.iter().map(|r| a(r)).collect(),
            deliver_to: vec![],
            hops: vec![],
            created_at_ms: 0,
            expires_at_ms: 100_000,
            priority: pb::Priority::Normal,
            handling: pb::HandlingCode::H1,
            payload_size: 10,
        }
    }

    #[test]
    fn envelope_verdicts() {
        let mut c = core(Limits::default(), CoreSettings::default());
        let v = c.handle_envelope(0, &input(&["l@carin", "x@arinsa"]), &Origin::Local);
        let Verdict::Handled(d) = &v else { panic!("{v:?}") };
        assert_eq!(d.local, vec![a("l@carin")]);
        assert_eq!(
            d.forwards,
            vec![Forward { peer: "relay-gfp".into(), seq: 1, deliver_to: vec![a("x@arinsa")] }]
        );
        assert_eq!(d.seen.expires_at_ms, 100_000 + 300_000, "expiry plus skew grace");
        assert_eq!(v.transfer_status(), pb::TransferStatus::Stored);
        let again = c.handle_envelope(1, &input(&["l@carin", "x@arinsa"]), &Origin::Local);
        assert_eq!(again, Verdict::Duplicate);
        // A second copy with one new recipient is handled for that one only.
        let mut more = input(&["l@carin", "x@arinsa", "y@carin"]);
        more.msg_id = [7; 16];
        let Verdict::Handled(d) = c.handle_envelope(2, &more, &Origin::Local) else { panic!() };
        assert_eq!((d.local.clone(), d.duplicates.len()), (vec![a("y@carin")], 2));
        let mut foreign = input(&["x@arinsa"]);
        foreign.sender = a("s@rrag");
        assert!(matches!(c.handle_envelope(0, &foreign, &Origin::Local), Verdict::Refused(_)));
        assert!(matches!(
            c.handle_envelope(0, &foreign, &Origin::Peer("nobody".into())),
            Verdict::Refused(_)
        ));
        let mut old = input(&["x@arinsa"]);
        old.msg_id = [8; 16];
        let Verdict::Refused(r) = c.handle_envelope(200_000, &old, &Origin::Local) else { panic!() };
        assert_eq!(r.reason, pb::RefusalReason::Expired);
    }

    #[test]
    fn full_queues_are_retry_not_loss() {
        let settings =
            CoreSettings { outbox: OutboxConfig { capacity: 1, ..Default::default() }, ..Default::default() };
        let mut c = core(Limits { sends_per_minute: 1, ..Limits::default() }, settings);
        assert!(matches!(c.handle_envelope(0, &input(&["x@arinsa"]), &Origin::Local), Verdict::Handled(_)));
        let mut second = input(&["x@arinsa"]);
        second.msg_id = [9; 16];
        let Verdict::Retry(r) = c.handle_envelope(0, &second, &Origin::Local) else { panic!() };
        assert_eq!(r.reason, pb::RefusalReason::RateLimited);
        let Verdict::Retry(r) = c.handle_envelope(60_000, &second, &Origin::Local) else { panic!() };
        assert_eq!(r.reason, pb::RefusalReason::StoreFull);
        assert!(!c.seen().contains(&second.key()), "nothing recorded on RETRY");
        assert_eq!(c.outbox("relay-gfp").unwrap().len(), 1);
    }

    /// After a RETRY on a peer's transfer stream, everything after it on
    /// that stream is RETRY too (nothing overtakes the refused item); other
    /// streams of the peer are not held, and a lost connection ends it.
    #[test]
    fn retry_latch_holds_per_stream() {
        let settings =
            CoreSettings { outbox: OutboxConfig { capacity: 1, ..Default::default() }, ..Default::default() };
        let mut t = RoutingTable::new("relay-carin", NetworkId::new("carin").unwrap()).unwrap();
        t.add_peer("relay-gfp", NetworkId::new("gfp").unwrap(), true).unwrap();
        t.add_peer("relay-arinsa", NetworkId::new("arinsa").unwrap(), false).unwrap();
        let p = Policy::new(t.network().clone(), &PolicyConfig::default(), &Limits::default()).unwrap();
        let mut c = RelayCore::new(t, p, settings, 1, 0);
        let gfp = Origin::Peer("relay-gfp".into());
        let from_gfp = |n: u8, rcpt: &str| {
            let mut i = input(&[rcpt]);
            i.msg_id = [n; 16];
            i.sender = a("s@gfp");
            i.hops = vec![pb::Hop { relay: "relay-gfp".into(), network: "gfp".into(), ..Default::default() }];
            i
        };
        // The outbox to arinsa takes one item.
        assert!(matches!(c.handle_envelope_on(0, &from_gfp(1, "x@arinsa"), &gfp, 5), Verdict::Handled(_)));
        let Verdict::Retry(r) = c.handle_envelope_on(0, &from_gfp(2, "y@arinsa"), &gfp, 5) else { panic!() };
        assert_eq!(r.reason, pb::RefusalReason::StoreFull);
        // A local recipient would be fine, but it is behind the RETRY on stream 5.
        let local = from_gfp(3, "l@carin");
        let Verdict::Retry(r) = c.handle_envelope_on(0, &local, &gfp, 5) else { panic!() };
        assert!(r.detail.contains("earlier transfer on this stream"), "{}", r.detail);
        assert!(matches!(c.handle_envelope_on(0, &local, &gfp, 6), Verdict::Handled(_)), "stream 6 is free");
        let other = from_gfp(4, "m@carin");
        assert!(matches!(c.handle_envelope_on(0, &other, &gfp, 5), Verdict::Retry(_)));
        c.handle_peer_stream("relay-gfp");
        assert!(matches!(c.handle_envelope_on(0, &other, &gfp, 5), Verdict::Handled(_)), "latch ended");
    }

    #[test]
    fn receipts_route_back() {
        let mut c = core(Limits::default(), CoreSettings::default());
        let r =
            ReceiptInput { receipt_id: [1; 32], original_sender: a("s@carin"), hops: vec![], urgent: false };
        let v = c.handle_receipt(0, &r, &Origin::Peer("relay-gfp".into()));
        assert!(matches!(&v, ReceiptVerdict::Local { inbox, .. } if *inbox == a("s@carin")), "{v:?}");
        assert_eq!(c.handle_receipt(0, &r, &Origin::Peer("relay-gfp".into())), ReceiptVerdict::Duplicate);
        let back =
            ReceiptInput { receipt_id: [2; 32], original_sender: a("s@arinsa"), hops: vec![], urgent: false };
        let ReceiptVerdict::Forward { peer, seq, .. } = c.handle_receipt(0, &back, &Origin::Local) else {
            panic!()
        };
        assert_eq!((peer.as_str(), seq), ("relay-gfp", 1));
        let looped =
            ReceiptInput { receipt_id: [3; 32], original_sender: a("s@arinsa"), hops: vec![], urgent: false };
        let v = c.handle_receipt(0, &looped, &Origin::Peer("relay-gfp".into()));
        assert!(
            matches!(v, ReceiptVerdict::Undeliverable { refusal, .. } if refusal.reason == pb::RefusalReason::Loop)
        );
    }
}
