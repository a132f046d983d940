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
//!    (one copy per alternate, waiting for each primary that names it);
//! 4. a primary's acknowledgement before its time withdraws it
//!    ([`Escalations::handle_ack`], audited ESCALATION_CANCELLED; the copy
//!    is dropped once no primary is left); otherwise, when the first
//!    remaining primary is overdue, [`Escalations::poll_due`] yields it: the
//!    store puts it into the alternate's inbox and, for each primary it
//!    waited for, audits ESCALATED and sends the sender a relay-signed
//!    ESCALATED receipt.

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
/// each primary listed once (one alternate may serve several), never its
/// own primary.
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
        if !seen.insert(p.clone()) {
            return Err(bad(format!("{p} is listed twice as an escalation primary")));
        }
        out.push((p, a));
    }
    Ok(out)
}

/// One escalation copy held out of the alternate's inbox (persisted by the
/// store as JSON). One copy stands in for every primary of the message that
/// names this alternate (a network default rule gives many members one
/// alternate): it is released when the first of them is overdue and
/// cancelled when all of them have acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "HeldRecord")]
pub struct Held {
    /// Original sender.
    pub sender: Address,
    /// Message id.
    pub msg_id: [u8; 16],
    /// Whose inbox it goes to when released.
    pub alternate: Address,
    /// When this relay started holding it (unix ms).
    pub held_at_ms: i64,
    /// The primaries whose acknowledgement it still waits for, in the order
    /// they were added, each with its own time; never empty while held.
    pub waiting: Vec<Waiting>,
}

/// A primary a held copy waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Whose acknowledgement withdraws it.
    pub primary: Address,
    /// When the copy is released unless this primary acknowledges (unix ms).
    pub release_at_ms: i64,
}

/// A held copy as stored: the current shape, or the one of relays before a
/// copy could wait for several primaries (`primary`, `release_at_ms`).
#[derive(Deserialize)]
struct HeldRecord {
    sender: Address,
    msg_id: [u8; 16],
    alternate: Address,
    held_at_ms: i64,
    #[serde(default)]
    waiting: Vec<Waiting>,
    #[serde(default)]
    primary: Option<Address>,
    #[serde(default)]
    release_at_ms: Option<i64>,
}

impl From<HeldRecord> for Held {
    fn from(r: HeldRecord) -> Held {
        let mut waiting = r.waiting;
        if let (Some(primary), Some(release_at_ms)) = (r.primary, r.release_at_ms)
            && !waiting.iter().any(|w| w.primary == primary)
        {
            waiting.push(Waiting { primary, release_at_ms });
        }
        Held { sender: r.sender, msg_id: r.msg_id, alternate: r.alternate, held_at_ms: r.held_at_ms, waiting }
    }
}

type HeldKey = (Address, [u8; 16], Address);

impl Held {
    fn key(&self) -> HeldKey {
        (self.sender.clone(), self.msg_id, self.alternate.clone())
    }

    /// When it is released: the earliest time of the primaries it waits for.
    pub fn release_at_ms(&self) -> i64 {
        self.waiting.iter().map(|w| w.release_at_ms).min().unwrap_or(i64::MAX)
    }

    /// Whether it waits for `primary`'s acknowledgement.
    pub fn waits_for(&self, primary: &Address) -> bool {
        self.waiting.iter().any(|w| &w.primary == primary)
    }

