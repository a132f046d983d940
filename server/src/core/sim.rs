//! A deterministic multi-relay simulator (test code), after quinn-proto's
//! `Pair`: N [`RelayCore`]s, in-memory "disks" (mailboxes, receipt inboxes,
//! outbox items, seen entries), links with latency and loss driven by a
//! seeded RNG, and a virtual clock. No sleeps, no threads: [`Sim::step`]
//! handles the earliest event or timer, [`Sim::drive_until`] loops it.
//!
//! It plays the driver's part exactly as `relay.rs` documents it, so it also
//! checks that contract. Model choices:
//! - one connection per linked pair, either side may dial; a dial takes a
//!   round trip and fails if the other relay is down or the dial is "lost";
//! - QUIC streams are reliable and ordered, so a lost packet costs time, not
//!   data: each frame is lost with the link's loss rate, and each loss delays
//!   it by a retransmission timeout (3 x latency), holding back the frames
//!   behind it (head-of-line blocking). A loss escalates to a lost
//!   CONNECTION with the link's kill rate (default: a tenth of the loss
//!   rate): that frame and everything behind it vanish and both ends see a
//!   disconnect; dials fail with the loss rate;
//! - every state change is on disk as soon as the core decides it (the
//!   driver's batch+flush), and acks leave after it; a crash loses the
//!   in-memory core and frames in flight, never the disk; a restart builds a
//!   fresh core and restores it from the disk;
//! - a recipient's client acks every message as it lands, producing a
//!   DELIVERED receipt from the recipient's relay.

use std::collections::{BTreeMap, BTreeSet};

use focal_proto::{Address, NetworkId, pb};

use super::backoff::{SplitMix64, derive_seed};
use super::dedup::{SeenEntry, SeenKey};
use super::outbox::{ItemId, OutboxItem};
use super::policy::Policy;
use super::relay::{CoreSettings, Origin, ReceiptInput, ReceiptVerdict, RelayCore, Verdict};
use super::routing::{RouteInput, RoutingTable};
use crate::config::{Limits, PolicyConfig};

/// Virtual time at which every simulation starts (unix ms, 2023-11-14).
pub(crate) const T0: i64 = 1_700_000_000_000;

pub(crate) fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

/// An envelope's clear facts (the sealed payload is irrelevant here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SimEnvelope {
    pub(crate) msg_id: [u8; 16],
    pub(crate) sender: Address,
    pub(crate) recipients: Vec<Address>,
    pub(crate) deliver_to: Vec<Address>,
    pub(crate) hops: Vec<pb::Hop>,
    pub(crate) created_at_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) urgent: bool,
}

impl SimEnvelope {
    fn input(&self) -> RouteInput {
        RouteInput {
            msg_id: self.msg_id,
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            deliver_to: self.deliver_to.clone(),
            hops: self.hops.clone(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            priority: if self.urgent { pb::Priority::Urgent } else { pb::Priority::Normal },
            handling: pb::HandlingCode::H1,
            payload_size: 1_000,
        }
    }

    /// The message's sequence number (msg ids are a counter in the sim).
    pub(crate) fn n(&self) -> u64 {
        u64::from_be_bytes(self.msg_id[..8].try_into().unwrap())
    }

    fn copy_recipients(&self) -> &[Address] {
        if self.deliver_to.is_empty() { &self.recipients } else { &self.deliver_to }
    }
}

/// A receipt (its signature is irrelevant here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SimReceipt {
    pub(crate) id: [u8; 32],
    pub(crate) kind: pb::ReceiptKind,
    pub(crate) msg_id: [u8; 16],
    pub(crate) original_sender: Address,
    pub(crate) subject: Address,
    pub(crate) reason: pb::RefusalReason,
    pub(crate) detail: String,
    pub(crate) hops: Vec<pb::Hop>,
}

#[derive(Clone, Debug)]
enum Stored {
    Envelope(SimEnvelope),
    Receipt(SimReceipt),
}

