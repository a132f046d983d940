//! Per-network policy and limits as pure checks. Each check returns
//! `Err(Refusal)` with the reason code of the non-delivery receipt and a
//! human detail naming the rule.
//!
//! Semantics (the README repeats them):
//! - `policy.send_to` (empty = all): networks THIS network's members may send
//!   to. Applies at the sender's own relay, per remote recipient (`POLICY`).
//!   Transit traffic at a hub is not subject to it.
//! - `policy.receive_from` (empty = all): networks whose members may send to
//!   THIS network's members. Applies at the recipient's relay, per local
//!   recipient (`POLICY`). A hub's transit traffic is not subject to it.
//! - `policy.outbound_handling` (empty = all): handling codes (`H0`..`H3`) a
//!   message from THIS network's members may carry to another network
//!   (`HANDLING`), checked at the sender's relay.
//! - `policy.peer_envelopes_per_minute` (0 = unlimited): token bucket per
//!   peer. Exceeding it is transient: the driver answers the transfer with
//!   RETRY (the peer keeps it and backs off), never a refusal.
//! - `limits.sends_per_minute`: token bucket per local sender; the client
//!   gets RESOURCE_EXHAUSTED (`RATE_LIMITED`) and nothing is accepted.
//! - `limits.max_message_bytes` (`TOO_LARGE`), `limits.max_lifetime_secs`
//!   (`POLICY`), `limits.max_clock_skew_secs` (created in the future beyond
//!   it: `POLICY`) and expiry (`EXPIRED`) apply at every hop.
//!
//! - H2 forwarding ([`check_forward`], at the forwarder's relay when a
//!   focal point sends): a message whose context has `forward_of` with
//!   `original_handling` H2 and a recipient outside the forwarder's network
//!   needs a valid release signed by the original sender (`HANDLING`).
//!   Exact semantics and limits: `docs/HANDLING.md`.
//!
//! - H0 ([`check_h0`], at the relay of the recipients: on a local Send and
//!   on an envelope from a peer): refused (`HANDLING`) when a recipient this
//!   relay delivers to has a directory entry saying `law_enforcement = false`.

use std::collections::BTreeSet;

use focal_proto::{Address, NetworkId, pb};

use super::ratelimit::RateLimiter;
use super::routing::RouteInput;
use super::{CoreError, Refusal};
use crate::config::{Limits, PolicyConfig};

/// Most distinct senders or peers with a live rate bucket.
const MAX_RATE_KEYS: usize = 100_000;

/// Parses `H0`..`H3`.
pub fn parse_handling(s: &str) -> Option<pb::HandlingCode> {
    match s {
        "H0" => Some(pb::HandlingCode::H0),
        "H1" => Some(pb::HandlingCode::H1),
        "H2" => Some(pb::HandlingCode::H2),
        "H3" => Some(pb::HandlingCode::H3),
        _ => None,
    }
}

/// Display name `H0`..`H3` of a handling code.
pub fn handling_name(h: pb::HandlingCode) -> &'static str {
    match h {
        pb::HandlingCode::H0 => "H0",
        pb::HandlingCode::H1 => "H1",
        pb::HandlingCode::H2 => "H2",
        pb::HandlingCode::H3 => "H3",
        pb::HandlingCode::Unspecified => "unspecified",
    }
}

/// One network's policy at its relay, with its rate-limit state.
#[derive(Clone, Debug)]
pub struct Policy {
    network: NetworkId,
    send_to: Option<BTreeSet<NetworkId>>,
    receive_from: Option<BTreeSet<NetworkId>>,
    outbound_handling: Option<BTreeSet<pb::HandlingCode>>,
    max_message_bytes: u64,
    max_lifetime_ms: i64,
    max_clock_skew_ms: i64,
    per_sender: RateLimiter<Address>,
    per_peer: RateLimiter<String>,
}