    /// The primaries it waits for, for messages: "a@x, b@x".
    pub fn primaries(&self) -> String {
        self.waiting.iter().map(|w| w.primary.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// What one primary's acknowledgement did to a held copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawn {
    /// The copy without that primary (`waiting` lists the others).
    pub copy: Held,
    /// No primary is left: the copy is no longer held (delete it); else
    /// it stays held for the others (store `copy`).
    pub dropped: bool,
}

/// The held copies of one relay and their timers.
#[derive(Clone, Debug)]
pub struct Escalations {
    policy: EscalationPolicy,
    held: BTreeMap<HeldKey, Held>,
    due: BTreeSet<(i64, HeldKey)>,
    /// The alternates held per message, so an Ack (every Ack of the relay
    /// asks) looks at its own message's copies, not at every copy held.
    by_msg: BTreeMap<(Address, [u8; 16]), BTreeSet<Address>>,
    capacity: usize,
}

impl Escalations {
    /// No copy held yet.
    pub fn new(policy: EscalationPolicy) -> Self {
        Escalations {
            policy,
            held: BTreeMap::new(),
            due: BTreeSet::new(),
            by_msg: BTreeMap::new(),
            capacity: MAX_HELD,
        }
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
            self.due.remove(&(old.release_at_ms(), k.clone()));
        }
        self.by_msg.entry((k.0.clone(), k.1)).or_default().insert(k.2.clone());
        self.due.insert((h.release_at_ms(), k));
    }

    /// Holds `alternate`'s copy of (sender, msg id) for `primary` from
    /// `now_ms` (a copy already held for other primaries waits for this one
    /// too; one already waiting for it keeps its time). Refused (POLICY)
    /// unless this network's rule for `primary` names exactly that
    /// alternate; STORE_FULL when too many copies are held. Returns the copy
    /// as it is now held.
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
        let waiting =
            Waiting { primary: primary.clone(), release_at_ms: now_ms.saturating_add(rule.after_ms) };
        let key = (sender.clone(), msg_id, alternate.clone());
        if let Some(old) = self.held.get(&key) {
            if old.waits_for(primary) {
                return Ok(old.clone());
            }
            let mut h = old.clone();
            h.waiting.push(waiting);
            self.insert(h.clone());
            return Ok(h);
        }
        let h = Held {
            sender: sender.clone(),
            msg_id,
            alternate: alternate.clone(),
            held_at_ms: now_ms,
            waiting: vec![waiting],
        };
        if self.held.len() >= self.capacity {
            return Err(Refusal::new(R::StoreFull, "too many escalation copies are held"));
        }
        self.insert(h.clone());
        Ok(h)
    }

    /// `primary` acknowledged (sender, msg id): every copy held for it stops
    /// waiting for it; a copy left waiting for nobody is cancelled. Returns
    /// what changed (store or delete each copy, audit ESCALATION_CANCELLED).
    pub fn handle_ack(&mut self, sender: &Address, msg_id: &[u8; 16], primary: &Address) -> Vec<Withdrawn> {
        let msg = (sender.clone(), *msg_id);
        let waiting: Vec<HeldKey> = self
            .by_msg
            .get(&msg)
            .into_iter()
            .flatten()
            .map(|alt| (msg.0.clone(), msg.1, alt.clone()))
            .filter(|k| self.held.get(k).is_some_and(|h| h.waits_for(primary)))
            .collect();
        waiting.into_iter().filter_map(|k| self.withdraw(&k, primary)).collect()
    }

    /// Stops copy `k` waiting for `primary` (dropped if nobody is left).
    fn withdraw(&mut self, k: &HeldKey, primary: &Address) -> Option<Withdrawn> {
        let mut copy = self.remove(k)?;
        copy.waiting.retain(|w| &w.primary != primary);
        let dropped = copy.waiting.is_empty();
        if !dropped {
            self.insert(copy.clone());
        }
        Some(Withdrawn { copy, dropped })
    }

    fn remove(&mut self, k: &HeldKey) -> Option<Held> {
        let h = self.held.remove(k)?;
        self.due.remove(&(h.release_at_ms(), k.clone()));
        let msg = (k.0.clone(), k.1);
        if let Some(alts) = self.by_msg.get_mut(&msg) {
            alts.remove(&k.2);
            if alts.is_empty() {
                self.by_msg.remove(&msg);
            }
        }
        Some(h)
    }

    /// Forgets a held copy (its message expired or was purged).
    pub fn forget(&mut self, sender: &Address, msg_id: &[u8; 16], alternate: &Address) -> Option<Held> {
        self.remove(&(sender.clone(), *msg_id, alternate.clone()))
    }

