//! Routing: the table of this relay's peers and the pure function that
//! decides, per recipient, where an envelope goes next.
//!
//! Rules (DESIGN.md, "Routing"):
//! - a recipient of this relay's network goes to its local mailbox;
//! - a recipient of another network goes to a peer that serves that network
//!   (a direct peer always beats the default route), otherwise to the
//!   default-route peer (the GFP hub), otherwise it is refused with
//!   `UNKNOWN_NETWORK`;
//! - if this relay is already in the hop list, every recipient is refused
//!   with `LOOP`; if this relay would be hop number [`MAX_HOPS`] + 1, with
//!   `TOO_MANY_HOPS`;
//! - a next hop that is the peer the envelope came from, or a relay already
//!   in the hop list, is never used: those recipients are refused with
//!   `LOOP` (this is what stops two default routes pointing at each other);
//! - recipients are split per next hop; each copy carries only its own
//!   recipients in `deliver_to`.
//!
//! The peers and their own networks come from the config; the networks each
//! peer serves are what its hello announced ([`RoutingTable::set_served`];
//! the certificate check that a relay may announce them is the driver's). A
//! peer always serves at least its own network, so it is routable before its
//! first hello.

use std::collections::{BTreeMap, BTreeSet};

use focal_proto::{Address, NetworkId, pb};

use super::dedup::SeenKey;
use super::{CoreError, MAX_HOPS, Refusal};
use crate::config::RelayConfig;

/// One peer relay as routing sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRoute {
    /// The peer relay's name (its certificate's `<name>`).
    pub name: String,
    /// The peer's own network.
    pub network: NetworkId,
    /// Networks it serves (its own plus what its hello announced).
    pub serves: BTreeSet<NetworkId>,
    /// Whether this peer is the default route.
    pub default_route: bool,
}

/// Where one network's recipients go from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop<'a> {
    /// This relay's own network: local mailboxes.
    Local,
    /// A peer; `via_default` when no direct peer serves the network.
    Peer {
        /// The peer's name.
        name: &'a str,
        /// True when this is the default route.
        via_default: bool,
    },
    /// No direct peer and no default route.
    Unknown,
}

/// This relay's identity and its peers.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    relay: String,
    network: NetworkId,
    peers: BTreeMap<String, PeerRoute>,
}

impl RoutingTable {
    /// A table for relay `relay` of `network`, without peers.
    pub fn new(relay: &str, network: NetworkId) -> Result<Self, CoreError> {
        focal_proto::address::validate_name(relay).map_err(|e| CoreError::config("name", e.to_string()))?;
        Ok(RoutingTable { relay: relay.to_owned(), network, peers: BTreeMap::new() })
    }

    /// The table described by a relay config (`name`, `network`, `peers`).
    pub fn from_config(config: &RelayConfig) -> Result<Self, CoreError> {
        let mut t = RoutingTable::new(&config.name, config.network.clone())?;
        for (i, p) in config.peers.iter().enumerate() {
            t.add_peer(&p.name, p.network.clone(), p.default_route)
                .map_err(|e| CoreError::config(format!("peers[{i}]"), e.to_string()))?;
        }
        Ok(t)
    }

    /// Adds a peer. Refuses a duplicate name, this relay itself, and a second
    /// default route.
    pub fn add_peer(&mut self, name: &str, network: NetworkId, default_route: bool) -> Result<(), CoreError> {
        focal_proto::address::validate_name(name).map_err(|e| CoreError::config("name", e.to_string()))?;
        if self.peers.contains_key(name) {
            return Err(CoreError::config("name", format!("peer `{name}` is listed twice")));
        }
        if name == self.relay && network == self.network {
            return Err(CoreError::config("name", "a relay cannot peer with itself"));
        }
        if default_route && let Some(d) = self.default_route() {
            return Err(CoreError::config(
                "default_route",
                format!("`{}` is already the default route", d.name),
            ));
        }
        let serves = BTreeSet::from([network.clone()]);
        self.peers
            .insert(name.to_owned(), PeerRoute { name: name.to_owned(), network, serves, default_route });
        Ok(())
    }

    /// Records the networks `peer` announced in its hello (its own network
    /// is always kept).
    pub fn set_served(
        &mut self,
        peer: &str,
        networks: impl IntoIterator<Item = NetworkId>,
    ) -> Result<(), CoreError> {
        let p = self.peers.get_mut(peer).ok_or_else(|| CoreError::UnknownPeer(peer.to_owned()))?;
        p.serves = networks.into_iter().collect();
        p.serves.insert(p.network.clone());
        Ok(())
    }

