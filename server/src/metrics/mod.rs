//! Prometheus metrics of a relay: counters updated by one-line calls from
//! the code that does the work, gauges computed when scraped, and the text
//! exposition format (version 0.0.4) served on a separate plain-HTTP
//! listener (`listen.metrics`, off unless configured; see [`http`]).
//!
//! Message counters are driven by the audit log: every audit record the
//! store's writer commits and fsyncs is counted once by kind (accepted,
//! delivered, acked, forwarded, received, expired, purged, refused by
//! reason). So the counters match exactly what the relay durably did, and
//! a refusal that is not audited (e.g. a malformed request refused before
//! any check of the envelope) is not counted either. The fsync latency
//! histogram is observed by the writer around each fsync.
//!
//! Cardinality is bounded: mailbox gauges are an aggregate plus the
//! [`TOP_MAILBOXES`] deepest mailboxes; peers are the configured ones;
//! certificates are the loaded ones.

pub mod http;
mod render;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use focal_proto::pb;

pub use render::{Gauges, MailboxGauge, render};

/// Deepest mailboxes reported one by one (the rest only in the aggregate).
pub const TOP_MAILBOXES: usize = 10;

/// Upper bounds (seconds) of the fsync latency histogram buckets.
pub const FSYNC_BUCKETS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The relay's counters; one per relay, shared as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    accepted_bytes: AtomicU64,
    delivered: AtomicU64,
    acked: AtomicU64,
    forwarded: AtomicU64,
    received: AtomicU64,
    expired: AtomicU64,
    purged: AtomicU64,
    cert_refused: AtomicU64,
    peer_refused: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
    fsync: Histogram,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    connections_closed_on_reload: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// ACCEPTED records.
    pub accepted: u64,
    /// Payload bytes of accepted messages.
    pub accepted_bytes: u64,
    /// DELIVERED records (a message put into local mailboxes).
    pub delivered: u64,
    /// ACKED records (a recipient acknowledged a message).
    pub acked: u64,
    /// FORWARDED records (handed to a peer relay).
    pub forwarded: u64,
    /// RECEIVED records (taken from a peer relay).
    pub received: u64,
    /// EXPIRED records.
    pub expired: u64,
    /// PURGED records (removed by an admin).
    pub purged: u64,
    /// CERTIFICATE_REFUSED records (TLS handshakes refused).
    pub cert_refused: u64,
    /// PEER_REFUSED records.
    pub peer_refused: u64,
    /// REFUSED records by reason (lower-case reason name).
    pub refused: BTreeMap<String, u64>,
    /// Successful reloads.
    pub reloads: u64,
    /// Failed reloads (nothing changed).
    pub reload_failures: u64,
    /// Connections closed because a reload revoked their certificate.
    pub connections_closed_on_reload: u64,
}

impl Metrics {
    /// Counts one committed and fsynced audit record.
    pub fn on_audit(&self, record: &pb::AuditRecord) {
        use pb::AuditKind as K;
        let add = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match K::try_from(record.kind).unwrap_or(K::Unspecified) {
            K::Accepted => {
                add(&self.accepted);
                self.accepted_bytes.fetch_add(record.size, Ordering::Relaxed);
            }
            K::Delivered => add(&self.delivered),
            K::Acked => add(&self.acked),
            K::Forwarded => add(&self.forwarded),
            K::Received => add(&self.received),
            K::Expired => add(&self.expired),
            K::Purged | K::RetentionPurged => add(&self.purged),
            K::CertificateRefused => add(&self.cert_refused),
            K::PeerRefused => add(&self.peer_refused),
            K::Refused => {
                let mut m = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                *m.entry(reason_label(record.reason)).or_default() += 1;
            }
            _ => {}
        }
    }

    /// Records one store fsync of `took`.
    pub fn observe_fsync(&self, took: Duration) {
        self.fsync.observe(took.as_secs_f64());
    }

    /// Counts a reload: `ok` or failed; `closed` connections were dropped.
    pub fn on_reload(&self, ok: bool, closed: usize) {
        if ok {
            self.reloads.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
        self.connections_closed_on_reload.fetch_add(closed as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            accepted: get(&self.accepted),
            accepted_bytes: get(&self.accepted_bytes),
            delivered: get(&self.delivered),
            acked: get(&self.acked),
            forwarded: get(&self.forwarded),
            received: get(&self.received),
            expired: get(&self.expired),
            purged: get(&self.purged),
            cert_refused: get(&self.cert_refused),
            peer_refused: get(&self.peer_refused),
            refused: self.refused.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            reloads: get(&self.reloads),
            reload_failures: get(&self.reload_failures),
            connections_closed_on_reload: get(&self.connections_closed_on_reload),
        }
    }

    /// The fsync histogram now: (cumulative bucket counts, count, sum seconds).
    pub fn fsync(&self) -> HistogramSnapshot {
        self.fsync.snapshot()
    }
}

/// `REFUSAL_REASON_TOO_LARGE` -> `too_large`.
fn reason_label(reason: i32) -> String {
    let r = pb::RefusalReason::try_from(reason).unwrap_or(pb::RefusalReason::Unspecified);
    r.as_str_name().trim_start_matches("REFUSAL_REASON_").to_ascii_lowercase()
}

/// A fixed-bucket histogram of seconds ([`FSYNC_BUCKETS`]).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; FSYNC_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
}

/// A copy of a histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative count per bucket of [`FSYNC_BUCKETS`].
    pub cumulative: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum of observations, seconds.
    pub sum_secs: f64,
}

impl Histogram {
    fn observe(&self, secs: f64) {
        if let Some(i) = FSYNC_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum_secs: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: pb::AuditKind, reason: pb::RefusalReason, size: u64) -> pb::AuditRecord {
        pb::AuditRecord { kind: kind as i32, reason: reason as i32, size, ..Default::default() }
    }

    #[test]
    fn audit_records_drive_the_counters() {
        let m = Metrics::default();
        m.on_audit(&record(pb::AuditKind::Accepted, pb::RefusalReason::Unspecified, 100));
        m.on_audit(&record(pb::AuditKind::Accepted, pb::RefusalReason::Unspecified, 50));
        m.on_audit(&record(pb::AuditKind::Delivered, pb::RefusalReason::Unspecified, 100));
        m.on_audit(&record(pb::AuditKind::Refused, pb::RefusalReason::TooLarge, 9));
        m.on_audit(&record(pb::AuditKind::Refused, pb::RefusalReason::TooLarge, 9));
        m.on_audit(&record(pb::AuditKind::Refused, pb::RefusalReason::Expired, 9));
        let c = m.counters();
        assert_eq!((c.accepted, c.accepted_bytes, c.delivered, c.acked), (2, 150, 1, 0));
        assert_eq!(c.refused.get("too_large"), Some(&2));
        assert_eq!(c.refused.get("expired"), Some(&1));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_fsync(Duration::from_micros(300));
        m.observe_fsync(Duration::from_millis(3));
        m.observe_fsync(Duration::from_secs(10));
        let h = m.fsync();
        assert_eq!(h.count, 3);
        assert_eq!(h.cumulative[0], 1);
        assert_eq!(h.cumulative[3], 2);
        assert_eq!(*h.cumulative.last().unwrap(), 2, "10 s is only in +Inf");
        assert!(h.sum_secs > 10.0);
    }
}
