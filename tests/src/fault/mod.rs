//! Fault injection for federation tests: [`UdpProxy`] (a loopback UDP
//! forwarder that cuts, delays or drops datagrams on command),
//! [`LinkProxy`] (the two proxies that carry one federation link, one per
//! dialling direction, so a cut cuts the link both ways), and [`Ledger`]
//! (what senders were told, checked against what recipients hold:
//! exactly once, per-sender order). [`TcpProxy`] cuts or stalls a client's
//! gRPC connection after a number of bytes.
//!
//! Relays are put behind a link proxy with
//! `Federation::builder()…proxy_link("carin", "gfp")` and reached with
//! `fed.link_proxy("carin", "gfp")`; SIGSTOP/SIGCONT and CPU time are on
//! [`crate::RelayHandle`] (`pause`, `resume`, `cpu_time`).

mod ledger;
mod proxy;
mod tcp;

pub use ledger::{DeliveryReport, Ledger, Outcome};
pub use proxy::{Impairment, ProxyStats, UdpProxy};
pub use tcp::{AfterBytes, TcpProxy};

use focal_proto::NetworkId;

/// The federation link between the relays of networks `a` and `b`, routed
/// through two proxies: `a` dials `b` through [`LinkProxy::a_to_b`] and `b`
/// dials `a` through [`LinkProxy::b_to_a`] (Focal relays both dial each
/// other; whichever connection survives, its datagrams cross one of them).
pub struct LinkProxy {
    /// One end (the first network named when the link was proxied).
    pub a: NetworkId,
    /// The other end.
    pub b: NetworkId,
    /// Carries connections dialled by `a` (target: `b`'s federation address).
    pub a_to_b: UdpProxy,
    /// Carries connections dialled by `b` (target: `a`'s federation address).
    pub b_to_a: UdpProxy,
}

impl LinkProxy {
    /// Applies `imp` to both proxies (both directions of both connections).
    pub fn set(&self, imp: Impairment) {
        self.a_to_b.set(imp);
        // A different stream of losses on the other proxy, still seeded.
        self.b_to_a.set(Impairment { seed: imp.seed ^ 0x5eed_b2a0, ..imp });
    }

    /// Datagrams forwarded and dropped by both proxies together.
    pub fn stats(&self) -> ProxyStats {
        let (x, y) = (self.a_to_b.stats(), self.b_to_a.stats());
        ProxyStats { forwarded: x.forwarded + y.forwarded, dropped: x.dropped + y.dropped }
    }

    /// The proxy that `from` dials its peer through.
    pub fn dialled_by(&self, from: &NetworkId) -> Option<&UdpProxy> {
        if from == &self.a {
            Some(&self.a_to_b)
        } else if from == &self.b {
            Some(&self.b_to_a)
        } else {
            None
        }
    }
}
