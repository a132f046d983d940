//! A bound on the refusal records written without waiting
//! ([`super::Store::audit_nowait`]): refused Sends, refused peer transfers
//! and refused certificates. Each is a permanent audit leaf and some need no
//! valid signature, or no certificate at all (a failed QUIC handshake), so
//! an unbounded flow of them would grow the log for ever and crowd the
//! writer's queue that real operations share.
//!
//! Records are admitted per (kind, source) at [`PER_SOURCE_PER_MINUTE`] and
//! in all at [`ALL_PER_MINUTE`]. The source is the record's peer, or what
//! the caller names instead: for a refused certificate, whose identity is
//! an unverified claim, the remote IP address when it is known, so that
//! claiming someone's identity does not use up that identity's records. What is left out is counted, and the next
//! record admitted for that source says how many were not recorded, so the
//! log shows that refusals happened and how many.

use std::collections::HashMap;
use std::sync::Mutex;

use focal_proto::pb;

use crate::core::ratelimit::{RateLimiter, TokenBucket};

/// Refusal records admitted per (kind, peer) per minute.
pub(crate) const PER_SOURCE_PER_MINUTE: u32 = 60;
/// Refusal records admitted per minute in all.
pub(crate) const ALL_PER_MINUTE: u32 = 3_000;
/// Sources tracked at once (rate buckets, and counts of left-out records).
const MAX_SOURCES: usize = 10_000;

type Source = (i32, String);

/// See the module docs.
pub(crate) struct RefusalAudit {
    state: Mutex<State>,
}

struct State {
    per_source: RateLimiter<Source>,
    all: TokenBucket,
    left_out: HashMap<Source, u64>,
}

impl RefusalAudit {
    pub(crate) fn new(now_ms: i64) -> Self {
        RefusalAudit {
            state: Mutex::new(State {
                per_source: RateLimiter::new(PER_SOURCE_PER_MINUTE, MAX_SOURCES),
                all: TokenBucket::new(ALL_PER_MINUTE, now_ms),
                left_out: HashMap::new(),
            }),
        }
    }

    /// [`RefusalAudit::admit_from`] with the record's peer as the source.
    #[cfg(test)]
    pub(crate) fn admit(&self, record: &mut pb::AuditRecord, now_ms: i64) -> bool {
        let source = record.peer.clone();
        self.admit_from(record, source, now_ms)
    }

    /// Whether `record`, counted against `source`, is written; if so, its
    /// detail notes the records of that source left out since the last one
    /// written.
    pub(crate) fn admit_from(&self, record: &mut pb::AuditRecord, source: String, now_ms: i64) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let source = (record.kind, source);
        if st.per_source.try_take(&source, now_ms).is_err() || st.all.try_take(now_ms).is_err() {
            if st.left_out.len() < MAX_SOURCES || st.left_out.contains_key(&source) {
                let n = st.left_out.entry(source).or_default();
                *n += 1;
                if *n == 1 {
                    tracing::warn!(peer = %record.peer, kind = record.kind, "refusals from this source exceed the audit rate; counting them instead");
                }
            }
            return false;
        }
        if let Some(n) = st.left_out.remove(&source) {
            record.detail = format!(
                "{} (+{n} earlier refusals from this source not recorded one by one: rate limit)",
                record.detail
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(peer: &str) -> pb::AuditRecord {
        pb::AuditRecord {
            version: 1,
            kind: pb::AuditKind::CertificateRefused as i32,
            peer: peer.into(),
            detail: "bad certificate".into(),
            ..Default::default()
        }
    }

    #[test]
    fn one_source_is_bounded_and_what_it_lost_is_counted() {
        let limit = RefusalAudit::new(0);
        for _ in 0..PER_SOURCE_PER_MINUTE {
            assert!(limit.admit(&mut refusal("focal://arinsa/relay/rogue"), 0));
        }
        for _ in 0..5 {
            assert!(!limit.admit(&mut refusal("focal://arinsa/relay/rogue"), 0));
        }
        // Another source is not affected.
        let mut other = refusal("focal://carin/fp/nl-fiod");
        assert!(limit.admit(&mut other, 0));
        assert_eq!(other.detail, "bad certificate");
        // A second later one token is back; the record says what was left out.
        let mut next = refusal("focal://arinsa/relay/rogue");
        assert!(limit.admit(&mut next, 1_000));
        assert!(next.detail.contains("+5 earlier refusals from this source not recorded"), "{}", next.detail);
        let mut after = refusal("focal://arinsa/relay/rogue");
        assert!(!limit.admit(&mut after, 1_000));
    }

    #[test]
    fn claims_from_one_address_do_not_use_up_the_claimed_identitys_records() {
        let limit = RefusalAudit::new(0);
        let victim = "focal://carin/fp/nl-fiod";
        let from_attacker = (0..PER_SOURCE_PER_MINUTE + 10)
            .filter(|_| limit.admit_from(&mut refusal(victim), "192.0.2.7".into(), 0));
        assert_eq!(from_attacker.count(), PER_SOURCE_PER_MINUTE as usize);
        let mut genuine = refusal(victim);
        assert!(limit.admit_from(&mut genuine, "198.51.100.1".into(), 0), "recorded one by one");
        assert_eq!(genuine.detail, "bad certificate");
    }

    #[test]
    fn many_sources_are_bounded_in_all() {
        let limit = RefusalAudit::new(0);
        let admitted =
            (0..ALL_PER_MINUTE + 100).filter(|i| limit.admit(&mut refusal(&format!("s{i}")), 0)).count();
        assert_eq!(admitted, ALL_PER_MINUTE as usize);
    }
}