    /// This relay's name.
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// This relay's network.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// The peers, by name.
    pub fn peers(&self) -> impl Iterator<Item = &PeerRoute> {
        self.peers.values()
    }

    /// One peer.
    pub fn peer(&self, name: &str) -> Option<&PeerRoute> {
        self.peers.get(name)
    }

    /// The default-route peer, if any.
    pub fn default_route(&self) -> Option<&PeerRoute> {
        self.peers.values().find(|p| p.default_route)
    }

    /// The hop record this relay appends to envelopes and receipts it stores.
    pub fn hop(&self, now_ms: i64) -> pb::Hop {
        pb::Hop { relay: self.relay.clone(), network: self.network.to_string(), at_ms: now_ms }
    }

    fn in_hops(hops: &[pb::Hop], name: &str, network: &NetworkId) -> bool {
        hops.iter().any(|h| h.relay == name && h.network == network.as_str())
    }

    /// Where recipients of `network` go, ignoring loops. Among several
    /// direct peers, one whose own network it is wins, then the first by name.
    pub fn next_hop(&self, network: &NetworkId) -> NextHop<'_> {
        if *network == self.network {
            return NextHop::Local;
        }
        let direct = self
            .peers
            .values()
            .find(|p| p.network == *network)
            .or_else(|| self.peers.values().find(|p| p.serves.contains(network)));
        match (direct, self.default_route()) {
            (Some(p), _) => NextHop::Peer { name: &p.name, via_default: false },
            (None, Some(d)) => NextHop::Peer { name: &d.name, via_default: true },
            (None, None) => NextHop::Unknown,
        }
    }
}

/// The clear facts of one envelope copy that routing, policy and dedup act
/// on. Built from the header by [`RouteInput::from_pb`] (or directly in
/// tests); no dependency on the envelope crypto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInput {
    /// `Context.msg_id`.
    pub msg_id: [u8; 16],
    /// `Context.sender`.
    pub sender: Address,
    /// `Context.recipients`: every recipient of the message.
    pub recipients: Vec<Address>,
    /// `EnvelopeHeader.deliver_to`: the recipients this copy is for (empty =
    /// all); always a subset of `recipients`.
    pub deliver_to: Vec<Address>,
    /// `EnvelopeHeader.hops`, as received (this relay not yet appended).
    pub hops: Vec<pb::Hop>,
    /// `Context.created_at_ms`.
    pub created_at_ms: i64,
    /// `Context.expires_at_ms`.
    pub expires_at_ms: i64,
    /// `Context.priority` (never UNSPECIFIED).
    pub priority: pb::Priority,
    /// `Context.handling` (never UNSPECIFIED).
    pub handling: pb::HandlingCode,
    /// `EnvelopeHeader.payload_size`.
    pub payload_size: u64,
}

impl RouteInput {
    /// Extracts and checks the routing facts of a decoded context and header.
    /// (Signature and canonical-encoding checks are the envelope crate's.)
    pub fn from_pb(ctx: &pb::Context, header: &pb::EnvelopeHeader) -> Result<Self, CoreError> {
        let msg_id: [u8; 16] =
            ctx.msg_id.as_slice().try_into().map_err(|_| CoreError::bad("msg_id", "must be 16 bytes"))?;
        let addr =
            |what: &'static str, s: &str| Address::parse(s).map_err(|e| CoreError::bad(what, e.to_string()));
        let input = RouteInput {
            msg_id,
            sender: addr("sender", &ctx.sender)?,
            recipients: ctx.recipients.iter().map(|r| addr("recipients", r)).collect::<Result<_, _>>()?,
            deliver_to: header.deliver_to.iter().map(|r| addr("deliver_to", r)).collect::<Result<_, _>>()?,
            hops: header.hops.clone(),
            created_at_ms: ctx.created_at_ms,
            expires_at_ms: ctx.expires_at_ms,
            priority: ctx.priority(),
            handling: ctx.handling(),
            payload_size: header.payload_size,
        };
        input.validate()?;
        Ok(input)
    }

    /// Structural checks: concrete addresses, at least one recipient,
    /// `deliver_to` within `recipients`, priority and handling set.
    pub fn validate(&self) -> Result<(), CoreError> {
        if self.sender.is_broadcast() {
            return Err(CoreError::bad("sender", "a broadcast address cannot send"));
        }
        if self.recipients.is_empty() {
            return Err(CoreError::bad("recipients", "no recipient"));
        }
        if let Some(r) = self.recipients.iter().find(|r| r.is_broadcast()) {
            return Err(CoreError::bad(
                "recipients",
                format!("{r} is a broadcast address; seal to the members"),
            ));
        }
        if let Some(r) = self.deliver_to.iter().find(|r| !self.recipients.contains(r)) {
            return Err(CoreError::bad("deliver_to", format!("{r} is not a recipient of the message")));
        }
        if self.priority == pb::Priority::Unspecified {
            return Err(CoreError::bad("priority", "unspecified"));
        }
        if self.handling == pb::HandlingCode::Unspecified {
            return Err(CoreError::bad("handling", "unspecified"));
        }
        Ok(())
    }

