//! The federation view of a secretariat: the latest link report of each
//! directly linked network, as a plain type (no I/O, no clock: every call
//! takes `now_ms`).
//!
//! Each relay periodically tells its peers about its own links (peer
//! network, state, queue depth, oldest queued age) in a `pb::LinkReport`.
//! A receiving relay keeps the latest report per reporting network and
//! forwards nothing: in a hub-and-spoke federation the hub's report covers
//! the hub's links, so a spoke learns the other spokes' links from it.
//!
//! Rules enforced by [`FederationView::handle_report`]:
//! - the reporter is the TLS-authenticated peer: a report naming another
//!   network or relay than the peer's certificate is refused
//!   ([`ReportRefused::Forged`]);
//! - only configured peers' networks are kept (one report each: bounded);
//! - a report lists at most [`ViewLimits::max_links`] links, each to a
//!   valid network other than the reporter's, at most once, with a short
//!   state word;
//! - an older report (by the reporter's clock) does not replace a newer one.
//!
//! Staleness is judged on this relay's clock (time since the report was
//! received), so clock skew between relays does not make a report look
//! fresh or old.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use focal_proto::{Identity, NetworkId, pb};

/// Bounds of the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewLimits {
    /// Most links one report may list.
    pub max_links: usize,
    /// Longest state word (`connected`, `backoff`…), in bytes.
    pub max_state_len: usize,
    /// A report received longer ago than this is stale.
    pub stale_after_ms: i64,
}

impl Default for ViewLimits {
    fn default() -> Self {
        ViewLimits { max_links: 64, max_state_len: 32, stale_after_ms: 30_000 }
    }
}

/// Why a link report was not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportRefused {
    /// The report claims another network or relay than the authenticated peer.
    Forged {
        /// What the report claims (`network/relay`).
        claimed: String,
        /// Who sent it (certificate identity).
        sender: String,
    },
    /// The sender's network is not a configured peer network.
    UnknownNetwork(String),
    /// More links than [`ViewLimits::max_links`].
    TooManyLinks(usize),
    /// A link entry is malformed (names what is wrong).
    BadLink(String),
    /// A newer report of that network is already kept.
    Outdated,
}

impl fmt::Display for ReportRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportRefused::Forged { claimed, sender } => {
                write!(f, "report claims to be from {claimed} but was sent by {sender}")
            }
            ReportRefused::UnknownNetwork(n) => write!(f, "network {n} is not a configured peer"),
            ReportRefused::TooManyLinks(n) => write!(f, "report lists {n} links (too many)"),
            ReportRefused::BadLink(d) => write!(f, "bad link entry: {d}"),
            ReportRefused::Outdated => f.write_str("a newer report of that network is kept"),
        }
    }
}

impl std::error::Error for ReportRefused {}

/// One kept report.
#[derive(Clone, Debug, PartialEq)]
pub struct KeptReport {
    /// Reporting network.
    pub network: NetworkId,
    /// Reporting relay.
    pub relay: String,
    /// The reporter's clock at reporting.
    pub reported_at_ms: i64,
    /// This relay's clock when it arrived.
    pub received_at_ms: i64,
    /// The reporter's links.
    pub links: Vec<pb::LinkState>,
}

/// The latest report per reporting network (see the module docs).
#[derive(Clone, Debug)]
pub struct FederationView {
    limits: ViewLimits,
    reporters: BTreeSet<NetworkId>,
    reports: BTreeMap<NetworkId, KeptReport>,
}

