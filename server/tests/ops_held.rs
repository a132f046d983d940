//! Escalation copies held for an alternate, through a real relay whose
//! config names `alt@carin` as every member's alternate (after 1 h, so no
//! copy is released during a test): `alice@carin` sends an urgent message
//! to `bob@carin` sealed also to `alt@carin`, and the relay holds alt's copy.
//!
//! - `Admin.ListQueue` lists it as queue `held:alt@carin` (kind
//!   `escalation`, release time, a one-line detail) beside bob's mailbox
//!   item, and the metrics count it.
//! - `Admin.Purge` of `held:alt@carin` refuses it while the message lives;
//!   once expired (the store's purge at a later clock, as `ops_admin` does)
//!   it goes with a PURGED record in a log that verifies; after a restart it
//!   stays gone and bob's ack records no ESCALATION_CANCELLED.
//! - Retention (`undelivered`) removes a held copy with a RETENTION_PURGED
//!   record naming `held:alt@carin`, and it stays gone after a restart.

mod common;
mod ops_support;

use common::*;
use focal_proto::audit::{LogKey, verify_log};
use focal_proto::pb::admin_client::AdminClient;
use focal_proto::{Address, Role, envelope, pb};
use focal_relay::config::retention::RetentionPolicy;
use focal_relay::store::admin::PurgeRequest;
use ops_support::*;
use prost::Message;
use tonic::transport::Channel;

const ESCALATION: &str = "\n[[escalation]]\nmember = \"*\"\nalternate = \"alt@carin\"\nafter = \"1h\"\n";

/// An urgent header from `fp` to bob and alt, with the escalation pair
/// (bob -> alt) in the signed context, as the client builds it.
fn urgent_with_alternate(fp: &Fp, payload: &[u8]) -> pb::EnvelopeHeader {
    let mut header = fp.header(&["bob@carin", "alt@carin"], payload, |c| c.priority = pb::Priority::Urgent);
    let mut ctx = pb::Context::decode(header.context.as_slice()).unwrap();
    ctx.escalations = vec![pb::Escalation { primary: "bob@carin".into(), alternate: "alt@carin".into() }];
    header.context = ctx.encode_to_vec();
    let digest: [u8; 32] = header.payload_sha256.as_slice().try_into().unwrap();
    header.signature = envelope::sign(&fp.creds.signing_key().unwrap(), &header.context, &digest);
    header
}

async fn queue(admin: &mut AdminClient<Channel>, which: &str) -> Vec<pb::QueueItem> {
    let req = pb::ListQueueRequest { peer: which.into(), limit: 0 };
    admin.list_queue(req).await.unwrap().into_inner().items
}

/// The relay's whole audit log, checked against its signed checkpoint.
async fn verified_log(pki: &Pki, relay: &OpsRelay) -> Vec<pb::AuditRecord> {
    let auditor = Fp::connect_role(pki, "carin", Role::Auditor, "auditor", relay.addr).await;
    let mut audit = pb::audit_client::AuditClient::new(auditor.channel.clone());
    let info = audit.get_log_info(pb::GetCheckpointRequest { fresh: true }).await.unwrap().into_inner();
    let cp = info.checkpoint.unwrap();
    let req = pb::EntriesRequest { start: 0, end: cp.size };
    let mut s = audit.get_entries(req).await.unwrap().into_inner();
    let mut leaves = Vec::new();
    while let Some(e) = s.message().await.unwrap() {
        leaves.push(e.leaf);
    }
    let key = LogKey::parse(&info.verifier_key).unwrap();
    verify_log(leaves.iter().map(Vec::as_slice), &cp.note, &key, None, None).unwrap();
    leaves.iter().map(|l| focal_proto::audit::decode_record(l).unwrap()).collect()
}

fn kinds(records: &[pb::AuditRecord], kind: pb::AuditKind) -> Vec<&pb::AuditRecord> {
    records.iter().filter(|r| r.kind == kind as i32).collect()
}

/// A carin relay with the escalation rule, and alice's urgent message to
/// bob (alternate alt@carin) accepted, so its held copy waits at the relay.
struct Bench {
    pki: Pki,
    _data: tempfile::TempDir,
    config: std::path::PathBuf,
    relay: OpsRelay,
    alice: Fp,
    header: pb::EnvelopeHeader,
}

impl Bench {
    async fn start(payload_len: usize, seed: u8) -> Bench {
        init();
        let pki = Pki::new(&["carin"]);
        let data = tempfile::tempdir().unwrap();
        let config = pki.relay_config("carin", data.path(), ESCALATION);
        let relay = OpsRelay::start(&config).await;
        let alice = Fp::connect(&pki, "carin", "alice", relay.addr).await;
        let payload = random_bytes(payload_len, seed);
        let header = urgent_with_alternate(&alice, &payload);
        alice.send_header(header.clone(), &payload).await.unwrap();
        Bench { pki, _data: data, config, relay, alice, header }
    }
}