fn secs_to_ms(key: &str, secs: u64) -> Result<i64, CoreError> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| CoreError::config(key, "too large"))
}

impl Policy {
    /// The policy of `network` from its config sections.
    pub fn new(network: NetworkId, policy: &PolicyConfig, limits: &Limits) -> Result<Self, CoreError> {
        let set = |v: &[NetworkId]| (!v.is_empty()).then(|| v.iter().cloned().collect::<BTreeSet<_>>());
        let mut handling = BTreeSet::new();
        for (i, s) in policy.outbound_handling.iter().enumerate() {
            let h = parse_handling(s).ok_or_else(|| {
                CoreError::config(
                    format!("policy.outbound_handling[{i}]"),
                    format!("`{s}` is not one of H0, H1, H2, H3"),
                )
            })?;
            handling.insert(h);
        }
        if limits.max_message_bytes == 0 {
            return Err(CoreError::config("limits.max_message_bytes", "must be above 0"));
        }
        if limits.max_lifetime_secs == 0 {
            return Err(CoreError::config("limits.max_lifetime_secs", "must be above 0"));
        }
        Ok(Policy {
            network,
            send_to: set(&policy.send_to),
            receive_from: set(&policy.receive_from),
            outbound_handling: (!handling.is_empty()).then_some(handling),
            max_message_bytes: limits.max_message_bytes,
            max_lifetime_ms: secs_to_ms("limits.max_lifetime_secs", limits.max_lifetime_secs)?,
            max_clock_skew_ms: secs_to_ms("limits.max_clock_skew_secs", limits.max_clock_skew_secs)?,
            per_sender: RateLimiter::new(limits.sends_per_minute, MAX_RATE_KEYS),
            per_peer: RateLimiter::new(policy.peer_envelopes_per_minute, MAX_RATE_KEYS),
        })
    }

    /// Allowed clock skew (ms); also the grace the seen-set keeps entries
    /// after expiry.
    pub fn max_clock_skew_ms(&self) -> i64 {
        self.max_clock_skew_ms
    }

    /// Size, lifetime, clock skew and expiry of an envelope, at any hop.
    pub fn check_envelope(&self, now_ms: i64, e: &RouteInput) -> Result<(), Refusal> {
        use pb::RefusalReason as R;
        if e.payload_size > self.max_message_bytes {
            let d = format!(
                "payload of {} bytes exceeds the limit of {} bytes",
                e.payload_size, self.max_message_bytes
            );
            return Err(Refusal::new(R::TooLarge, d));
        }
        if e.expires_at_ms <= e.created_at_ms {
            return Err(Refusal::new(R::Policy, "expires_at is not after created_at"));
        }
        if e.expires_at_ms <= now_ms {
            return Err(Refusal::new(
                R::Expired,
                format!("expired at {} ms (now {now_ms} ms)", e.expires_at_ms),
            ));
        }
        // Checked: signed times anywhere in i64 must not wrap past the limit.
        if e.expires_at_ms.checked_sub(e.created_at_ms).is_none_or(|lifetime| lifetime > self.max_lifetime_ms)
        {
            let d = format!("lifetime exceeds the maximum of {} s", self.max_lifetime_ms / 1000);
            return Err(Refusal::new(R::Policy, d));
        }
        if e.created_at_ms > now_ms.saturating_add(self.max_clock_skew_ms) {
            let d = format!("created_at is more than {} s in the future", self.max_clock_skew_ms / 1000);
            return Err(Refusal::new(R::Policy, d));
        }
        Ok(())
    }

    /// Per-sender rate of local clients' sends.
    pub fn check_sender_rate(&mut self, sender: &Address, now_ms: i64) -> Result<(), Refusal> {
        self.per_sender.try_take(sender, now_ms).map_err(|wait| {
            let d =
                format!("{sender} exceeds the send rate of this network; retry in {} s", (wait + 999) / 1000);
            Refusal::new(pb::RefusalReason::RateLimited, d)
        })
    }

