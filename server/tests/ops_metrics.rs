//! Prometheus metrics scraped over real HTTP from a real relay match the
//! traffic the test sent through the gRPC API: accepted, delivered, acked,
//! refused by reason, bytes, mailbox depth, fsync histogram, certificate
//! expiry; a relay without `listen.metrics` serves no metrics port.

mod common;
mod ops_support;

use common::*;
use ops_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_counts_match_the_traffic_sent() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = OpsRelay::start(&config_with_metrics(&pki, "carin", data.path(), "")).await;
    let metrics = relay.metrics.expect("metrics listener bound");

    let alice = Fp::connect(&pki, "carin", "alice", relay.addr).await;
    let bob = Fp::connect(&pki, "carin", "bob", relay.addr).await;

    // One refusal first: an already expired message (audited, reason expired).
    // The writer applies operations in order, so once the later sends are
    // ACCEPTED its audit record is committed too.
    let payload = random_bytes(100, 1);
    let expired = alice.header(&["bob@carin"], &payload, |p| {
        p.created_at_ms -= 10_000;
        p.expires_at_ms = p.created_at_ms + 1_000;
    });
    let err = alice.send_header(expired, &payload).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    const N: usize = 5;
    let mut headers = Vec::new();
    let mut bytes = 0;
    for i in 0..N {
        let payload = random_bytes(1000 + i * 70_000, i as u8);
        bytes += payload.len();
        let (_, header) = alice.send(&["bob@carin"], &payload).await.unwrap();
        headers.push(header);
    }
    for h in &headers[..2] {
        bob.ack(h, bob.delivered(h)).await.unwrap();
    }

    let (status, text) = http_get(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let get = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name} missing in:\n{text}"));
    assert_eq!(get("focal_messages_accepted_total"), N as f64);
    assert_eq!(get("focal_messages_delivered_total"), N as f64);
    assert_eq!(get("focal_messages_acked_total"), 2.0);
    assert_eq!(get("focal_accepted_bytes_total"), bytes as f64);
    assert_eq!(get("focal_messages_refused_total{reason=\"expired\"}"), 1.0);
    assert_eq!(get("focal_mailbox_messages"), (N - 2) as f64);
    assert_eq!(get("focal_mailboxes"), 1.0);
    assert_eq!(get("focal_mailbox_depth{mailbox=\"bob@carin\"}"), (N - 2) as f64);
    assert!(get("focal_mailbox_oldest_age_seconds") >= 0.0);
    // ACCEPTED + DELIVERED per message, ACKED per ack, REFUSED once.
    assert_eq!(get("focal_audit_log_size"), (2 * N + 2 + 1) as f64);
    assert!(get("focal_store_fsync_seconds_count") >= 1.0);
    assert_eq!(get("focal_store_fsync_seconds_bucket{le=\"+Inf\"}"), get("focal_store_fsync_seconds_count"));
    assert_eq!(get("focal_grpc_connections"), 2.0);
    let relay_days = get("focal_certificate_expiry_days{what=\"relay certificate\"}");
    assert!(relay_days > 300.0, "relay certificate: {relay_days} days");
    assert!(get("focal_certificate_expiry_days{what=\"CA carin\"}") > 3000.0);
    assert!(text.contains("focal_certificate_expiry_days{what=\"CRL "), "{text}");
    assert!(text.contains("# TYPE focal_messages_accepted_total counter"), "{text}");

    let (status, _) = http_get(metrics, "/other").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    relay.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(metrics).await.is_err(), "metrics listener closed at shutdown");
}

#[tokio::test]
async fn metrics_are_off_unless_configured() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = OpsRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    assert!(relay.metrics.is_none());
    relay.stop().await.unwrap();
}