#[derive(Clone, Debug)]
enum Frame {
    Transfer(SimEnvelope),
    TransferAck(ItemId, pb::TransferStatus),
    Receipt(SimReceipt),
    ReceiptAck([u8; 32], pb::TransferStatus),
}

#[derive(Clone, Debug)]
enum Event {
    Frame { link: usize, epoch: u64, to: usize, fatal: bool, stream: u64, frame: Box<Frame> },
    DialDone { link: usize, from: usize, incarnation: u64 },
}

/// What survives a crash.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    /// Per member, every message copy in arrival order.
    pub(crate) mailboxes: BTreeMap<Address, Vec<SimEnvelope>>,
    /// Per member, receipts addressed to it, in arrival order.
    pub(crate) receipts: BTreeMap<Address, Vec<SimReceipt>>,
    outbox: BTreeMap<(String, u64), (OutboxItem, Stored)>,
    seen: BTreeMap<SeenKey, SeenEntry>,
}

/// One simulated relay.
pub(crate) struct SimRelay {
    pub(crate) name: String,
    pub(crate) network: NetworkId,
    peers: Vec<(String, NetworkId, bool)>,
    members: BTreeSet<Address>,
    /// `None` while the relay is down.
    pub(crate) core: Option<RelayCore>,
    incarnation: u64,
    pub(crate) disk: Disk,
    /// Times this relay started a dial, with the peer's name.
    pub(crate) dials: Vec<(i64, String)>,
    /// Receipts that found no way back.
    pub(crate) undeliverable: Vec<SimReceipt>,
    /// Transfers from peers answered DUPLICATE (retransmissions caught).
    pub(crate) duplicates: u64,
    /// Transfers from peers answered RETRY.
    pub(crate) retries: u64,
    policy: PolicyConfig,
}

struct Link {
    ends: [usize; 2],
    latency_ms: i64,
    loss_permille: u32,
    kill_permille: u32,
    conn: Option<u64>,
    /// Latest scheduled arrival per receiving end (frames stay in order).
    last_arrival: [i64; 2],
}

/// Builder of a federation.
pub(crate) struct SimBuilder {
    relays: Vec<(String, NetworkId, Vec<Address>)>,
    links: Vec<(usize, usize, i64, u32)>,
    defaults: Vec<(usize, usize)>,
    policies: Vec<(String, PolicyConfig)>,
    seed: u64,
    window: usize,
}

impl SimBuilder {
    pub(crate) fn new(seed: u64) -> Self {
        SimBuilder {
            relays: Vec::new(),
            links: Vec::new(),
            defaults: Vec::new(),
            policies: Vec::new(),
            seed,
            window: 32,
        }
    }

    /// Adds relay `relay-<network>` with members `<name>@<network>`.
    pub(crate) fn relay(mut self, network: &str, members: &[&str]) -> Self {
        let net = NetworkId::new(network).unwrap();
        let members = members.iter().map(|m| Address::new(m, net.clone()).unwrap()).collect();
        self.relays.push((format!("relay-{network}"), net, members));
        self
    }

    fn index(&self, network: &str) -> usize {
        self.relays.iter().position(|r| r.1.as_str() == network).unwrap()
    }

    /// Links two relays (by network) with a latency and a loss rate.
    pub(crate) fn link(mut self, a: &str, b: &str, latency_ms: i64, loss_permille: u32) -> Self {
        let (a, b) = (self.index(a), self.index(b));
        self.links.push((a, b, latency_ms, loss_permille));
        self
    }

    /// Sets every outbox's window (most items in flight per peer; default 32).
    pub(crate) fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Makes `via` the default route of `relay`.
    pub(crate) fn default_route(mut self, relay: &str, via: &str) -> Self {
        let (a, b) = (self.index(relay), self.index(via));
        self.defaults.push((a, b));
        self
    }

    /// Sets the policy of `network`'s relay.
    pub(crate) fn policy(mut self, network: &str, policy: PolicyConfig) -> Self {
        self.policies.push((format!("relay-{network}"), policy));
        self
    }

