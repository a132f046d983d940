//! Escalation of unacknowledged urgent requests to an alternate focal point,
//! as pure state with a virtual clock (no I/O; the store persists [`Held`]
//! records and the driver calls [`Escalations::poll_due`]).
//!
//! The envelope is end-to-end encrypted, so a relay cannot re-encrypt a
//! message for someone else. Instead:
//! 1. the network's relay config names an alternate per member
//!    ([`EscalationPolicy`], `[[escalation]]`, `member = "*"` for the network
//!    default), and the relay publishes it with the member's directory entry
//!    (`DirectoryEntry.escalation`, [`EscalationPolicy::route`]);
//! 2. the sender's client seals an URGENT message also to the alternate and
//!    lists the pair in the signed context (`Context.escalations`, checked by
//!    [`escalations_of`]);
//! 3. the relay of that network holds the alternate's copy out of its inbox
//!    ([`Escalations::hold`]): the pair must match the relay's own rule, the
//!    time is the relay's `after` counted from when the relay got the copy;
//! 4. the primary's acknowledgement before that time cancels the held copy
//!    ([`Escalations::handle_ack`], audited ESCALATION_CANCELLED); otherwise
//!    [`Escalations::poll_due`] yields it: the store puts it into the
//!    alternate's inbox, audits ESCALATED and sends the sender a
//!    relay-signed ESCALATED receipt.

use std::collections::{BTreeMap, BTreeSet};

use focal_proto::{Address, NetworkId, pb};
use serde::{Deserialize, Serialize};

use super::{CoreError, Refusal};
use crate::config::{EscalationConfig, parse_duration_ms};

/// Most copies held at once; beyond it a new escalation copy is refused
/// (STORE_FULL receipt for the alternate, the primary's copy is unaffected).
pub const MAX_HELD: usize = 100_000;

/// A member's alternate and how long the member has to acknowledge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The alternate focal point.
    pub alternate: Address,
    /// Time to acknowledge (ms).
    pub after_ms: i64,
}

/// The escalation rules of one network (its relay's `[[escalation]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationPolicy {
    network: NetworkId,
    rules: BTreeMap<Address, Rule>,
    default: Option<Rule>,
}

impl EscalationPolicy {
    /// No escalation at all.
    pub fn none(network: NetworkId) -> Self {
        EscalationPolicy { network, rules: BTreeMap::new(), default: None }
    }

    /// The rules of `network` from its config (validated again here; errors
    /// name the key).
    pub fn from_config(network: &NetworkId, rules: &[EscalationConfig]) -> Result<Self, CoreError> {
        let mut p = EscalationPolicy::none(network.clone());
        for (i, r) in rules.iter().enumerate() {
            let key = |k: &str| format!("escalation[{i}].{k}");
            let alternate = Address::parse_member(&r.alternate)
                .map_err(|e| CoreError::config(key("alternate"), e.to_string()))?;
            let after_ms = parse_duration_ms(&r.after).map_err(|e| CoreError::config(key("after"), e))?;
            let rule = Rule { alternate, after_ms };
            if r.member == "*" {
                p.default = Some(rule);
            } else {
                let m = Address::parse_member(&r.member)
                    .map_err(|e| CoreError::config(key("member"), e.to_string()))?;
                p.rules.insert(m, rule);
            }
        }
        Ok(p)
    }

    /// The rule for `member`: its own, else the network default (never a
    /// member's escalation to itself).
    pub fn rule_for(&self, member: &Address) -> Option<&Rule> {
        if member.network() != &self.network {
            return None;
        }
        self.rules.get(member).or_else(|| self.default.as_ref().filter(|d| &d.alternate != member))
    }

    /// What the directory publishes for `member`.
    pub fn route(&self, member: &Address) -> Option<pb::EscalationRoute> {
        self.rule_for(member)
            .map(|r| pb::EscalationRoute { alternate: r.alternate.to_string(), after_ms: r.after_ms })
    }
}