    /// The next copy whose time has come at `now_ms`: the first of its
    /// primaries is overdue (removed from the state: release it, audit
    /// ESCALATED and send an ESCALATED receipt for each primary it waited for).
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
        // One alternate may serve two primaries; a primary has one alternate.
        let mut shared = ctx(Urgent, &[("fp@arinsa", "alt@arinsa"), ("other@arinsa", "alt@arinsa")]);
        shared.recipients.push("other@arinsa".into());
        assert_eq!(escalations_of(&shared).map(|v| v.len()), Ok(2));
        let mut two_alts = ctx(Urgent, &[("fp@arinsa", "alt@arinsa"), ("fp@arinsa", "other@arinsa")]);
        two_alts.recipients.push("other@arinsa".into());
        let e = escalations_of(&two_alts).unwrap_err();
        assert!(e.detail.contains("fp@arinsa is listed twice"), "{e}");
    }

    /// One copy for two primaries of the network default: each has its own
    /// time; the first primary's ack leaves it waiting for the second, and
    /// it is released when the second is overdue, with both still named.
    #[test]
    fn one_copy_waits_for_every_primary_that_names_its_alternate() {
        let mut e = Escalations::new(policy());
        let (s, fp, other, sec) = (a("s@carin"), a("fp@arinsa"), a("other@arinsa"), a("sec@arinsa"));
        // fp's own rule names alt@arinsa (2 s): not sec, whose copy is the default's.
        assert!(e.hold(0, &s, [1; 16], &fp, &sec).is_err());
        let b = a("b@arinsa");
        let h = e.hold(1_000, &s, [1; 16], &other, &sec).unwrap();
        assert_eq!((h.release_at_ms(), e.len()), (3_601_000, 1));
        let h = e.hold(2_000, &s, [1; 16], &b, &sec).unwrap();
        assert_eq!(
            (h.waiting.len(), h.release_at_ms(), e.len()),
            (2, 3_601_000, 1),
            "one copy, two primaries"
        );
        assert_eq!(e.hold(5_000, &s, [1; 16], &b, &sec).unwrap(), h, "a duplicate keeps both times");
        assert_eq!(h.primaries(), "other@arinsa, b@arinsa");

        // `other` acknowledges: the copy now waits for `b` alone, due at b's time.
        let w = e.handle_ack(&s, &[1; 16], &other);
        assert_eq!(w.len(), 1);
        assert!(!w[0].dropped);
        assert_eq!(w[0].copy.primaries(), "b@arinsa");
        assert_eq!(e.poll_timeout(), Some(3_602_000));
        assert!(e.handle_ack(&s, &[1; 16], &other).is_empty(), "acknowledged once");
        assert_eq!(e.poll_due(3_601_999), None);
        let released = e.poll_due(3_602_000).unwrap();
        assert_eq!(released.waiting, vec![Waiting { primary: b.clone(), release_at_ms: 3_602_000 }]);

        // Both acknowledge in time: dropped at the second.
        e.hold(0, &s, [2; 16], &other, &sec).unwrap();
        e.hold(0, &s, [2; 16], &b, &sec).unwrap();
        assert!(!e.handle_ack(&s, &[2; 16], &b)[0].dropped);
        let last = e.handle_ack(&s, &[2; 16], &other);
        assert!(last[0].dropped && last[0].copy.waiting.is_empty());
        assert!(e.is_empty() && e.poll_timeout().is_none() && e.by_msg.is_empty());
    }

    /// A copy stored by a relay from before copies could wait for several
    /// primaries (`primary`, `release_at_ms`) loads as one waiting primary.
    #[test]
    fn a_held_copy_of_the_earlier_shape_still_loads() {
        let old = serde_json::json!({
            "sender": "s@carin", "msg_id": vec![7u8; 16], "primary": "fp@arinsa", "alternate": "alt@arinsa",
            "held_at_ms": 1_000, "release_at_ms": 3_000,
        });
        let h: Held = serde_json::from_value(old).unwrap();
        assert_eq!(h.waiting, vec![Waiting { primary: a("fp@arinsa"), release_at_ms: 3_000 }]);
        assert_eq!(h.release_at_ms(), 3_000);
        let again: Held = serde_json::from_slice(&serde_json::to_vec(&h).unwrap()).unwrap();
        assert_eq!(again, h, "the current shape round-trips");
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
        assert_eq!(h1.release_at_ms(), 3_000);
        assert_eq!(e.hold(1_500, &s, [1; 16], &fp, &alt).unwrap(), h1, "a duplicate keeps its timer");
        e.hold(1_200, &s, [2; 16], &fp, &alt).unwrap();
        e.hold(1_100, &s, [3; 16], &fp, &alt).unwrap();
        assert_eq!(e.poll_timeout(), Some(3_000));
        assert_eq!(e.poll_due(2_999), None);

        // The primary acks message 2 in time: cancelled, never due.
        let cancelled = e.handle_ack(&s, &[2; 16], &fp);
        assert_eq!(cancelled.len(), 1);
        assert_eq!((cancelled[0].copy.msg_id, cancelled[0].dropped), ([2; 16], true));
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
