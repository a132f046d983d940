//! Who may broadcast (`*@network`), per network: pure checks on the clear
//! header. A broadcast is recognisable in the clear: its signed context has
//! `broadcast_network` set (the client expanded `*@net` to the members).
//!
//! - `broadcast.allow_send` (addresses of this network; empty = every
//!   member): checked by the SENDER's relay when a member broadcasts to
//!   another network; refused with PERMISSION_DENIED naming the rule.
//! - `broadcast.allow_from` (addresses or network ids of other networks;
//!   empty = everyone): checked by the RECIPIENT network's relay for a
//!   broadcast into its own network from another network; each local
//!   recipient is refused (POLICY), audited, and the sender gets REFUSED
//!   receipts signed by that relay.
//!
//! A broadcast inside one network and transit at a hub are not restricted.

use std::collections::BTreeSet;

use focal_proto::{Address, NetworkId, pb};

use super::{CoreError, Refusal};
use crate::config::BroadcastConfig;

/// One network's broadcast policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastPolicy {
    network: Option<NetworkId>,
    allow_send: Option<BTreeSet<Address>>,
    allow_from: Option<(BTreeSet<Address>, BTreeSet<NetworkId>)>,
}

impl BroadcastPolicy {
    /// Everyone may broadcast.
    pub fn open(network: NetworkId) -> Self {
        BroadcastPolicy { network: Some(network), allow_send: None, allow_from: None }
    }

    /// The policy of `network` from its `[broadcast]` section.
    pub fn from_config(network: &NetworkId, c: &BroadcastConfig) -> Result<Self, CoreError> {
        let mut p = BroadcastPolicy::open(network.clone());
        if !c.allow_send.is_empty() {
            let mut set = BTreeSet::new();
            for (i, s) in c.allow_send.iter().enumerate() {
                let a = Address::parse_member(s)
                    .map_err(|e| CoreError::config(format!("broadcast.allow_send[{i}]"), e.to_string()))?;
                set.insert(a);
            }
            p.allow_send = Some(set);
        }
        if !c.allow_from.is_empty() {
            let (mut addrs, mut nets) = (BTreeSet::new(), BTreeSet::new());
            for (i, s) in c.allow_from.iter().enumerate() {
                let key = || format!("broadcast.allow_from[{i}]");
                if s.contains('@') {
                    addrs.insert(
                        Address::parse_member(s).map_err(|e| CoreError::config(key(), e.to_string()))?,
                    );
                } else {
                    nets.insert(NetworkId::new(s).map_err(|e| CoreError::config(key(), e.to_string()))?);
                }
            }
            p.allow_from = Some((addrs, nets));
        }
        Ok(p)
    }

    fn is_own(&self, n: &NetworkId) -> bool {
        self.network.as_ref() == Some(n)
    }

    /// At the sender's relay: may local member `sender` broadcast to `target`?
    pub fn check_send(&self, sender: &Address, target: &NetworkId) -> Result<(), Refusal> {
        if self.is_own(target) || !self.is_own(sender.network()) {
            return Ok(());
        }
        match &self.allow_send {
            Some(allowed) if !allowed.contains(sender) => Err(Refusal::new(
                pb::RefusalReason::Policy,
                format!(
                    "broadcast.allow_send of network {} does not list {sender}: it may not broadcast to *@{target}",
                    sender.network()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// At the recipient network's relay: may `sender` broadcast into this
    /// network (`target`)?
    pub fn check_receive(&self, sender: &Address, target: &NetworkId) -> Result<(), Refusal> {
        if !self.is_own(target) || self.is_own(sender.network()) {
            return Ok(());
        }
        match &self.allow_from {
            Some((addrs, nets)) if !addrs.contains(sender) && !nets.contains(sender.network()) => {
                Err(Refusal::new(
                    pb::RefusalReason::Policy,
                    format!(
                        "broadcast.allow_from of network {target} does not allow broadcasts from {sender}"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }
    fn n(s: &str) -> NetworkId {
        NetworkId::new(s).unwrap()
    }

    #[test]
    fn default_is_open() {
        let p = BroadcastPolicy::open(n("arinsa"));
        assert!(p.check_send(&a("x@arinsa"), &n("carin")).is_ok());
        assert!(p.check_receive(&a("x@carin"), &n("arinsa")).is_ok());
    }

    #[test]
    fn send_and_receive_rules() {
        let c = BroadcastConfig {
            allow_send: vec!["sec@arinsa".into()],
            allow_from: vec!["gfp".into(), "nl-fiod@carin".into()],
        };
        let p = BroadcastPolicy::from_config(&n("arinsa"), &c).unwrap();
        assert!(p.check_send(&a("sec@arinsa"), &n("carin")).is_ok());
        let r = p.check_send(&a("x@arinsa"), &n("carin")).unwrap_err();
        assert!(r.detail.contains("broadcast.allow_send") && r.detail.contains("x@arinsa"), "{r}");
        assert!(p.check_send(&a("x@arinsa"), &n("arinsa")).is_ok(), "inside the network");
        assert!(p.check_receive(&a("anyone@gfp"), &n("arinsa")).is_ok());
        assert!(p.check_receive(&a("nl-fiod@carin"), &n("arinsa")).is_ok());
        let r = p.check_receive(&a("be-ocsc@carin"), &n("arinsa")).unwrap_err();
        assert_eq!(r.reason, pb::RefusalReason::Policy);
        assert!(r.detail.contains("broadcast.allow_from"), "{r}");
        assert!(p.check_receive(&a("x@arinsa"), &n("arinsa")).is_ok(), "own members");
        assert!(p.check_receive(&a("be-ocsc@carin"), &n("rrag")).is_ok(), "transit");
    }
}