/// `entry` (of local member `member`) with this network's escalation rule
/// attached, as a lookup answers it (local clients and other relays).
pub fn annotate(
    config: &crate::config::RelayConfig,
    member: &Address,
    mut entry: pb::DirectoryEntry,
) -> pb::DirectoryEntry {
    entry.escalation =
        EscalationPolicy::from_config(&config.network, &config.escalation).ok().and_then(|p| p.route(member));
    entry
}

/// The (primary, alternate) pairs of a context, checked: only for URGENT
/// messages, both addresses recipients of the message and of one network,
/// each alternate listed once, never its own primary.
pub fn escalations_of(ctx: &pb::Context) -> Result<Vec<(Address, Address)>, Refusal> {
    let bad = |d: String| Refusal::new(pb::RefusalReason::Policy, d);
    if ctx.escalations.is_empty() {
        return Ok(Vec::new());
    }
    if ctx.priority != pb::Priority::Urgent as i32 {
        return Err(bad("escalation copies are for urgent messages only".into()));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(ctx.escalations.len());
    for e in &ctx.escalations {
        let p = Address::parse_member(&e.primary).map_err(|x| bad(format!("escalation primary: {x}")))?;
        let a = Address::parse_member(&e.alternate).map_err(|x| bad(format!("escalation alternate: {x}")))?;
        for x in [&p, &a] {
            if !ctx.recipients.contains(&x.to_string()) {
                return Err(bad(format!("escalation names {x}, who is not a recipient")));
            }
        }
        if p.network() != a.network() || p == a {
            return Err(bad(format!("{a} cannot be the escalation alternate of {p}")));
        }
        if !seen.insert(a.clone()) {
            return Err(bad(format!("{a} is listed twice as an escalation alternate")));
        }
        out.push((p, a));
    }
    Ok(out)
}

/// One escalation copy held out of the alternate's inbox (persisted by the
/// store as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Original sender.
    pub sender: Address,
    /// Message id.
    pub msg_id: [u8; 16],
    /// Whose acknowledgement cancels it.
    pub primary: Address,
    /// Whose inbox it goes to when released.
    pub alternate: Address,
    /// When this relay started holding it (unix ms).
    pub held_at_ms: i64,
    /// When it is released unless cancelled (unix ms).
    pub release_at_ms: i64,
}

type HeldKey = (Address, [u8; 16], Address);

impl Held {
    fn key(&self) -> HeldKey {
        (self.sender.clone(), self.msg_id, self.alternate.clone())
    }
}

/// The held copies of one relay and their timers.
#[derive(Clone, Debug)]
pub struct Escalations {
    policy: EscalationPolicy,
    held: BTreeMap<HeldKey, Held>,
    due: BTreeSet<(i64, HeldKey)>,
    capacity: usize,
}

impl Escalations {
    /// No copy held yet.
    pub fn new(policy: EscalationPolicy) -> Self {
        Escalations { policy, held: BTreeMap::new(), due: BTreeSet::new(), capacity: MAX_HELD }
    }

    /// The rules.
    pub fn policy(&self) -> &EscalationPolicy {
        &self.policy
    }