    /// Per-peer rate of incoming transfers (answer RETRY when refused).
    pub fn check_peer_rate(&mut self, peer: &str, now_ms: i64) -> Result<(), Refusal> {
        self.per_peer.try_take(&peer.to_owned(), now_ms).map_err(|wait| {
            let d = format!("peer {peer} exceeds its transfer rate; retry in {} s", (wait + 999) / 1000);
            Refusal::new(pb::RefusalReason::RateLimited, d)
        })
    }

    /// Whether `recipient`'s share may proceed, given where sender and
    /// recipient are: outbound rules when the sender is a member of this
    /// network and the recipient is not, inbound rules when the recipient is
    /// a member and the sender is not; transit is not restricted.
    pub fn check_recipient(
        &self,
        sender: &Address,
        recipient: &Address,
        handling: pb::HandlingCode,
    ) -> Result<(), Refusal> {
        use pb::RefusalReason as R;
        let (from, to) = (sender.network(), recipient.network());
        if from == to {
            return Ok(());
        }
        if *from == self.network {
            if let Some(allowed) = &self.send_to
                && !allowed.contains(to)
            {
                return Err(Refusal::new(R::Policy, format!("network {from} does not send to network {to}")));
            }
            if let Some(allowed) = &self.outbound_handling
                && !allowed.contains(&handling)
            {
                let d = format!("handling code {} may not leave network {from}", handling_name(handling));
                return Err(Refusal::new(R::Handling, d));
            }
        }
        if *to == self.network
            && let Some(allowed) = &self.receive_from
            && !allowed.contains(from)
        {
            return Err(Refusal::new(
                R::Policy,
                format!("network {to} does not receive from network {from}"),
            ));
        }
        Ok(())
    }

    /// Forgets rate buckets that have refilled (call now and then).
    pub fn prune(&mut self, now_ms: i64) {
        self.per_sender.prune(now_ms);
        self.per_peer.prune(now_ms);
    }
}

/// The H2 rule for a message sent by a member of `own` (the forwarder's
/// network): when `ctx.forward_of` is set with `original_handling` H2 and any
/// of `recipients` is outside `own`, `forward_of.release` must be a release
/// signed (tag `focal/v1/release\0`) by the certificate of the original
/// sender (valid at `now` under `trust`: chain, CRL, role fp, address ==
/// `original_sender`), for `original_msg_id`, with `originator ==
/// original_sender`, not expired at `now_ms`, whose `permitted_networks`
/// (empty = any) include every recipient network outside `own`.
pub fn check_forward(
    own: &NetworkId,
    ctx: &pb::Context,
    recipients: &[Address],
    trust: &focal_certs::TrustStore,
    now: std::time::SystemTime,
    now_ms: i64,
) -> Result<(), Refusal> {
    use focal_proto::signed::{TAG_RELEASE, verify_blob};
    use prost::Message;
    let Some(fwd) = &ctx.forward_of else { return Ok(()) };
    if fwd.original_handling != pb::HandlingCode::H2 as i32 {
        return Ok(());
    }
    let outside: BTreeSet<&NetworkId> =
        recipients.iter().map(Address::network).filter(|n| *n != own).collect();
    if outside.is_empty() {
        return Ok(());
    }
    let orig = hex::encode(&fwd.original_msg_id);
    let refuse = |why: String| {
        let nets: Vec<&str> = outside.iter().map(|n| n.as_str()).collect();
        Refusal::new(
            pb::RefusalReason::Handling,
            format!(
                "HANDLING: forward of H2 message {orig} from {} to network(s) {} needs a release signed by the originator: {why}",
                fwd.original_sender,
                nets.join(", ")
            ),
        )
    };
    let Some(blob) = &fwd.release else { return Err(refuse("no release given".into())) };
    verify_blob(TAG_RELEASE, blob).map_err(|e| refuse(e.to_string()))?;
    let cert = rustls_pki_types::CertificateDer::from(blob.signer_cert.as_slice());
    let signer = focal_certs::verify_peer(trust, &cert, &[], now)
        .map_err(|e| refuse(format!("release signer certificate refused: {e}")))?;
    if signer.identity.role != focal_proto::Role::Fp
        || signer.identity.address().to_string() != fwd.original_sender
    {
        return Err(refuse(format!("release is signed by {}, not by the originator", signer.identity)));
    }
    let rel = pb::Release::decode(blob.body.as_slice()).map_err(|e| refuse(format!("release body: {e}")))?;
    if rel.msg_id != fwd.original_msg_id {
        return Err(refuse(format!("release is for message {}", hex::encode(&rel.msg_id))));
    }
    if rel.originator != fwd.original_sender {
        return Err(refuse(format!("release names originator {}", rel.originator)));
    }
    if rel.expires_at_ms <= now_ms {
        return Err(refuse(format!("release expired at {} ms", rel.expires_at_ms)));
    }
    if !rel.permitted_networks.is_empty()
        && let Some(n) = outside.iter().find(|n| !rel.permitted_networks.iter().any(|p| p == n.as_str()))
    {
        return Err(refuse(format!("release does not permit network {n}")));
    }
    Ok(())
}

