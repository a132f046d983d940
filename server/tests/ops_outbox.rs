//! Admin on PEER outboxes through a real relay whose peer is down:
//! `ListQueue` lists the copies queued for the peer with their clear header
//! fields (seq, msg id, sender, recipients, kind, priority, size, queued
//! at, attempts, expires at); `Purge` by (peer, seq) refuses a live item
//! without `force`, a wrong number or a mismatching msg id, and with
//! `force` removes the item with a PURGED audit record naming the admin
//! and the item; after a restart the purged item stays gone and the other
//! one is still queued under the same number.

mod common;
mod ops_support;

use common::*;
use focal_proto::{Role, pb};
use ops_support::*;

/// A relay config of `net` listening for federation on 127.0.0.1:0 with
/// `peer_net`'s relay as a peer at `peer_port` (where nothing answers).
fn config_with_dead_peer(
    pki: &Pki,
    net: &str,
    data: &std::path::Path,
    peer_net: &str,
    peer_port: u16,
) -> std::path::PathBuf {
    let extra = format!(
        "\n[[peers]]\nname = \"relay-{peer_net}\"\nnetwork = \"{peer_net}\"\naddress = \"127.0.0.1:{peer_port}\"\ndefault_route = false\n"
    );
    pki.federated_relay_config(net, data, &extra, 0)
}

/// A UDP port nobody listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn peer_items(
    admin: &mut focal_proto::pb::admin_client::AdminClient<tonic::transport::Channel>,
) -> Vec<pb::QueueItem> {
    let req = pb::ListQueueRequest { peer: "relay-arinsa".into(), limit: 0 };
    admin.list_queue(req).await.unwrap().into_inner().items
}

