//! The `[retention]` section of the relay configuration: how long this
//! network's relay keeps messages and what remains of them, on top of each
//! message's own `expires_at`.
//!
//! ```toml
//! [retention]
//! undelivered = "14d"  # a message waiting in a mailbox or an outbox longer expires
//! delivered = "90d"    # receipts kept for members, after delivery
//! ```
//!
//! Durations are whole seconds or a number with a unit: `s`, `m`, `h`, `d`,
//! `w` (`"36h"`, `"2s"`, `604800`). Both keys are optional; an absent key
//! means no cap beyond what the protocol already bounds (the message's
//! `expires_at`, itself at most `limits.max_lifetime_secs` away). The audit
//! log is never subject to retention.

use serde::{Deserialize, Serialize};

/// A duration as written in the file: seconds, or text with a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Span {
    /// Whole seconds.
    Secs(u64),
    /// `<number><unit>`, unit one of `s`, `m`, `h`, `d`, `w`.
    Text(String),
}

impl Span {
    /// The duration in seconds, or why the value is not one.
    pub fn secs(&self) -> Result<u64, String> {
        match self {
            Span::Secs(s) => Ok(*s),
            Span::Text(t) => parse_span(t),
        }
    }
}

/// Parses `"90d"`, `"12h"`, `"30m"`, `"2s"`, `"1w"` or `"3600"` into seconds.
pub fn parse_span(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad =
        || format!("expected a duration like \"2s\", \"30m\", \"12h\", \"90d\" or \"2w\", got {text:?}");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{text:?} is too long"))
}

/// `[retention]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Longest time a message waits, undelivered, in a mailbox or in an
    /// outbox to a peer before the relay expires it (EXPIRED receipt to the
    /// sender, RETENTION_PURGED audit record). Absent: until `expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undelivered: Option<Span>,
    /// How long the relay keeps what remains after delivery (receipts
    /// stored for its members). Absent: kept indefinitely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<Span>,
}

/// The validated retention, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `retention.undelivered` in ms.
    pub undelivered_ms: Option<i64>,
    /// `retention.delivered` in ms.
    pub delivered_ms: Option<i64>,
}

impl RetentionPolicy {
    /// Whether any retention is configured.
    pub fn is_active(&self) -> bool {
        self.undelivered_ms.is_some() || self.delivered_ms.is_some()
    }

    /// How often the sweeper applies it: a quarter of the shortest period,
    /// at least every second and at most every minute.
    pub fn pass_interval(&self) -> std::time::Duration {
        let shortest = [self.undelivered_ms, self.delivered_ms].into_iter().flatten().min().unwrap_or(60_000);
        std::time::Duration::from_millis((shortest / 4).clamp(1_000, 60_000) as u64)
    }
}

impl RetentionConfig {
    /// Checks both keys; on error returns (dotted key, reason).
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.policy().map(drop)
    }

    /// The durations in ms; on error (dotted key, reason).
    pub fn policy(&self) -> Result<RetentionPolicy, (String, String)> {
        // Times are carried as i64 milliseconds.
        let max_secs = (i64::MAX / 1000 / 2) as u64;
        let one = |key: &str, span: &Option<Span>| -> Result<Option<i64>, (String, String)> {
            let Some(span) = span else { return Ok(None) };
            let secs = span.secs().map_err(|e| (key.to_owned(), e))?;
            if secs == 0 {
                return Err((key.to_owned(), "must be at least 1 second (omit the key for no cap)".into()));
            }
            if secs > max_secs {
                return Err((key.to_owned(), format!("must be at most {max_secs} seconds")));
            }
            Ok(Some(secs as i64 * 1000))
        };
        Ok(RetentionPolicy {
            undelivered_ms: one("retention.undelivered", &self.undelivered)?,
            delivered_ms: one("retention.delivered", &self.delivered)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<RetentionPolicy, (String, String)> {
        #[derive(Deserialize)]
        struct W {
            retention: RetentionConfig,
        }
        let w: W = toml::from_str(toml_text).map_err(|e| ("toml".into(), e.to_string()))?;
        w.retention.policy()
    }

    #[test]
    fn spans_parse_with_units() {
        assert_eq!(parse_span("2s"), Ok(2));
        assert_eq!(parse_span("30m"), Ok(1800));
        assert_eq!(parse_span("12h"), Ok(43_200));
        assert_eq!(parse_span("90d"), Ok(90 * 86_400));
        assert_eq!(parse_span("2w"), Ok(14 * 86_400));
        assert_eq!(parse_span("3600"), Ok(3600));
        for bad in ["", "d", "2 days", "-1s", "1.5h", "2y"] {
            assert!(parse_span(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn config_gives_policy_or_names_the_key() {
        let p = parse("[retention]\nundelivered = \"2s\"\ndelivered = 86400\n").unwrap();
        assert_eq!(p, RetentionPolicy { undelivered_ms: Some(2_000), delivered_ms: Some(86_400_000) });
        assert_eq!(p.pass_interval(), std::time::Duration::from_secs(1));
        assert!(!parse("[retention]\n").unwrap().is_active());

        let (key, why) = parse("[retention]\nundelivered = \"soon\"\n").unwrap_err();
        assert_eq!(key, "retention.undelivered");
        assert!(why.contains("soon"), "{why}");
        let (key, why) = parse("[retention]\ndelivered = \"0s\"\n").unwrap_err();
        assert_eq!(key, "retention.delivered");
        assert!(why.contains("at least 1 second"), "{why}");
        let (key, _) = parse("[retention]\ndelivered = \"99999999999999w\"\n").unwrap_err();
        assert_eq!(key, "retention.delivered");
        let (_, why) = parse("[retention]\nforever = true\n").unwrap_err();
        assert!(why.contains("forever"), "{why}");
    }
}