    /// The recipients this copy is for.
    pub fn copy_recipients(&self) -> &[Address] {
        if self.deliver_to.is_empty() { &self.recipients } else { &self.deliver_to }
    }

    /// The de-duplication key.
    pub fn key(&self) -> SeenKey {
        SeenKey::Message { sender: self.sender.clone(), msg_id: self.msg_id }
    }

    /// True for urgent messages.
    pub fn is_urgent(&self) -> bool {
        self.priority == pb::Priority::Urgent
    }
}

/// Routing outcome for a set of recipients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteDecision {
    /// Recipients of this relay's network.
    pub local: Vec<Address>,
    /// Per next-hop peer, the recipients its copy must carry (`deliver_to`).
    pub forward: BTreeMap<String, Vec<Address>>,
    /// Recipients that cannot be routed, with the reason.
    pub refused: Vec<(Address, Refusal)>,
}

/// Routes `recipients` of an envelope that carries `hops` and arrived from
/// `from_peer` (`None`: from a local client or this relay itself).
pub fn route(
    table: &RoutingTable,
    hops: &[pb::Hop],
    recipients: &[Address],
    from_peer: Option<&str>,
) -> RouteDecision {
    let mut d = RouteDecision::default();
    let whole = if RoutingTable::in_hops(hops, &table.relay, &table.network) {
        Some(Refusal::new(pb::RefusalReason::Loop, format!("{} is already in the hop list", table.relay)))
    } else if hops.len() >= MAX_HOPS {
        Some(Refusal::new(pb::RefusalReason::TooManyHops, format!("more than {MAX_HOPS} hops")))
    } else {
        None
    };
    if let Some(r) = whole {
        d.refused = recipients.iter().map(|a| (a.clone(), r.clone())).collect();
        return d;
    }
    for rcpt in recipients {
        let net = rcpt.network();
        match table.next_hop(net) {
            NextHop::Local => d.local.push(rcpt.clone()),
            NextHop::Unknown => d.refused.push((
                rcpt.clone(),
                Refusal::new(
                    pb::RefusalReason::UnknownNetwork,
                    format!("{}: no peer serves network {net} and there is no default route", table.relay),
                ),
            )),
            NextHop::Peer { name, via_default } => {
                let peer = &table.peers[name];
                let how = if via_default { "default route" } else { "peer" };
                if from_peer == Some(name) {
                    d.refused.push((
                        rcpt.clone(),
                        Refusal::new(
                            pb::RefusalReason::Loop,
                            format!(
                                "{}: {how} for {net} is {name}, where the message came from",
                                table.relay
                            ),
                        ),
                    ));
                } else if RoutingTable::in_hops(hops, name, &peer.network) {
                    d.refused.push((
                        rcpt.clone(),
                        Refusal::new(
                            pb::RefusalReason::Loop,
                            format!("{}: {how} for {net} is {name}, already in the hop list", table.relay),
                        ),
                    ));
                } else {
                    d.forward.entry(name.to_owned()).or_default().push(rcpt.clone());
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NetworkId {
        NetworkId::new(s).unwrap()
    }
    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }
    fn hop(relay: &str, net: &str) -> pb::Hop {
        pb::Hop { relay: relay.into(), network: net.into(), at_ms: 0 }
    }

    /// CARIN relay: direct peer ARINSA, default route GFP.
    fn carin() -> RoutingTable {
        let mut t = RoutingTable::new("relay-carin", n("carin")).unwrap();
        t.add_peer("relay-gfp", n("gfp"), true).unwrap();
        t.add_peer("relay-arinsa", n("arinsa"), false).unwrap();
        t
    }

    #[test]
    fn local_direct_default_and_split() {
        let t = carin();
        let rcpts = [a("x@arinsa"), a("y@carin"), a("z@rrag"), a("w@arin-wa"), a("v@gfp")];
        let d = route(&t, &[], &rcpts, None);
        assert_eq!(d.local, vec![a("y@carin")]);
        assert_eq!(d.forward["relay-arinsa"], vec![a("x@arinsa")], "direct peer beats default route");
        assert_eq!(d.forward["relay-gfp"], vec![a("z@rrag"), a("w@arin-wa"), a("v@gfp")]);
        assert!(d.refused.is_empty());
    }

    #[test]
    fn unknown_network_without_default_route() {
        let mut t = RoutingTable::new("relay-gfp", n("gfp")).unwrap();
        t.add_peer("relay-carin", n("carin"), false).unwrap();
        let d =
            route(&t, &[hop("relay-carin", "carin")], &[a("x@nowhere"), a("y@carin")], Some("relay-carin"));
        assert_eq!(d.refused.len(), 2);
        assert_eq!(d.refused[0].1.reason, pb::RefusalReason::UnknownNetwork);
        assert_eq!(d.refused[1].1.reason, pb::RefusalReason::Loop, "never back to where it came from");
    }

    #[test]
    fn loops_and_hop_limit() {
        let t = carin();
        let d = route(&t, &[hop("relay-gfp", "gfp"), hop("relay-carin", "carin")], &[a("x@carin")], None);
        assert_eq!(d.refused[0].1.reason, pb::RefusalReason::Loop);
        // Default route back to the sending peer.
        let d = route(&t, &[hop("relay-gfp", "gfp")], &[a("x@rrag")], Some("relay-gfp"));
        assert_eq!(d.refused[0].1.reason, pb::RefusalReason::Loop);
        // Next hop already in the list (not the sender).
        let d = route(
            &t,
            &[hop("relay-arinsa", "arinsa"), hop("relay-x", "rrag")],
            &[a("x@arinsa")],
            Some("relay-x"),
        );
        assert_eq!(d.refused[0].1.reason, pb::RefusalReason::Loop);
        let eight: Vec<pb::Hop> = (0..8).map(|i| hop(&format!("r{i}"), "rrag")).collect();
        let d = route(&t, &eight, &[a("x@carin")], None);
        assert_eq!(d.refused[0].1.reason, pb::RefusalReason::TooManyHops);
        let d = route(&t, &eight[..7], &[a("x@carin")], None);
        assert_eq!(d.local, vec![a("x@carin")], "becoming the 8th hop is fine");
    }

    #[test]
    fn hello_announcements_and_config_errors() {
        let mut t = carin();
        t.add_peer("relay-rrag", n("rrag"), false).unwrap();
        t.set_served("relay-rrag", [n("arin-ap")]).unwrap();
        assert_eq!(t.next_hop(&n("arin-ap")), NextHop::Peer { name: "relay-rrag", via_default: false });
        assert_eq!(t.next_hop(&n("rrag")), NextHop::Peer { name: "relay-rrag", via_default: false });
        assert!(t.set_served("nobody", []).is_err());
        assert!(t.add_peer("relay-gfp", n("gfp"), false).unwrap_err().to_string().contains("twice"));
        assert!(
            t.add_peer("relay-other", n("gfp"), true)
                .unwrap_err()
                .to_string()
                .contains("already the default")
        );
        assert!(t.add_peer("relay-carin", n("carin"), false).is_err());
        assert_eq!(t.hop(5).network, "carin");
    }

    #[test]
    fn route_input_from_pb_checks_fields() {
        let ctx = pb::Context {
            version: 1,
            msg_id: vec![1; 16],
            sender: "a@carin".into(),
            recipients: vec!["b@arinsa".into(), "c@rrag".into()],
            created_at_ms: 1,
            expires_at_ms: 2,
            handling: pb::HandlingCode::H1 as i32,
            priority: pb::Priority::Urgent as i32,
            ..Default::default()
        };
        let mut header = pb::EnvelopeHeader { deliver_to: vec!["c@rrag".into()], ..Default::default() };
        let input = RouteInput::from_pb(&ctx, &header).unwrap();
        assert!(input.is_urgent());
        assert_eq!(input.copy_recipients(), &[a("c@rrag")]);
        header.deliver_to = vec!["d@rrag".into()];
        assert!(RouteInput::from_pb(&ctx, &header).unwrap_err().to_string().contains("deliver_to"));
        header.deliver_to.clear();
        let bad = pb::Context { msg_id: vec![1; 3], ..ctx.clone() };
        assert!(RouteInput::from_pb(&bad, &header).unwrap_err().to_string().contains("16 bytes"));
        let bad = pb::Context { priority: 0, ..ctx.clone() };
        assert!(RouteInput::from_pb(&bad, &header).is_err());
        let bad = pb::Context { recipients: vec!["*@arinsa".into()], ..ctx };
        assert!(RouteInput::from_pb(&bad, &header).unwrap_err().to_string().contains("broadcast"));
    }
}