/// Stops the relay and starts it again on its store (dropping `admin`, whose
/// channel holds the operator state and so the store open): the held copy
/// is still gone, from the admin listing and from the gauges.
async fn restarted_without_held_copy(
    pki: &Pki,
    config: &std::path::Path,
    mut relay: OpsRelay,
    admin: AdminClient<Channel>,
) -> OpsRelay {
    relay.stop().await.unwrap();
    drop((relay, admin));
    let relay = OpsRelay::start(config).await;
    let mut admin = admin_client(pki, "carin", Role::Admin, "ops", "carin", relay.addr).await.unwrap();
    assert!(queue(&mut admin, "held:alt@carin").await.is_empty());
    assert_eq!(relay.ops.gauges().held_copies, 0);
    relay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_copy_is_listed_counted_and_purged_for_good() {
    let Bench { pki, _data, config, relay, alice, header } = Bench::start(700, 7).await;
    let id: [u8; 16] = msg_id(&header).try_into().unwrap();
    let expires_at_ms = envelope::parse_context(&header.context).unwrap().ctx.expires_at_ms;

    let mut admin = admin_client(&pki, "carin", Role::Admin, "ops", "carin", relay.addr).await.unwrap();
    let all = queue(&mut admin, "").await;
    assert!(all.iter().any(|i| i.queue == "mailbox:bob@carin" && i.msg_id == id), "{all:?}");
    assert!(
        !all.iter().any(|i| i.queue == "mailbox:alt@carin"),
        "alt's copy is held, not delivered: {all:?}"
    );
    let held = queue(&mut admin, "held:alt@carin").await;
    assert_eq!(held.len(), 1, "{held:?}");
    let h = &held[0];
    assert_eq!(h.kind, "escalation");
    assert_eq!((h.msg_id.as_slice(), h.sender.as_str()), (id.as_slice(), "alice@carin"));
    assert_eq!(h.recipients, ["alt@carin"]);
    assert_eq!(h.priority, "urgent");
    assert_eq!((h.size, h.expires_at_ms), (700, expires_at_ms));
    assert_eq!(h.release_at_ms - h.queued_at_ms, 3_600_000, "the configured hour");
    assert!(
        h.detail.contains("held for escalation to alt@carin") && h.detail.contains("bob@carin"),
        "{}",
        h.detail
    );
    assert!(h.header.is_some(), "clear header listed");
    assert!(all.iter().any(|i| i.queue == "held:alt@carin"), "the full listing shows it too: {all:?}");
    assert_eq!(relay.ops.gauges().held_copies, 1);
    assert!(relay.ops.render_metrics().contains("\nfocal_held_escalation_copies 1\n"));

    // Live message: refused through the API, nothing removed.
    let req = pb::PurgeRequest {
        queue: "held:alt@carin".into(),
        msg_id: id.to_vec(),
        sender: "alice@carin".into(),
        ..Default::default()
    };
    let err = admin.purge(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(queue(&mut admin, "held:alt@carin").await.len(), 1);

    // Expired (a later clock): purged with its own audit record.
    let by = "focal://carin/admin/ops".to_string();
    let purge = PurgeRequest {
        owner: Address::parse("alt@carin").unwrap(),
        sender: alice.addr.clone(),
        msg_id: id,
        by: by.clone(),
        now_ms: expires_at_ms + 1,
    };
    let leaf = relay.ops.store.purge(purge).await.unwrap();
    assert!(queue(&mut admin, "held:alt@carin").await.is_empty());
    assert_eq!(relay.ops.gauges().held_copies, 0);
    let records = verified_log(&pki, &relay).await;
    let r = &records[leaf as usize];
    assert_eq!(r.kind, pb::AuditKind::Purged as i32);
    assert_eq!((r.msg_id.as_slice(), r.sender.as_str()), (id.as_slice(), "alice@carin"));
    assert_eq!(r.recipients, ["alt@carin"]);
    assert_eq!(r.peer, by);
    assert_eq!(r.payload_sha256, header.payload_sha256);
    assert!(r.detail.contains("purged by focal://carin/admin/ops"), "{}", r.detail);
    assert!(queue(&mut admin, "mailbox:bob@carin").await.iter().any(|i| i.msg_id == id), "bob's copy stays");

    // After a restart: still gone; bob's ack cancels nothing.
    let mut relay = restarted_without_held_copy(&pki, &config, relay, admin).await;
    let bob = Fp::connect(&pki, "carin", "bob", relay.addr).await;
    bob.ack(&header, bob.delivered(&header)).await.unwrap();
    let records = verified_log(&pki, &relay).await;
    assert!(kinds(&records, pb::AuditKind::EscalationCancelled).is_empty(), "{records:?}");
    assert!(kinds(&records, pb::AuditKind::Escalated).is_empty(), "{records:?}");
    assert_eq!(kinds(&records, pb::AuditKind::Acked).len(), 1);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_a_held_copy_for_good() {
    let Bench { pki, _data, config, relay, alice: _, header } = Bench::start(300, 3).await;
    let id = msg_id(&header);
    let mut admin = admin_client(&pki, "carin", Role::Admin, "ops", "carin", relay.addr).await.unwrap();
    assert_eq!(queue(&mut admin, "held:alt@carin").await.len(), 1);

    // Applied as the sweeper does, at a clock past `undelivered`.
    let policy = RetentionPolicy { undelivered_ms: Some(60_000), delivered_ms: None };
    let report = relay.ops.store.apply_retention(policy, now_ms() + 120_000, 256).await.unwrap();
    assert_eq!((report.held, report.mailbox), (1, 1), "{report:?}");
    assert!(queue(&mut admin, "").await.is_empty(), "nothing left queued");
    assert_eq!(relay.ops.gauges().held_copies, 0);
    let records = verified_log(&pki, &relay).await;
    let purged = kinds(&records, pb::AuditKind::RetentionPurged);
    let held: Vec<_> = purged.iter().filter(|r| r.peer == "held:alt@carin").collect();
    assert_eq!(held.len(), 1, "{purged:?}");
    assert_eq!(
        (held[0].msg_id.as_slice(), held[0].recipients.as_slice()),
        (id.as_slice(), &["alt@carin".to_string()][..])
    );
    assert_eq!(held[0].reason, pb::RefusalReason::Expired as i32);
    assert!(purged.iter().any(|r| r.peer == "mailbox:bob@carin"), "{purged:?}");

    let mut relay = restarted_without_held_copy(&pki, &config, relay, admin).await;
    relay.stop().await.unwrap();
}