    /// Copies held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no copy is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn insert(&mut self, h: Held) {
        let k = h.key();
        if let Some(old) = self.held.insert(k.clone(), h.clone()) {
            self.due.remove(&(old.release_at_ms, k.clone()));
        }
        self.due.insert((h.release_at_ms, k));
    }

    /// Starts holding `alternate`'s copy of (sender, msg id) at `now_ms`.
    /// Refused (POLICY) unless this network's rule for `primary` names
    /// exactly that alternate; STORE_FULL when too many copies are held.
    pub fn hold(
        &mut self,
        now_ms: i64,
        sender: &Address,
        msg_id: [u8; 16],
        primary: &Address,
        alternate: &Address,
    ) -> Result<Held, Refusal> {
        use pb::RefusalReason as R;
        let rule = self.policy.rule_for(primary).ok_or_else(|| {
            Refusal::new(
                R::Policy,
                format!("network {} names no escalation alternate for {primary}", primary.network()),
            )
        })?;
        if &rule.alternate != alternate {
            return Err(Refusal::new(
                R::Policy,
                format!("the escalation alternate of {primary} is {}, not {alternate}", rule.alternate),
            ));
        }
        let h = Held {
            sender: sender.clone(),
            msg_id,
            primary: primary.clone(),
            alternate: alternate.clone(),
            held_at_ms: now_ms,
            release_at_ms: now_ms.saturating_add(rule.after_ms),
        };
        if let Some(old) = self.held.get(&h.key()) {
            return Ok(old.clone());
        }
        if self.held.len() >= self.capacity {
            return Err(Refusal::new(R::StoreFull, "too many escalation copies are held"));
        }
        self.insert(h.clone());
        Ok(h)
    }

    /// `primary` acknowledged (sender, msg id): the copies held for it are
    /// cancelled and returned (delete them, audit ESCALATION_CANCELLED).
    pub fn handle_ack(&mut self, sender: &Address, msg_id: &[u8; 16], primary: &Address) -> Vec<Held> {
        let gone: Vec<HeldKey> = self
            .held
            .iter()
            .filter(|(_, h)| &h.sender == sender && &h.msg_id == msg_id && &h.primary == primary)
            .map(|(k, _)| k.clone())
            .collect();
        gone.into_iter().filter_map(|k| self.remove(&k)).collect()
    }

    fn remove(&mut self, k: &HeldKey) -> Option<Held> {
        let h = self.held.remove(k)?;
        self.due.remove(&(h.release_at_ms, k.clone()));
        Some(h)
    }

    /// Forgets a held copy (its message expired or was purged).
    pub fn forget(&mut self, sender: &Address, msg_id: &[u8; 16], alternate: &Address) -> Option<Held> {
        self.remove(&(sender.clone(), *msg_id, alternate.clone()))
    }

    /// The next copy whose time has come at `now_ms` (removed from the
    /// state: release it, audit ESCALATED, send the ESCALATED receipt).
    pub fn poll_due(&mut self, now_ms: i64) -> Option<Held> {
        let (at, k) = self.due.first()?.clone();
        if at > now_ms {
            return None;
        }
        self.remove(&k)
    }

    /// When the next held copy is due (unix ms).
    pub fn poll_timeout(&self) -> Option<i64> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Loads persisted held copies at start; a copy whose time passed while
    /// the relay was down is due at once.
    pub fn restore(&mut self, items: impl IntoIterator<Item = Held>) {
        for h in items {
            self.insert(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn policy() -> EscalationPolicy {
        let net = NetworkId::new("arinsa").unwrap();
        let rule = |m: &str, alt: &str, after: &str| EscalationConfig {
            member: m.into(),
            alternate: alt.into(),
            after: after.into(),
        };
        EscalationPolicy::from_config(
            &net,
            &[rule("fp@arinsa", "alt@arinsa", "2s"), rule("*", "sec@arinsa", "1h")],
        )
        .unwrap()
    }

    #[test]
    fn rules_and_directory_routes() {
        let p = policy();
        assert_eq!(p.rule_for(&a("fp@arinsa")).unwrap().alternate, a("alt@arinsa"));
        assert_eq!(p.rule_for(&a("other@arinsa")).unwrap().after_ms, 3_600_000);
        assert_eq!(p.rule_for(&a("sec@arinsa")), None, "never its own alternate");
        assert_eq!(p.rule_for(&a("fp@carin")), None, "other networks' members");
        assert_eq!(
            p.route(&a("fp@arinsa")),
            Some(pb::EscalationRoute { alternate: "alt@arinsa".into(), after_ms: 2_000 })
        );
    }

    fn ctx(priority: pb::Priority, esc: &[(&str, &str)]) -> pb::Context {
        pb::Context {
            recipients: vec!["alt@arinsa".into(), "fp@arinsa".into(), "x@carin".into()],
            priority: priority as i32,
            escalations: esc
                .iter()
                .map(|(p, a)| pb::Escalation { primary: (*p).into(), alternate: (*a).into() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn context_escalations_are_checked() {
        use pb::Priority::{Normal, Urgent};
        assert_eq!(escalations_of(&ctx(Normal, &[])), Ok(vec![]));
        assert_eq!(
            escalations_of(&ctx(Urgent, &[("fp@arinsa", "alt@arinsa")])),
            Ok(vec![(a("fp@arinsa"), a("alt@arinsa"))])
        );
        for (p, esc) in [
            (Normal, [("fp@arinsa", "alt@arinsa")]),
            (Urgent, [("fp@arinsa", "nobody@arinsa")]),
            (Urgent, [("fp@arinsa", "fp@arinsa")]),
            (Urgent, [("x@carin", "alt@arinsa")]),
            (Urgent, [("*@arinsa", "alt@arinsa")]),
        ] {
            assert!(escalations_of(&ctx(p, &esc)).is_err(), "{esc:?}");
        }
        let twice = ctx(Urgent, &[("fp@arinsa", "alt@arinsa"), ("fp@arinsa", "alt@arinsa")]);
        assert!(escalations_of(&twice).is_err());
    }

    /// The timer on a virtual clock: released at exactly `after`, cancelled
    /// by the primary's ack, restored after a restart.
    #[test]
    fn virtual_clock_release_cancel_and_restore() {
        let mut e = Escalations::new(policy());
        let (s, fp, alt) = (a("s@carin"), a("fp@arinsa"), a("alt@arinsa"));
        let wrong = e.hold(0, &s, [1; 16], &fp, &a("sec@arinsa")).unwrap_err();
        assert_eq!(wrong.reason, pb::RefusalReason::Policy);
        assert!(wrong.detail.contains("alt@arinsa"), "{wrong}");

        let h1 = e.hold(1_000, &s, [1; 16], &fp, &alt).unwrap();
        assert_eq!(h1.release_at_ms, 3_000);
        assert_eq!(e.hold(1_500, &s, [1; 16], &fp, &alt).unwrap(), h1, "a duplicate keeps its timer");
        e.hold(1_200, &s, [2; 16], &fp, &alt).unwrap();
        e.hold(1_100, &s, [3; 16], &fp, &alt).unwrap();
        assert_eq!(e.poll_timeout(), Some(3_000));
        assert_eq!(e.poll_due(2_999), None);

        // The primary acks message 2 in time: cancelled, never due.
        let cancelled = e.handle_ack(&s, &[2; 16], &fp);
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].msg_id, [2; 16]);
        assert!(e.handle_ack(&s, &[2; 16], &fp).is_empty());
        assert!(e.handle_ack(&s, &[3; 16], &alt).is_empty(), "only the primary's ack cancels");

        // A restart: the state is rebuilt from the persisted copies.
        let persisted: Vec<Held> = e.held.values().cloned().collect();
        let mut e = Escalations::new(policy());
        e.restore(persisted);
        assert_eq!(e.len(), 2);

        assert_eq!(e.poll_due(3_000).map(|h| h.msg_id), Some([1; 16]));
        assert_eq!(e.poll_due(3_050), None);
        assert_eq!(e.poll_timeout(), Some(3_100));
        assert_eq!(e.poll_due(10_000).map(|h| h.msg_id), Some([3; 16]));
        assert_eq!((e.poll_due(10_000), e.poll_timeout(), e.is_empty()), (None, None, true));
        // The ack after the release changes nothing.
        assert!(e.handle_ack(&s, &[1; 16], &fp).is_empty());
    }

    #[test]
    fn forget_and_capacity() {
        let mut e = Escalations::new(policy());
        e.capacity = 1;
        let (s, fp, alt) = (a("s@carin"), a("fp@arinsa"), a("alt@arinsa"));
        e.hold(0, &s, [1; 16], &fp, &alt).unwrap();
        let full = e.hold(0, &s, [2; 16], &fp, &alt).unwrap_err();
        assert_eq!(full.reason, pb::RefusalReason::StoreFull);
        assert!(e.forget(&s, &[1; 16], &alt).is_some());
        assert_eq!(e.poll_timeout(), None);
    }
}