/// The H0 rule at the recipients' relay: an H0 message is refused when any
/// of `local` (the recipients this relay delivers to) is, according to
/// `law_enforcement` (its directory entry's member category; `None` = no
/// entry), not a law-enforcement member. The whole copy is refused.
pub fn check_h0(
    handling: i32,
    local: &[Address],
    law_enforcement: impl Fn(&Address) -> Option<bool>,
) -> Result<(), Refusal> {
    if handling != pb::HandlingCode::H0 as i32 {
        return Ok(());
    }
    match local.iter().find(|a| law_enforcement(a) == Some(false)) {
        Some(a) => Err(Refusal::new(
            pb::RefusalReason::Handling,
            format!("HANDLING: H0 message for {a}, who is not a law-enforcement member (directory entry)"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h0_refuses_non_law_enforcement_recipients_only() {
        let le = |x: &Address| match x.name() {
            "police" => Some(true),
            "fiu" => Some(false),
            _ => None,
        };
        let h0 = pb::HandlingCode::H0 as i32;
        assert!(check_h0(h0, &[a("police@carin"), a("unknown@carin")], le).is_ok());
        let e = check_h0(h0, &[a("police@carin"), a("fiu@carin")], le).unwrap_err();
        assert_eq!(e.reason, pb::RefusalReason::Handling);
        assert!(e.detail.contains("fiu@carin"), "{}", e.detail);
        assert!(check_h0(pb::HandlingCode::H1 as i32, &[a("fiu@carin")], le).is_ok());
    }

    fn n(s: &str) -> NetworkId {
        NetworkId::new(s).unwrap()
    }
    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }
    fn input(created: i64, expires: i64, size: u64) -> RouteInput {
        RouteInput {
            msg_id: [0; 16],
            sender: a("s@carin"),
            recipients: vec![a("r@arinsa")],
            deliver_to: vec![],
            hops: vec![],
            created_at_ms: created,
            expires_at_ms: expires,
            priority: pb::Priority::Normal,
            handling: pb::HandlingCode::H1,
            payload_size: size,
        }
    }

    #[test]
    fn envelope_limits() {
        let limits = Limits {
            max_message_bytes: 100,
            max_lifetime_secs: 3600,
            max_clock_skew_secs: 60,
            ..Limits::default()
        };
        let p = Policy::new(n("carin"), &PolicyConfig::default(), &limits).unwrap();
        let now = 1_000_000;
        assert!(p.check_envelope(now, &input(now, now + 1000, 100)).is_ok());
        let r = |e: RouteInput| p.check_envelope(now, &e).unwrap_err();
        assert_eq!(r(input(now, now + 1000, 101)).reason, pb::RefusalReason::TooLarge);
        assert_eq!(r(input(now - 2000, now, 1)).reason, pb::RefusalReason::Expired);
        assert!(r(input(now, now + 3_600_001, 1)).detail.contains("lifetime"));
        assert!(r(input(now + 60_001, now + 70_000, 1)).detail.contains("future"));
        assert!(p.check_envelope(now, &input(now + 60_000, now + 70_000, 1)).is_ok(), "skew is inclusive");
        assert!(r(input(now, now, 1)).detail.contains("not after"));
        // Signed times at the ends of i64: the lifetime does not wrap (a
        // panic in debug builds, a pass in release ones before the fix).
        assert!(r(input(i64::MIN, i64::MAX, 1)).detail.contains("lifetime"));
        assert!(r(input(i64::MIN, now + 1000, 1)).detail.contains("lifetime"));
    }

    #[test]
    fn networks_and_handling_codes() {
        let cfg = PolicyConfig {
            send_to: vec![n("gfp"), n("arinsa")],
            receive_from: vec![n("gfp")],
            outbound_handling: vec!["H1".into(), "H3".into()],
            peer_envelopes_per_minute: 0,
        };
        let p = Policy::new(n("carin"), &cfg, &Limits::default()).unwrap();
        let h1 = pb::HandlingCode::H1;
        assert!(p.check_recipient(&a("s@carin"), &a("r@arinsa"), h1).is_ok());
        assert!(
            p.check_recipient(&a("s@carin"), &a("r@carin"), pb::HandlingCode::H2).is_ok(),
            "local is free"
        );
        let e = p.check_recipient(&a("s@carin"), &a("r@rrag"), h1).unwrap_err();
        assert_eq!(
            (e.reason, e.detail.as_str()),
            (pb::RefusalReason::Policy, "network carin does not send to network rrag")
        );
        let e = p.check_recipient(&a("s@carin"), &a("r@gfp"), pb::HandlingCode::H2).unwrap_err();
        assert_eq!(e.reason, pb::RefusalReason::Handling);
        assert!(p.check_recipient(&a("s@gfp"), &a("r@carin"), pb::HandlingCode::H2).is_ok());
        let e = p.check_recipient(&a("s@arinsa"), &a("r@carin"), h1).unwrap_err();
        assert!(e.detail.contains("does not receive from network arinsa"));
        assert!(p.check_recipient(&a("s@arinsa"), &a("r@rrag"), h1).is_ok(), "transit is not restricted");
        let bad = PolicyConfig { outbound_handling: vec!["h1".into()], ..PolicyConfig::default() };
        let err = Policy::new(n("carin"), &bad, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("policy.outbound_handling[0]") && err.contains("`h1`"), "{err}");
    }

    #[test]
    fn rates() {
        let limits = Limits { sends_per_minute: 2, ..Limits::default() };
        let cfg = PolicyConfig { peer_envelopes_per_minute: 1, ..PolicyConfig::default() };
        let mut p = Policy::new(n("carin"), &cfg, &limits).unwrap();
        let s = a("s@carin");
        p.check_sender_rate(&s, 0).unwrap();
        p.check_sender_rate(&s, 0).unwrap();
        let e = p.check_sender_rate(&s, 0).unwrap_err();
        assert_eq!(e.reason, pb::RefusalReason::RateLimited);
        assert!(e.detail.contains("retry in 30 s"), "{}", e.detail);
        p.check_sender_rate(&a("t@carin"), 0).unwrap();
        p.check_peer_rate("relay-gfp", 0).unwrap();
        assert!(p.check_peer_rate("relay-gfp", 59_999).is_err());
        p.check_peer_rate("relay-gfp", 60_000).unwrap();
        p.prune(10 * 60_000);
    }
}
