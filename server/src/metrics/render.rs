//! The Prometheus text exposition format (0.0.4): `# HELP`, `# TYPE`, then
//! samples; label values escaped (`\\`, `\"`, `\n`).

use std::fmt::Write;

use focal_proto::pb;

use super::{Counters, FSYNC_BUCKETS, HistogramSnapshot};
use crate::expiry::Expiring;

/// One mailbox as the metrics show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxGauge {
    /// Owner address.
    pub address: String,
    /// Messages waiting.
    pub depth: u64,
    /// Age of the oldest waiting message, milliseconds.
    pub oldest_age_ms: i64,
}

/// What is measured at scrape time.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// Seconds since the relay started.
    pub uptime_secs: f64,
    /// Store bytes on disk.
    pub store_bytes: u64,
    /// Audit log leaves.
    pub audit_log_size: u64,
    /// Mailboxes with at least one message.
    pub mailboxes: u64,
    /// Messages waiting in all mailboxes.
    pub mailbox_messages: u64,
    /// Oldest waiting message in any mailbox, milliseconds (0 if none).
    pub mailbox_oldest_age_ms: i64,
    /// The deepest mailboxes.
    pub top_mailboxes: Vec<MailboxGauge>,
    /// Escalation copies held for alternates (in no mailbox yet).
    pub held_copies: u64,
    /// Longest any escalation copy has been held, milliseconds (0 if none).
    pub held_oldest_age_ms: i64,
    /// Peer links (empty while federation does not report them).
    pub peers: Vec<pb::PeerStatus>,
    /// Loaded certificates and CRLs with their end of validity.
    pub certificates: Vec<Expiring>,
    /// Authenticated gRPC connections open now.
    pub live_connections: u64,
    /// Unix seconds now (for days-until-expiry).
    pub now_unix: i64,
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.head(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Renders every metric of the relay.
pub fn render(c: &Counters, fsync: &HistogramSnapshot, g: &Gauges) -> String {
    let mut o = Out(String::with_capacity(4096));
    let counters = [
        (
            "focal_messages_accepted_total",
            "Messages accepted (fsynced with their ACCEPTED audit record).",
            c.accepted,
        ),
        ("focal_accepted_bytes_total", "Payload bytes of accepted messages.", c.accepted_bytes),
        (
            "focal_messages_delivered_total",
            "Messages put into local mailboxes (DELIVERED records).",
            c.delivered,
        ),
        ("focal_messages_acked_total", "Messages acknowledged by their recipient (ACKED records).", c.acked),
        (
            "focal_messages_forwarded_total",
            "Messages handed to a peer relay (FORWARDED records).",
            c.forwarded,
        ),
        ("focal_messages_received_total", "Messages taken from a peer relay (RECEIVED records).", c.received),
        ("focal_messages_expired_total", "Messages that expired undelivered.", c.expired),
        ("focal_messages_purged_total", "Queue items purged by an admin.", c.purged),
        (
            "focal_certificates_refused_total",
            "Client certificates refused at the TLS handshake.",
            c.cert_refused,
        ),
        ("focal_peers_refused_total", "Peer connections refused.", c.peer_refused),
        ("focal_reloads_total", "Successful reloads of certificate, key, trust bundle and CRLs.", c.reloads),
        (
            "focal_reload_failures_total",
            "Reloads that failed (the previous material stays in force).",
            c.reload_failures,
        ),
        (
            "focal_reload_closed_connections_total",
            "Connections closed because a reload no longer accepts their certificate.",
            c.connections_closed_on_reload,
        ),
    ];
    for (name, help, v) in counters {
        o.one(name, "counter", help, v);
    }
    o.head("focal_messages_refused_total", "counter", "Messages refused, by audited reason.");
    for (reason, n) in &c.refused {
        o.sample("focal_messages_refused_total", &[("reason", reason)], n);
    }

    o.head("focal_store_fsync_seconds", "histogram", "Latency of the store's group-commit fsync.");
    for (bound, n) in FSYNC_BUCKETS.iter().zip(&fsync.cumulative) {
        o.sample("focal_store_fsync_seconds_bucket", &[("le", &bound.to_string())], n);
    }
    o.sample("focal_store_fsync_seconds_bucket", &[("le", "+Inf")], fsync.count);
    o.sample("focal_store_fsync_seconds_sum", &[], fsync.sum_secs);
    o.sample("focal_store_fsync_seconds_count", &[], fsync.count);

    o.one("focal_uptime_seconds", "gauge", "Seconds since the relay started.", g.uptime_secs);
    o.one(
        "focal_store_bytes",
        "gauge",
        "Bytes of the store on disk (sled and payload files).",
        g.store_bytes,
    );
    o.one("focal_audit_log_size", "gauge", "Leaves in the network's audit log.", g.audit_log_size);
    o.one("focal_grpc_connections", "gauge", "Authenticated gRPC connections open.", g.live_connections);
    o.one("focal_mailboxes", "gauge", "Mailboxes holding at least one message.", g.mailboxes);
    o.one("focal_mailbox_messages", "gauge", "Messages waiting in all mailboxes.", g.mailbox_messages);
    o.one(
        "focal_mailbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest message waiting in any mailbox.",
        g.mailbox_oldest_age_ms as f64 / 1000.0,
    );
    o.head("focal_mailbox_depth", "gauge", "Messages waiting, for the deepest mailboxes only.");
    for m in &g.top_mailboxes {
        o.sample("focal_mailbox_depth", &[("mailbox", &m.address)], m.depth);
    }
    o.head("focal_mailbox_age_seconds", "gauge", "Oldest message age, for the deepest mailboxes only.");
    for m in &g.top_mailboxes {
        o.sample("focal_mailbox_age_seconds", &[("mailbox", &m.address)], m.oldest_age_ms as f64 / 1000.0);
    }

    o.one(
        "focal_held_escalation_copies",
        "gauge",
        "Urgent messages' copies held for an escalation alternate (not in a mailbox yet).",
        g.held_copies,
    );
    o.one(
        "focal_held_escalation_oldest_age_seconds",
        "gauge",
        "How long the longest-held escalation copy has been held.",
        g.held_oldest_age_ms as f64 / 1000.0,
    );
    o.head("focal_peer_up", "gauge", "1 if the link to the peer is connected, by state.");
    for p in &g.peers {
        let up = u8::from(p.state == "connected");
        o.sample("focal_peer_up", &[("peer", &p.name), ("state", &p.state)], up);
    }
    o.head("focal_peer_queue_depth", "gauge", "Envelopes waiting in the peer's outbox.");
    for p in &g.peers {
        o.sample("focal_peer_queue_depth", &[("peer", &p.name)], p.queue_depth);
    }
    o.head(
        "focal_peer_queue_oldest_age_seconds",
        "gauge",
        "Age of the oldest envelope in the peer's outbox.",
    );
    for p in &g.peers {
        o.sample(
            "focal_peer_queue_oldest_age_seconds",
            &[("peer", &p.name)],
            p.oldest_age_ms as f64 / 1000.0,
        );
    }
    o.head("focal_peer_retries", "gauge", "Failed attempts since the last success on the peer link.");
    for p in &g.peers {
        o.sample("focal_peer_retries", &[("peer", &p.name)], p.retries);
    }

    o.head(
        "focal_certificate_expiry_days",
        "gauge",
        "Days until a loaded certificate expires or a CRL's next update is due (negative: past).",
    );
    for cert in &g.certificates {
        let days = (cert.not_after_unix - g.now_unix) as f64 / 86_400.0;
        o.sample("focal_certificate_expiry_days", &[("what", &cert.what)], format!("{days:.2}"));
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_exposition_lines() {
        let mut c = Counters { accepted: 3, ..Default::default() };
        c.refused.insert("too_large".into(), 2);
        let h = HistogramSnapshot { cumulative: vec![1; FSYNC_BUCKETS.len()], count: 1, sum_secs: 0.001 };
        let g = Gauges {
            top_mailboxes: vec![MailboxGauge { address: "a\"b@carin".into(), depth: 4, oldest_age_ms: 1500 }],
            certificates: vec![Expiring {
                what: "relay certificate".into(),
                not_after_unix: 86_400 * 2,
                warn_days: 30,
            }],
            ..Default::default()
        };
        let text = render(&c, &h, &g);
        assert!(text.contains("focal_messages_accepted_total 3\n"), "{text}");
        assert!(text.contains("focal_messages_refused_total{reason=\"too_large\"} 2\n"), "{text}");
        assert!(text.contains("focal_mailbox_depth{mailbox=\"a\\\"b@carin\"} 4\n"), "{text}");
        assert!(text.contains("focal_store_fsync_seconds_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("focal_certificate_expiry_days{what=\"relay certificate\"} 2.00\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample {line}");
        }
    }
}