    pub(crate) fn build(self) -> Sim {
        let mut relays: Vec<SimRelay> = self
            .relays
            .iter()
            .map(|(name, net, members)| SimRelay {
                name: name.clone(),
                network: net.clone(),
                peers: Vec::new(),
                members: members.iter().cloned().collect(),
                core: None,
                incarnation: 0,
                disk: Disk::default(),
                dials: Vec::new(),
                undeliverable: Vec::new(),
                duplicates: 0,
                retries: 0,
                policy: self.policies.iter().find(|p| p.0 == *name).map(|p| p.1.clone()).unwrap_or_default(),
            })
            .collect();
        for &(a, b, _, _) in &self.links {
            for (x, y) in [(a, b), (b, a)] {
                let default = self.defaults.contains(&(x, y));
                let (name, net) = (relays[y].name.clone(), relays[y].network.clone());
                relays[x].peers.push((name, net, default));
            }
        }
        let links = self
            .links
            .iter()
            .map(|&(a, b, latency_ms, loss_permille)| Link {
                ends: [a, b],
                latency_ms,
                loss_permille,
                kill_permille: loss_permille / 10,
                conn: None,
                last_arrival: [0; 2],
            })
            .collect();
        let mut sim = Sim {
            now: T0,
            relays,
            links,
            events: BTreeMap::new(),
            next_event: 0,
            next_epoch: 1,
            next_id: 1,
            rng: SplitMix64::new(self.seed),
            seed: self.seed,
            window: self.window,
            rx_stream: BTreeMap::new(),
        };
        for i in 0..sim.relays.len() {
            sim.start(i);
        }
        sim
    }
}

/// The simulated federation.
pub(crate) struct Sim {
    pub(crate) now: i64,
    pub(crate) relays: Vec<SimRelay>,
    links: Vec<Link>,
    events: BTreeMap<(i64, u64), Event>,
    next_event: u64,
    next_epoch: u64,
    next_id: u64,
    rng: SplitMix64,
    seed: u64,
    window: usize,
    /// Last transfer-stream number seen per (receiver, sender).
    rx_stream: BTreeMap<(usize, usize), u64>,
}

impl Sim {
    pub(crate) fn relay(&self, network: &str) -> &SimRelay {
        self.relays.iter().find(|r| r.network.as_str() == network).unwrap()
    }

    fn index(&self, network: &str) -> usize {
        self.relays.iter().position(|r| r.network.as_str() == network).unwrap()
    }

    fn index_by_name(&self, name: &str) -> usize {
        self.relays.iter().position(|r| r.name == name).unwrap()
    }

    fn core(&mut self, i: usize) -> &mut RelayCore {
        self.relays[i].core.as_mut().expect("relay is up")
    }

    /// (Re)starts relay `i` from its disk.
    fn start(&mut self, i: usize) {
        let r = &mut self.relays[i];
        r.incarnation += 1;
        let mut table = RoutingTable::new(&r.name, r.network.clone()).unwrap();
        for (name, net, default) in &r.peers {
            table.add_peer(name, net.clone(), *default).unwrap();
        }
        let limits = Limits { sends_per_minute: 1_000_000, ..Limits::default() };
        let policy = Policy::new(r.network.clone(), &r.policy, &limits).unwrap();
        let mut settings = CoreSettings::default();
        settings.outbox.window = self.window;
        let seed = derive_seed(self.seed, &format!("{}#{}", r.name, r.incarnation));
        let mut core = RelayCore::new(table, policy, settings, seed, self.now);
        core.restore_seen(r.disk.seen.values().cloned());
        let mut per_peer: BTreeMap<String, Vec<(u64, OutboxItem)>> = BTreeMap::new();
        for ((peer, seq), (item, _)) in &r.disk.outbox {
            per_peer.entry(peer.clone()).or_default().push((*seq, item.clone()));
        }
        for (peer, items) in per_peer {
            core.restore_outbox(&peer, items).unwrap();
        }
        r.core = Some(core);
    }

    /// Crashes the relay of `network`: its core and its connections vanish.
    pub(crate) fn crash(&mut self, network: &str) {
        let i = self.index(network);
        for l in 0..self.links.len() {
            if self.links[l].ends.contains(&i) {
                self.kill_link(l);
            }
        }
        self.relays[i].core = None;
    }

