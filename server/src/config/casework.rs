//! Case-work keys of the relay config (issue 6): escalation of unacknowledged
//! urgent requests to an alternate focal point, and who may broadcast.
//!
//! ```toml
//! # One rule per member; `member = "*"` is the network default (members
//! # without their own rule). `after`: "90s", "30m", "2h", "1d".
//! [[escalation]]
//! member = "fp@arinsa"
//! alternate = "secretariat@arinsa"
//! after = "2h"
//!
//! [broadcast]
//! # Members of THIS network that may broadcast to `*@<other network>`
//! # (addresses of this network; empty = every member).
//! allow_send = ["secretariat@arinsa"]
//! # Who of OTHER networks may broadcast into `*@<this network>`: addresses
//! # (`name@net`) or whole networks (`net`); empty = everyone.
//! allow_from = ["law-enforcement@gfp", "carin"]
//! ```
//! Semantics: README.md, "Case work".

use std::collections::BTreeSet;

use focal_proto::{Address, NetworkId};
use serde::{Deserialize, Serialize};

/// One `[[escalation]]` rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// The primary focal point (`name@<this network>`), or `*` for the
    /// network default.
    pub member: String,
    /// The alternate focal point (`name@<this network>`).
    pub alternate: String,
    /// How long the primary has to acknowledge an urgent request: a number
    /// with unit `s`, `m`, `h` or `d`.
    pub after: String,
}

/// The `[broadcast]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BroadcastConfig {
    /// Members of this network that may broadcast to other networks
    /// (addresses of this network; empty = every member).
    pub allow_send: Vec<String>,
    /// Senders of other networks that may broadcast into this network:
    /// addresses or network ids (empty = everyone).
    pub allow_from: Vec<String>,
}

/// Parses a duration such as `90s`, `30m`, `2h`, `1d` into milliseconds
/// (above zero, at most 365 days).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| format!("expected a number and a unit (s, m, h, d), got {s:?}"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit in {s:?} (expected s, m, h or d)")),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(|| format!("{s:?} is too long"))?;
    if ms <= 0 {
        return Err("must be above zero".into());
    }
    if ms > 365 * 86_400_000 {
        return Err(format!("{s:?} is longer than 365 days"));
    }
    Ok(ms)
}

fn member_of(network: &NetworkId, s: &str) -> Result<Address, String> {
    let a = Address::parse_member(s).map_err(|e| e.to_string())?;
    if a.network() != network {
        return Err(format!("{a} is not a member of this relay's network {network}"));
    }
    Ok(a)
}

/// Checks `[[escalation]]` and `[broadcast]`; errors are (dotted key, reason).
pub(crate) fn validate(
    network: &NetworkId,
    escalation: &[EscalationConfig],
    broadcast: &BroadcastConfig,
) -> Result<(), (String, String)> {
    let mut members = BTreeSet::new();
    for (i, e) in escalation.iter().enumerate() {
        let key = |k: &str| format!("escalation[{i}].{k}");
        if e.member != "*" {
            member_of(network, &e.member).map_err(|r| (key("member"), r))?;
        }
        if !members.insert(e.member.as_str()) {
            return Err((key("member"), format!("{:?} has two escalation rules", e.member)));
        }
        let alt = member_of(network, &e.alternate).map_err(|r| (key("alternate"), r))?;
        if alt.to_string() == e.member {
            return Err((key("alternate"), "a member cannot be its own alternate".into()));
        }
        parse_duration_ms(&e.after).map_err(|r| (key("after"), r))?;
    }
    for (i, s) in broadcast.allow_send.iter().enumerate() {
        member_of(network, s).map_err(|r| (format!("broadcast.allow_send[{i}]"), r))?;
    }
    for (i, s) in broadcast.allow_from.iter().enumerate() {
        let key = format!("broadcast.allow_from[{i}]");
        if s.contains('@') {
            let a = Address::parse_member(s).map_err(|e| (key.clone(), e.to_string()))?;
            if a.network() == network {
                return Err((
                    key,
                    format!("{a} is of this network; allow_from names other networks' senders"),
                ));
            }
        } else {
            NetworkId::new(s).map_err(|e| (key, e.to_string()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> NetworkId {
        NetworkId::new("arinsa").unwrap()
    }

    fn rule(member: &str, alternate: &str, after: &str) -> EscalationConfig {
        EscalationConfig { member: member.into(), alternate: alternate.into(), after: after.into() }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("2s"), Ok(2_000));
        assert_eq!(parse_duration_ms("30m"), Ok(1_800_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        for bad in ["", "2", "h", "0s", "2 h", "2w", "-1s", "400d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let ok = BroadcastConfig::default();
        let v = |e: &[EscalationConfig], b: &BroadcastConfig| validate(&net(), e, b).map_err(|(k, _)| k);
        assert_eq!(v(&[rule("fp@arinsa", "alt@arinsa", "2h"), rule("*", "sec@arinsa", "1d")], &ok), Ok(()));
        assert_eq!(v(&[rule("fp@carin", "alt@arinsa", "2h")], &ok), Err("escalation[0].member".into()));
        assert_eq!(v(&[rule("fp@arinsa", "alt@carin", "2h")], &ok), Err("escalation[0].alternate".into()));
        assert_eq!(v(&[rule("fp@arinsa", "fp@arinsa", "2h")], &ok), Err("escalation[0].alternate".into()));
        assert_eq!(v(&[rule("fp@arinsa", "alt@arinsa", "soon")], &ok), Err("escalation[0].after".into()));
        let twice = [rule("*", "a@arinsa", "1h"), rule("*", "b@arinsa", "1h")];
        assert_eq!(v(&twice, &ok), Err("escalation[1].member".into()));
        let b = BroadcastConfig { allow_send: vec!["x@carin".into()], allow_from: vec![] };
        assert_eq!(v(&[], &b), Err("broadcast.allow_send[0]".into()));
        let b = BroadcastConfig { allow_send: vec![], allow_from: vec!["gfp".into(), "NOT A NET".into()] };
        assert_eq!(v(&[], &b), Err("broadcast.allow_from[1]".into()));
        let b = BroadcastConfig { allow_send: vec![], allow_from: vec!["x@arinsa".into()] };
        assert_eq!(v(&[], &b), Err("broadcast.allow_from[0]".into()));
    }

    /// The example federation's ARINSA config parses and its case-work keys validate.
    #[test]
    fn deploy_example_is_valid() {
        let text = include_str!("../../../deploy/federation/arinsa.toml");
        let c: crate::config::RelayConfig = toml::from_str(text).unwrap();
        assert_eq!(c.escalation.len(), 1);
        assert!(!c.broadcast.allow_from.is_empty());
        validate(&c.network, &c.escalation, &c.broadcast).unwrap();
    }
}