/// Every record of the relay's audit log, read by an auditor.
async fn audit_log(pki: &Pki, addr: std::net::SocketAddr) -> Vec<pb::AuditRecord> {
    let auditor = Fp::connect_role(pki, "carin", Role::Auditor, "auditor", addr).await;
    audit_records(&auditor.channel).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_outbox_listing_and_audited_purge_survive_a_restart() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let config = config_with_dead_peer(&pki, "carin", data.path(), "arinsa", dead_port());
    let mut relay = OpsRelay::start(&config).await;

    let alice = Fp::connect(&pki, "carin", "alice", relay.addr).await;
    let p1 = random_bytes(1000, 1);
    let p2 = random_bytes(2000, 2);
    let (_, h1) = alice.send(&["bob@arinsa"], &p1).await.unwrap();
    let h2 = alice.header(&["bob@arinsa", "eve@arinsa"], &p2, |c| c.priority = pb::Priority::Urgent);
    alice.send_header(h2.clone(), &p2).await.unwrap();
    let ctx1 = focal_proto::envelope::parse_context(&h1.context).unwrap();

    let mut admin = admin_client(&pki, "carin", Role::Admin, "ops", "carin", relay.addr).await.unwrap();
    let items = peer_items(&mut admin).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let (i1, i2) = (&items[0], &items[1]);
    assert_eq!(i1.queue, "peer:relay-arinsa");
    assert!(i1.seq > 0 && i2.seq > i1.seq, "{} {}", i1.seq, i2.seq);
    assert_eq!(i1.msg_id, msg_id(&h1));
    assert_eq!(i2.msg_id, msg_id(&h2));
    assert_eq!(i1.sender, "alice@carin");
    assert_eq!(i1.recipients, ["bob@arinsa"]);
    assert_eq!(i2.recipients, ["bob@arinsa", "eve@arinsa"]);
    assert_eq!((i1.kind.as_str(), i2.kind.as_str()), ("envelope", "envelope"));
    assert_eq!((i1.priority.as_str(), i2.priority.as_str()), ("normal", "urgent"));
    assert_eq!((i1.size, i2.size), (1000, 2000));
    assert_eq!(i1.expires_at_ms, ctx1.ctx.expires_at_ms);
    assert!(i1.queued_at_ms > 0);
    let header = i1.header.as_ref().expect("clear header");
    assert_eq!(header.context, h1.context);
    assert_eq!(header.hops.last().map(|h| h.relay.as_str()), Some("relay-carin"));
    // The record keeps only the copy's deliver_to; the header is the stored envelope's.
    assert_eq!(header.deliver_to, ["bob@arinsa"]);
    assert_eq!(i2.header.as_ref().expect("clear header").deliver_to, ["bob@arinsa", "eve@arinsa"]);
    // The mailbox-only and all-queues listings agree.
    let all = admin.list_queue(pb::ListQueueRequest { peer: String::new(), limit: 0 }).await.unwrap();
    assert_eq!(all.into_inner().items.len(), 2);

    let purge = |seq: u64, id: Vec<u8>, force: bool| pb::PurgeRequest {
        queue: "peer:relay-arinsa".into(),
        msg_id: id,
        sender: String::new(),
        seq,
        force,
    };
    let err = admin.purge(purge(i1.seq, vec![], false)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("only expired items can be purged"), "{}", err.message());
    let err = admin.purge(purge(i2.seq + 100, vec![], true)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = admin.purge(purge(i1.seq, msg_id(&h2), true)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains(&hex::encode(msg_id(&h1))), "{}", err.message());
    let err = admin
        .purge(pb::PurgeRequest {
            queue: "peer:relay-nowhere".into(),
            seq: 1,
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // A focal point may not purge.
    let mut not_admin = admin_client(&pki, "carin", Role::Fp, "alice", "carin", relay.addr).await.unwrap();
    let err = not_admin.purge(purge(i1.seq, vec![], true)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    let ack = admin.purge(purge(i1.seq, msg_id(&h1), true)).await.unwrap().into_inner();
    assert!(ack.detail.contains("audit leaf"), "{}", ack.detail);
    let left = peer_items(&mut admin).await;
    assert_eq!(left.iter().map(|i| i.seq).collect::<Vec<_>>(), [i2.seq]);
    let status = admin.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.peers.iter().find(|p| p.name == "relay-arinsa").unwrap().queue_depth, 1);

    let log = audit_log(&pki, relay.addr).await;
    let purged: Vec<&pb::AuditRecord> =
        log.iter().filter(|r| r.kind == pb::AuditKind::Purged as i32).collect();
    assert_eq!(purged.len(), 1, "{purged:?}");
    let r = purged[0];
    assert_eq!(r.msg_id, msg_id(&h1));
    assert_eq!(r.sender, "alice@carin");
    assert_eq!(r.recipients, ["bob@arinsa"]);
    assert_eq!(r.peer, "focal://carin/admin/ops");
    assert_eq!(r.size, 1000);
    assert!(r.detail.contains(&format!("peer:relay-arinsa (seq {})", i1.seq)), "{}", r.detail);
    assert!(r.detail.contains("forced before expiry"), "{}", r.detail);

    // After a restart the core is rebuilt from the store: the purged item
    // stays gone, the other keeps its number.
    relay.stop().await.unwrap();
    drop((relay, admin)); // the operator state holds the store open
    {
        // Messages this relay only forwards are kept whole in their outbox
        // records: no `e/` envelope, no `p/` payload beside them.
        let db = sled::open(data.path().join("sled")).unwrap();
        let tree = db.open_tree("focal").unwrap();
        assert_eq!(tree.scan_prefix(b"o/").count(), 1);
        assert_eq!(tree.scan_prefix(b"e/").count() + tree.scan_prefix(b"p/").count(), 0);
    }
    let mut relay = OpsRelay::start(&config).await;
    let mut admin = admin_client(&pki, "carin", Role::Admin, "ops", "carin", relay.addr).await.unwrap();
    let left = peer_items(&mut admin).await;
    assert_eq!(left.iter().map(|i| (i.seq, i.msg_id.clone())).collect::<Vec<_>>(), [(i2.seq, msg_id(&h2))]);
    let header = left[0].header.as_ref().expect("clear header after the restart");
    assert_eq!((header.context.as_slice(), left[0].size), (h2.context.as_slice(), 2000));
    assert_eq!(header.deliver_to, ["bob@arinsa", "eve@arinsa"]);
    let status = admin.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.peers.iter().find(|p| p.name == "relay-arinsa").unwrap().queue_depth, 1);
    // The remaining item is purgeable by sender and msg id alone.
    let by_id = pb::PurgeRequest {
        queue: "peer:relay-arinsa".into(),
        msg_id: msg_id(&h2),
        sender: "alice@carin".into(),
        seq: 0,
        force: true,
    };
    admin.purge(by_id).await.unwrap();
    assert!(peer_items(&mut admin).await.is_empty());
    relay.stop().await.unwrap();
}