    /// Restarts a crashed relay from its disk.
    pub(crate) fn restart(&mut self, network: &str) {
        let i = self.index(network);
        assert!(self.relays[i].core.is_none(), "{network} is up");
        self.start(i);
    }

    fn schedule(&mut self, at: i64, ev: Event) {
        self.events.insert((at, self.next_event), ev);
        self.next_event += 1;
    }

    fn link_between(&self, a: usize, b: usize) -> usize {
        self.links.iter().position(|l| l.ends == [a, b] || l.ends == [b, a]).expect("linked")
    }

    fn other(&self, link: usize, me: usize) -> usize {
        let [a, b] = self.links[link].ends;
        if a == me { b } else { a }
    }

    fn kill_link(&mut self, l: usize) {
        if self.links[l].conn.take().is_none() {
            return;
        }
        let now = self.now;
        for (me, peer) in
            [(self.links[l].ends[0], self.links[l].ends[1]), (self.links[l].ends[1], self.links[l].ends[0])]
        {
            let peer_name = self.relays[peer].name.clone();
            self.rx_stream.remove(&(me, peer));
            if let Some(c) = self.relays[me].core.as_mut() {
                c.outbox_mut(&peer_name).unwrap().handle_disconnected(now);
                c.handle_peer_stream(&peer_name);
            }
        }
    }

    fn send_frame(&mut self, from: usize, to: usize, stream: u64, frame: Frame) {
        let l = self.link_between(from, to);
        let Some(epoch) = self.links[l].conn else { return };
        let link = &self.links[l];
        let (latency, loss, kill) = (link.latency_ms, link.loss_permille, link.kill_permille);
        let mut at = self.now + latency;
        let mut fatal = false;
        while self.rng.chance(loss) {
            at += 3 * latency;
            if self.rng.chance(kill * 1000 / loss.max(1)) {
                fatal = true;
                break;
            }
        }
        let dir = usize::from(self.links[l].ends[1] == to);
        at = at.max(self.links[l].last_arrival[dir]);
        self.links[l].last_arrival[dir] = at;
        self.schedule(at, Event::Frame { link: l, epoch, to, fatal, stream, frame: Box::new(frame) });
    }