impl FederationView {
    /// A view accepting reports from the given (configured peer) networks.
    pub fn new(reporters: impl IntoIterator<Item = NetworkId>, limits: ViewLimits) -> Self {
        FederationView { limits, reporters: reporters.into_iter().collect(), reports: BTreeMap::new() }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ViewLimits {
        &self.limits
    }

    /// Checks `report` from the authenticated peer `from` and keeps it as
    /// that network's latest.
    pub fn handle_report(
        &mut self,
        from: &Identity,
        report: pb::LinkReport,
        now_ms: i64,
    ) -> Result<(), ReportRefused> {
        if report.network != from.network.as_str() || report.relay != from.name {
            return Err(ReportRefused::Forged {
                claimed: format!("{}/{}", report.network, report.relay),
                sender: from.uri(),
            });
        }
        if !self.reporters.contains(&from.network) {
            return Err(ReportRefused::UnknownNetwork(from.network.to_string()));
        }
        if report.links.len() > self.limits.max_links {
            return Err(ReportRefused::TooManyLinks(report.links.len()));
        }
        let mut seen = BTreeSet::new();
        for (i, l) in report.links.iter().enumerate() {
            let bad = |why: String| ReportRefused::BadLink(format!("links[{i}]: {why}"));
            let net = NetworkId::new(&l.peer_network).map_err(|e| bad(format!("peer_network: {e}")))?;
            if net == from.network {
                return Err(bad("a link to the reporter's own network".into()));
            }
            Identity::new(net.clone(), focal_proto::Role::Relay, &l.peer_relay)
                .map_err(|e| bad(format!("peer_relay: {e}")))?;
            if !seen.insert((net, l.peer_relay.clone())) {
                return Err(bad(format!("{}/{} listed twice", l.peer_network, l.peer_relay)));
            }
            if l.state.is_empty()
                || l.state.len() > self.limits.max_state_len
                || !l.state.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
            {
                return Err(bad(format!("state {:?} is not a short lowercase word", l.state)));
            }
            if l.oldest_age_ms < 0 {
                return Err(bad("oldest_age_ms is negative".into()));
            }
        }
        if let Some(kept) = self.reports.get(&from.network)
            && kept.relay == report.relay
            && kept.reported_at_ms > report.reported_at_ms
        {
            return Err(ReportRefused::Outdated);
        }
        self.reports.insert(
            from.network.clone(),
            KeptReport {
                network: from.network.clone(),
                relay: report.relay,
                reported_at_ms: report.reported_at_ms,
                received_at_ms: now_ms,
                links: report.links,
            },
        );
        Ok(())
    }

    /// Replaces the accepted reporter networks (after a config reload);
    /// reports of networks no longer configured are dropped.
    pub fn set_reporters(&mut self, reporters: impl IntoIterator<Item = NetworkId>) {
        self.reporters = reporters.into_iter().collect();
        let keep = &self.reporters;
        self.reports.retain(|n, _| keep.contains(n));
    }

    /// The kept reports, by network.
    pub fn reports(&self) -> impl Iterator<Item = &KeptReport> {
        self.reports.values()
    }

    /// True if `report` is older than the staleness limit at `now_ms`.
    pub fn is_stale(&self, report: &KeptReport, now_ms: i64) -> bool {
        now_ms.saturating_sub(report.received_at_ms) > self.limits.stale_after_ms
    }

    /// Every kept report as the Admin status shows it.
    pub fn snapshot(&self, now_ms: i64) -> Vec<pb::RemoteLinkReport> {
        self.reports
            .values()
            .map(|r| pb::RemoteLinkReport {
                network: r.network.to_string(),
                relay: r.relay.clone(),
                reported_at_ms: r.reported_at_ms,
                age_ms: now_ms.saturating_sub(r.received_at_ms).max(0),
                stale: self.is_stale(r, now_ms),
                links: r.links.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use focal_proto::Role;

    use super::*;

    fn net(s: &str) -> NetworkId {
        NetworkId::new(s).unwrap()
    }

    fn relay(n: &str) -> Identity {
        Identity::new(net(n), Role::Relay, &format!("relay-{n}")).unwrap()
    }

    fn link(n: &str, state: &str, depth: u64) -> pb::LinkState {
        pb::LinkState {
            peer_network: n.into(),
            peer_relay: format!("relay-{n}"),
            state: state.into(),
            queue_depth: depth,
            oldest_age_ms: if depth > 0 { 1500 } else { 0 },
        }
    }

    fn report(n: &str, at: i64, links: Vec<pb::LinkState>) -> pb::LinkReport {
        pb::LinkReport { network: n.into(), relay: format!("relay-{n}"), reported_at_ms: at, links }
    }

    fn view() -> FederationView {
        FederationView::new([net("gfp")], ViewLimits::default())
    }

    #[test]
    fn keeps_the_latest_report_per_network() {
        let mut v = view();
        let gfp = relay("gfp");
        v.handle_report(&gfp, report("gfp", 1_000, vec![link("arinsa", "connected", 0)]), 10_000).unwrap();
        v.handle_report(&gfp, report("gfp", 6_000, vec![link("arinsa", "backoff", 3)]), 15_000).unwrap();
        let s = v.snapshot(18_000);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].network, "gfp");
        assert_eq!(s[0].relay, "relay-gfp");
        assert_eq!(s[0].reported_at_ms, 6_000);
        assert_eq!(s[0].age_ms, 3_000);
        assert!(!s[0].stale);
        assert_eq!(s[0].links, vec![link("arinsa", "backoff", 3)]);
    }

    #[test]
    fn an_older_report_does_not_replace_a_newer_one() {
        let mut v = view();
        let gfp = relay("gfp");
        v.handle_report(&gfp, report("gfp", 6_000, vec![link("arinsa", "backoff", 3)]), 10_000).unwrap();
        let old = report("gfp", 1_000, vec![link("arinsa", "connected", 0)]);
        assert_eq!(v.handle_report(&gfp, old, 11_000), Err(ReportRefused::Outdated));
        assert_eq!(v.snapshot(11_000)[0].links[0].state, "backoff");
    }

    #[test]
    fn a_report_claiming_another_network_is_refused() {
        let mut v = FederationView::new([net("gfp"), net("arinsa")], ViewLimits::default());
        // GFP's relay claims to speak for ARINSA.
        let forged = report("arinsa", 1_000, vec![link("carin", "connected", 0)]);
        let err = v.handle_report(&relay("gfp"), forged, 2_000).unwrap_err();
        assert!(matches!(err, ReportRefused::Forged { .. }), "{err:?}");
        assert!(err.to_string().contains("arinsa/relay-arinsa"), "{err}");
        assert!(err.to_string().contains("focal://gfp/relay/relay-gfp"), "{err}");
        // Right network, another relay name.
        let mut other = report("gfp", 1_000, vec![]);
        other.relay = "relay-gfp-2".into();
        assert!(matches!(v.handle_report(&relay("gfp"), other, 2_000), Err(ReportRefused::Forged { .. })));
        assert!(v.snapshot(2_000).is_empty(), "nothing kept");
    }

    #[test]
    fn only_configured_peer_networks_are_kept() {
        let mut v = view();
        let r = report("rrag", 1_000, vec![]);
        assert_eq!(
            v.handle_report(&relay("rrag"), r, 2_000),
            Err(ReportRefused::UnknownNetwork("rrag".into()))
        );
        v.handle_report(&relay("gfp"), report("gfp", 1_000, vec![]), 2_000).unwrap();
        v.set_reporters([net("arinsa")]);
        assert!(v.snapshot(3_000).is_empty(), "dropped with its network");
    }

    #[test]
    fn malformed_or_oversized_reports_are_refused() {
        let limits = ViewLimits { max_links: 2, ..ViewLimits::default() };
        let mut v = FederationView::new([net("gfp")], limits);
        let gfp = relay("gfp");
        let three =
            vec![link("carin", "connected", 0), link("arinsa", "connected", 0), link("rrag", "backoff", 0)];
        assert_eq!(v.handle_report(&gfp, report("gfp", 1, three), 2), Err(ReportRefused::TooManyLinks(3)));
        let cases = [
            (link("Not A Net", "connected", 0), "peer_network"),
            (link("gfp", "connected", 0), "own network"),
            (link("carin", "", 0), "state"),
            (link("carin", "<script>", 0), "state"),
            (link("carin", &"x".repeat(33), 0), "state"),
            (pb::LinkState { oldest_age_ms: -1, ..link("carin", "connected", 0) }, "negative"),
            (pb::LinkState { peer_relay: "bad name/".into(), ..link("carin", "connected", 0) }, "peer_relay"),
        ];
        for (l, want) in cases {
            let err = v.handle_report(&gfp, report("gfp", 1, vec![l.clone()]), 2).unwrap_err();
            assert!(
                matches!(&err, ReportRefused::BadLink(d) if d.contains(want)),
                "{l:?}: {err} should mention {want}"
            );
        }
        let twice = vec![link("carin", "connected", 0), link("carin", "backoff", 0)];
        assert!(matches!(v.handle_report(&gfp, report("gfp", 1, twice), 2), Err(ReportRefused::BadLink(_))));
        assert!(v.snapshot(2).is_empty());
    }

    #[test]
    fn reports_go_stale_on_this_relays_clock() {
        let mut v = view();
        // The reporter's clock is far ahead: staleness ignores it.
        v.handle_report(&relay("gfp"), report("gfp", 999_999_999, vec![]), 10_000).unwrap();
        assert!(!v.snapshot(40_000)[0].stale, "exactly 30 s is not yet stale");
        let s = v.snapshot(40_001);
        assert!(s[0].stale);
        assert_eq!(s[0].age_ms, 30_001);
    }
}