    fn new_id(&mut self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&self.next_id.to_be_bytes());
        self.next_id += 1;
        id
    }

    /// A new envelope from `sender` to `recipients`, created now.
    pub(crate) fn envelope(
        &mut self,
        sender: &str,
        recipients: &[&str],
        lifetime_ms: i64,
        urgent: bool,
    ) -> SimEnvelope {
        let mut msg_id = [0u8; 16];
        msg_id[..8].copy_from_slice(&self.next_id.to_be_bytes());
        self.next_id += 1;
        let mut recipients: Vec<Address> = recipients.iter().map(|r| addr(r)).collect();
        recipients.sort();
        SimEnvelope {
            msg_id,
            sender: addr(sender),
            recipients,
            deliver_to: vec![],
            hops: vec![],
            created_at_ms: self.now,
            expires_at_ms: self.now + lifetime_ms,
            urgent,
        }
    }

    /// A client of the sender's relay sends `env`; returns the verdict.
    pub(crate) fn send(&mut self, env: SimEnvelope) -> Verdict {
        let i = self.index(env.sender.network().as_str());
        let now = self.now;
        let v = self.core(i).handle_envelope(now, &env.input(), &Origin::Local);
        self.apply_envelope(i, &env, v.clone(), None);
        v
    }

    fn apply_envelope(&mut self, i: usize, env: &SimEnvelope, verdict: Verdict, from: Option<usize>) {
        let now = self.now;
        match verdict {
            Verdict::Handled(d) => {
                self.relays[i].disk.seen.insert(d.seen.key.clone(), d.seen.clone());
                let mut copy = env.clone();
                copy.hops.push(self.core(i).table().hop(now));
                for rcpt in d.local {
                    if self.relays[i].members.contains(&rcpt) {
                        let mut mine = copy.clone();
                        mine.deliver_to = vec![rcpt.clone()];
                        self.relays[i].disk.mailboxes.entry(rcpt.clone()).or_default().push(mine);
                        // The recipient's client acks at once: DELIVERED receipt.
                        self.make_receipt(
                            i,
                            env,
                            &rcpt,
                            pb::ReceiptKind::Delivered,
                            pb::RefusalReason::Unspecified,
                            "",
                        );
                    } else {
                        let why = format!("{rcpt} is not a member");
                        self.make_receipt(
                            i,
                            env,
                            &rcpt,
                            pb::ReceiptKind::Refused,
                            pb::RefusalReason::UnknownRecipient,
                            &why,
                        );
                    }
                }
                for f in d.forwards {
                    let item = self.core(i).outbox(&f.peer).unwrap().get(f.seq).unwrap().clone();
                    let mut c = copy.clone();
                    c.deliver_to = f.deliver_to;
                    self.relays[i].disk.outbox.insert((f.peer, f.seq), (item, Stored::Envelope(c)));
                }
                for (rcpt, r) in d.refused {
                    self.make_receipt(i, env, &rcpt, pb::ReceiptKind::Refused, r.reason, &r.detail);
                }
            }
            Verdict::Refused(r) if from.is_some() => {
                for rcpt in env.copy_recipients().to_vec() {
                    self.make_receipt(i, env, &rcpt, pb::ReceiptKind::Refused, r.reason, &r.detail);
                }
            }
            Verdict::Refused(_) | Verdict::Duplicate | Verdict::Retry(_) => {}
        }
    }

    /// Relay (or recipient client) `i` makes a receipt about `subject`.
    fn make_receipt(
        &mut self,
        i: usize,
        env: &SimEnvelope,
        subject: &Address,
        kind: pb::ReceiptKind,
        reason: pb::RefusalReason,
        detail: &str,
    ) {
        let receipt = SimReceipt {
            id: self.new_id(),
            kind,
            msg_id: env.msg_id,
            original_sender: env.sender.clone(),
            subject: subject.clone(),
            reason,
            detail: detail.to_owned(),
            hops: vec![],
        };
        let input = ReceiptInput {
            receipt_id: receipt.id,
            original_sender: receipt.original_sender.clone(),
            hops: vec![],
            urgent: env.urgent,
        };
        let now = self.now;
        let v = self.core(i).handle_receipt(now, &input, &Origin::Local);
        self.apply_receipt(i, receipt, v);
    }

    fn apply_receipt(&mut self, i: usize, mut receipt: SimReceipt, v: ReceiptVerdict) {
        let now = self.now;
        let core = self.relays[i].core.as_ref().expect("relay is up");
        let hop = core.table().hop(now);
        let forward_item = match &v {
            ReceiptVerdict::Forward { peer, seq, .. } => core.outbox(peer).and_then(|o| o.get(*seq)).cloned(),
            _ => None,
        };
        let relay = &mut self.relays[i];
        match v {
            ReceiptVerdict::Local { inbox, seen } => {
                relay.disk.seen.insert(seen.key.clone(), seen);
                receipt.hops.push(hop);
                relay.disk.receipts.entry(inbox).or_default().push(receipt);
            }
            ReceiptVerdict::Forward { peer, seq, seen } => {
                relay.disk.seen.insert(seen.key.clone(), seen);
                receipt.hops.push(hop);
                let item = forward_item.expect("queued item");
                relay.disk.outbox.insert((peer, seq), (item, Stored::Receipt(receipt)));
            }
            ReceiptVerdict::Undeliverable { seen, .. } => {
                relay.disk.seen.insert(seen.key.clone(), seen);
                relay.undeliverable.push(receipt);
            }
            ReceiptVerdict::Duplicate | ReceiptVerdict::Retry(_) | ReceiptVerdict::Refused(_) => {}
        }
    }

    fn deliver(&mut self, to: usize, from: usize, frame: Frame) {
        let now = self.now;
        let peer = self.relays[from].name.clone();
        let origin = Origin::Peer(peer.clone());
        match frame {
            Frame::Transfer(env) => {
                let v = self.core(to).handle_envelope(now, &env.input(), &origin);
                let status = v.transfer_status();
                match v {
                    Verdict::Duplicate => self.relays[to].duplicates += 1,
                    Verdict::Retry(_) => self.relays[to].retries += 1,
                    _ => {}
                }
                self.apply_envelope(to, &env, v, Some(from));
                let id = ItemId::Envelope { sender: env.sender.clone(), msg_id: env.msg_id };
                self.send_frame(to, from, 0, Frame::TransferAck(id, status));
            }
            Frame::Receipt(r) => {
                let input = ReceiptInput {
                    receipt_id: r.id,
                    original_sender: r.original_sender.clone(),
                    hops: r.hops.clone(),
                    urgent: false,
                };
                let v = self.core(to).handle_receipt(now, &input, &origin);
                let status = v.transfer_status();
                let id = r.id;
                self.apply_receipt(to, r, v);
                self.send_frame(to, from, 0, Frame::ReceiptAck(id, status));
            }
            Frame::TransferAck(id, status) => self.handle_ack(to, &peer, id, status),
            Frame::ReceiptAck(id, status) => self.handle_ack(to, &peer, ItemId::Receipt { id }, status),
        }
    }

    fn handle_ack(&mut self, me: usize, peer: &str, id: ItemId, status: pb::TransferStatus) {
        let now = self.now;
        let outbox = self.core(me).outbox_mut(peer).unwrap();
        if status == pb::TransferStatus::Retry {
            outbox.handle_retry(&id, now);
        } else if let Some(gone) = outbox.handle_ack(&id, now) {
            self.relays[me].disk.outbox.remove(&(peer.to_owned(), gone.seq));
        }
    }

    /// Runs every relay's poll_* outputs at the current time.
    fn poll_all(&mut self) {
        let now = self.now;
        for i in 0..self.relays.len() {
            if self.relays[i].core.is_none() {
                continue;
            }
            while let Some(exp) = self.core(i).poll_expired(now) {
                let Some((_, stored)) = self.relays[i].disk.outbox.remove(&(exp.peer.clone(), exp.seq))
                else {
                    panic!("expired item not on disk")
                };
                if let Stored::Envelope(env) = stored {
                    for rcpt in &exp.item.recipients {
                        let why = format!("expired at {} waiting for {}", env.expires_at_ms, exp.peer);
                        self.make_receipt(
                            i,
                            &env,
                            rcpt,
                            pb::ReceiptKind::Expired,
                            pb::RefusalReason::Expired,
                            &why,
                        );
                    }
                }
            }
            while let Some(peer) = self.core(i).poll_dial(now) {
                self.relays[i].dials.push((now, peer.clone()));
                let l = self.link_between(i, self.index_by_name(&peer));
                let at = now + 2 * self.links[l].latency_ms;
                let incarnation = self.relays[i].incarnation;
                self.schedule(at, Event::DialDone { link: l, from: i, incarnation });
            }
            let peers: Vec<String> = self.core(i).outboxes().map(|o| o.peer().to_owned()).collect();
            for peer in peers {
                let to = self.index_by_name(&peer);
                while let Some(t) = self.core(i).outbox_mut(&peer).unwrap().poll_transmit(now) {
                    let (_, stored) = &self.relays[i].disk.outbox[&(peer.clone(), t.seq)];
                    let frame = match stored {
                        Stored::Envelope(e) => Frame::Transfer(e.clone()),
                        Stored::Receipt(r) => Frame::Receipt(r.clone()),
                    };
                    self.send_frame(i, to, t.stream, frame);
                }
            }
        }
    }

    fn handle_event(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::Frame { link, epoch, to, fatal, stream, frame } => {
                if self.links[link].conn != Some(epoch) {
                    return; // the connection it travelled on is gone
                }
                if fatal {
                    self.kill_link(link);
                    return;
                }
                let from = self.other(link, to);
                if stream != 0 && self.rx_stream.insert((to, from), stream) != Some(stream) {
                    let peer = self.relays[from].name.clone();
                    self.core(to).handle_peer_stream(&peer);
                }
                self.deliver(to, from, *frame);
            }
            Event::DialDone { link, from, incarnation } => {
                if self.relays[from].core.is_none() || self.relays[from].incarnation != incarnation {
                    return;
                }
                let to = self.other(link, from);
                let to_name = self.relays[to].name.clone();
                let lost = self.rng.chance(self.links[link].loss_permille);
                if self.relays[to].core.is_none() || lost {
                    self.core(from).outbox_mut(&to_name).unwrap().handle_dial_failed(now);
                    return;
                }
                if self.links[link].conn.is_none() {
                    self.links[link].conn = Some(self.next_epoch);
                    self.next_epoch += 1;
                    // Both sides: connected, then the hello each announces.
                    for (me, peer) in [(from, to), (to, from)] {
                        let (pname, pnet) =
                            (self.relays[peer].name.clone(), self.relays[peer].network.clone());
                        let c = self.core(me);
                        c.outbox_mut(&pname).unwrap().handle_connected(now);
                        c.handle_hello(&pname, vec![pnet], now).unwrap();
                    }
                } else {
                    self.core(from).outbox_mut(&to_name).unwrap().handle_connected(now);
                }
            }
        }
    }

    /// One step: poll everything, then advance to the earliest event or
    /// timer and handle it. False when nothing is left to do.
    pub(crate) fn step(&mut self) -> bool {
        self.poll_all();
        let next_event = self.events.first_key_value().map(|((t, _), _)| *t);
        let next_timer = self
            .relays
            .iter()
            .filter_map(|r| r.core.as_ref()?.poll_timeout())
            .min()
            .map(|t| t.max(self.now + 1));
        match (next_event, next_timer) {
            (Some(e), t) if t.is_none_or(|t| e <= t) => {
                let ((at, _), ev) = self.events.pop_first().unwrap();
                self.now = self.now.max(at);
                self.handle_event(ev);
                true
            }
            (_, Some(t)) => {
                self.now = t;
                true
            }
            _ => false,
        }
    }

    /// Steps until `done` holds (true) or virtual time passes `deadline` or
    /// nothing is left to do (then `done` is re-checked).
    pub(crate) fn drive_until(&mut self, deadline: i64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.now > deadline || !self.step() {
                return done(self);
            }
        }
    }

    /// Advances virtual time to `until`, handling everything on the way.
    pub(crate) fn run_until(&mut self, until: i64) {
        while self.now < until {
            let next_event = self.events.first_key_value().map(|((t, _), _)| *t);
            let next_timer = self.relays.iter().filter_map(|r| r.core.as_ref()?.poll_timeout()).min();
            let next = [next_event, next_timer].into_iter().flatten().min();
            if next.is_none_or(|n| n > until) {
                self.poll_all();
                self.now = until;
                break;
            }
            self.step();
        }
        self.poll_all();
    }

    /// Every message copy in `member`'s mailbox.
    pub(crate) fn mailbox(&self, member: &str) -> &[SimEnvelope] {
        let a = addr(member);
        self.relay(a.network().as_str()).disk.mailboxes.get(&a).map_or(&[], Vec::as_slice)
    }

    /// Every receipt in `member`'s inbox.
    pub(crate) fn receipts(&self, member: &str) -> &[SimReceipt] {
        let a = addr(member);
        self.relay(a.network().as_str()).disk.receipts.get(&a).map_or(&[], Vec::as_slice)
    }

    /// Items waiting in `network`'s outbox for `peer_network`'s relay.
    pub(crate) fn queued(&self, network: &str, peer_network: &str) -> usize {
        let peer = &self.relay(peer_network).name;
        self.relay(network).disk.outbox.keys().filter(|(p, _)| p == peer).count()
    }

    /// Items waiting in every outbox of the federation.
    pub(crate) fn queued_total(&self) -> usize {
        self.relays.iter().map(|r| r.disk.outbox.len()).sum()
    }

    /// A random number (for tests that pick random moments).
    pub(crate) fn random_below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }
}
