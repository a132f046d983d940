//! Whole relays federated over QUIC on loopback (`focal_relay::serve`
//! in-process, PKI from `focal_certs` in a temp dir): delivery through the
//! GFP hub with a real sealed message and the DELIVERED receipt back,
//! cross-network directory lookups, direct peering, a message to three
//! networks, an unknown network refused with a REFUSED receipt, a copy
//! expiring in an outbox (EXPIRED receipt signed by that relay), a peer
//! forging a sender of another network, and an outage of the destination
//! relay while 200 messages queue at the hub, which itself restarts midway.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{Fp, Pki, audit_records, init, now_ms};
use focal_proto::envelope::{self, ContextParams, RecipientSecretKey};
use focal_proto::pb::directory_client::DirectoryClient;
use focal_proto::{Address, NetworkId, Role, pb};
use focal_relay::config::RelayConfig;
use focal_relay::federation::{
    BoxFuture, EnvelopeAnswer, Federation, InboundHandler, InboundPayload, RemotePeer, Tuning,
};
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(60);

/// A relay in-process with a fixed federation UDP port (kept across restarts).
struct Node {
    config_path: PathBuf,
    port: u16,
    grpc: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), focal_relay::RelayError>>>,
}

impl Node {
    async fn start(&mut self) {
        let config = RelayConfig::load(&self.config_path).unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.grpc = grpc.local_addr().unwrap();
        let udp = UdpSocket::bind(("127.0.0.1", self.port)).unwrap();
        let listeners = focal_relay::Listeners { grpc, federation: Some(udp), metrics: None };
        let (tx, rx) = oneshot::channel();
        self.join = Some(tokio::spawn(focal_relay::serve(config, listeners, async move {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            j.await.unwrap().unwrap();
        }
    }
}

struct Federated {
    pki: Pki,
    _data: Vec<tempfile::TempDir>,
    nodes: BTreeMap<String, Node>,
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Relays for `relays`, peered as `links` (a, b, b is a's default route).
/// `extra_peers`: (relay net, peer name, peer net, port) added to a config.
async fn federation(
    networks: &[&str],
    relays: &[&str],
    links: &[(&str, &str, bool)],
    extra_peers: &[(&str, &str, &str, u16)],
) -> Federated {
    let pki = Pki::new(networks);
    let ports: BTreeMap<&str, u16> = relays.iter().map(|n| (*n, free_udp_port())).collect();
    let mut data = Vec::new();
    let mut nodes = BTreeMap::new();
    for net in relays {
        let mut extra = "\n[limits]\nshutdown_grace_secs = 2\n".to_string();
        let mut peer = |name: String, pnet: &str, port: u16, default: bool| {
            extra.push_str(&format!(
                "\n[[peers]]\nname = \"{name}\"\nnetwork = \"{pnet}\"\naddress = \"127.0.0.1:{port}\"\ndefault_route = {default}\n"
            ));
        };
        for (a, b, default) in links {
            if a == net {
                peer(format!("relay-{b}"), b, ports[b], *default);
            }
            if b == net {
                peer(format!("relay-{a}"), a, ports[a], false);
            }
        }
        for (on, name, pnet, port) in extra_peers {
            if on == net {
                peer(name.to_string(), pnet, *port, false);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = pki.federated_relay_config(net, dir.path(), &extra, ports[net]);
        data.push(dir);
        let mut node = Node {
            config_path: path,
            port: ports[net],
            grpc: "127.0.0.1:1".parse().unwrap(),
            stop: None,
            join: None,
        };
        node.start().await;
        nodes.insert(net.to_string(), node);
    }
    Federated { pki, _data: data, nodes }
}

impl Federated {
    async fn fp(&self, net: &str, name: &str) -> Fp {
        Fp::connect(&self.pki, net, name, self.nodes[net].grpc).await
    }
    async fn stop_all(&mut self) {
        for n in self.nodes.values_mut() {
            n.stop().await;
        }
    }
}

/// Polls `f` until it returns Some, or panics after DEADLINE.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receipts(fp: &Fp) -> Vec<pb::ReceiptBody> {
    let r = fp.relay().receipts(pb::ReceiptsRequest { since_ms: 0 }).await.unwrap().into_inner();
    r.receipts
        .iter()
        .map(|r| pb::ReceiptBody::decode(r.signed.as_ref().unwrap().body.as_slice()).unwrap())
        .collect()
}

/// Every record of `net`'s audit log, read by an auditor of that network.
async fn audit_log(fed: &Federated, net: &str) -> Vec<pb::AuditRecord> {
    let auditor = Fp::connect_role(&fed.pki, net, Role::Auditor, "auditor", fed.nodes[net].grpc).await;
    audit_records(&auditor.channel).await
}

fn hops(h: &pb::EnvelopeHeader) -> Vec<String> {
    h.hops.iter().map(|h| h.relay.clone()).collect()
}

fn header_to(fp: &Fp, to: &[&str], payload: &[u8]) -> pb::EnvelopeHeader {
    fp.header(to, payload, |_| {})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_delivery_directory_receipts_direct_peering_and_refusals() {
    init();
    // carin -> gfp (default route), arinsa -> gfp (default), carin <-> arin-wa direct.
    // The test plays a malicious relay of arin-ea that gfp has as a peer.
    let evil_port = free_udp_port();
    let mut fed = federation(
        &["gfp", "carin", "arinsa", "arin-wa", "arin-ea", "rrag"],
        &["gfp", "carin", "arinsa", "arin-wa"],
        &[
            ("carin", "gfp", true),
            ("arinsa", "gfp", true),
            ("arin-wa", "gfp", true),
            ("carin", "arin-wa", false),
        ],
        &[("gfp", "relay-arin-ea", "arin-ea", evil_port)],
    )
    .await;
    let alice = fed.fp("carin", "nl-fiod").await;
    let bob = fed.fp("arinsa", "za-afu").await;
    let wanda = fed.fp("arin-wa", "ng-efcc").await;
    let gina = fed.fp("gfp", "secretariat").await;

    // Bob publishes his encryption key; Alice finds it through CARIN's relay.
    let bob_secret = RecipientSecretKey::generate();
    let entry = focal_certs::make_directory_entry(
        &bob.creds,
        *bob_secret.public_key().as_bytes(),
        1,
        now_ms() - 1000,
        now_ms() + 86_400_000,
        true,
        "ZA AFU",
    )
    .unwrap();
    DirectoryClient::new(bob.channel.clone()).publish(entry).await.unwrap();
    let found = DirectoryClient::new(alice.channel.clone())
        .lookup(pb::LookupRequest { address: "za-afu@arinsa".into() })
        .await
        .unwrap()
        .into_inner();
    let verified =
        focal_certs::verify_directory_entry(&fed.pki.trust().current(), &found, SystemTime::now()).unwrap();
    assert_eq!(verified.address.to_string(), "za-afu@arinsa");
    let members = DirectoryClient::new(alice.channel.clone())
        .list_members(pb::ListMembersRequest { network: "arinsa".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.entries.len(), 1);

    // A real sealed message CARIN -> GFP -> ARINSA.
    let key: [u8; 32] = verified.body.x25519_public.as_slice().try_into().unwrap();
    let params = ContextParams {
        msg_id: envelope::new_msg_id(),
        sender: alice.addr.clone(),
        recipients: vec![Address::parse("za-afu@arinsa").unwrap()],
        created_at_ms: now_ms(),
        expires_at_ms: now_ms() + 3_600_000,
        handling: pb::HandlingCode::H1,
        priority: pb::Priority::Normal,
        forward_of: None,
        broadcast_network: None,
    };
    let context = envelope::build_context(&params).unwrap();
    let plaintext = b"asset tracing query: account 42".to_vec();
    let sealed = envelope::seal_envelope(
        &context,
        &[envelope::RecipientPublicKey(key)],
        &plaintext,
        &alice.creds.signing_key().unwrap(),
        alice.creds.cert_der(),
    )
    .unwrap();
    let header = sealed.header.clone().unwrap();
    alice.send_header(header.clone(), &sealed.payload).await.unwrap();
    let got =
        eventually("the sealed message at ARINSA", || async { bob.inbox().await.into_iter().next() }).await;
    let stored = got.header.unwrap();
    assert_eq!(hops(&stored), ["relay-carin", "relay-gfp", "relay-arinsa"]);
    let (_, payload) = bob.fetch(&alice.addr.to_string(), &params.msg_id, 0).await.unwrap();
    let opened =
        envelope::open_envelope(&pb::Envelope { header: Some(header.clone()), payload }, &[&bob_secret])
            .unwrap();
    assert!(opened.ends_with(&plaintext), "plaintext survives the trip");

    // DELIVERED receipt, signed by Bob, back to Alice's receipts.
    bob.ack(&header, bob.delivered(&header)).await.unwrap();
    let delivered = eventually("the DELIVERED receipt at CARIN", || async {
        receipts(&alice).await.into_iter().find(|r| r.kind() == pb::ReceiptKind::Delivered)
    })
    .await;
    assert_eq!(
        (delivered.subject.as_str(), delivered.msg_id.as_slice()),
        ("za-afu@arinsa", &params.msg_id[..])
    );

    // Direct peering bypasses the hub.
    let payload = common::random_bytes(1000, 3);
    let h = header_to(&alice, &["ng-efcc@arin-wa"], &payload);
    alice.send_header(h.clone(), &payload).await.unwrap();
    let got =
        eventually("the direct message at ARIN-WA", || async { wanda.inbox().await.into_iter().next() })
            .await;
    assert_eq!(hops(&got.header.unwrap()), ["relay-carin", "relay-arin-wa"]);

    // Three networks, each recipient once (a 200 KiB payload: a file, shared by the copies).
    let payload = common::random_bytes(200_000, 5);
    let h = header_to(&alice, &["za-afu@arinsa", "ng-efcc@arin-wa", "secretariat@gfp"], &payload);
    alice.send_header(h.clone(), &payload).await.unwrap();
    let id = common::msg_id(&h);
    for (who, fp) in [("arinsa", &bob), ("arin-wa", &wanda), ("gfp", &gina)] {
        eventually(&format!("the 3-network message at {who}"), || async {
            let n =
                fp.inbox().await.iter().filter(|m| common::msg_id(m.header.as_ref().unwrap()) == id).count();
            (n > 0).then_some(n)
        })
        .await;
        let (_, data) = fp.fetch(&alice.addr.to_string(), &id, 0).await.unwrap();
        assert_eq!(data, payload, "{who} gets the exact payload");
    }
    // Sent again (a client retry): refused as duplicate, nobody gets a second copy.
    assert_eq!(alice.send_header(h.clone(), &payload).await.unwrap_err().code(), tonic::Code::AlreadyExists);
    for fp in [&bob, &wanda, &gina] {
        let n = fp.inbox().await.iter().filter(|m| common::msg_id(m.header.as_ref().unwrap()) == id).count();
        assert_eq!(n, 1, "{} sees the message once", fp.addr);
    }

    // Unknown network: CARIN passes it to its default route; GFP refuses it
    // and its signed REFUSED receipt comes back to Alice.
    let h = header_to(&alice, &["someone@rrag"], b"x");
    alice.send_header(h.clone(), b"x").await.unwrap();
    let refused = eventually("the REFUSED receipt", || async {
        receipts(&alice).await.into_iter().find(|r| r.kind() == pb::ReceiptKind::Refused)
    })
    .await;
    assert_eq!(refused.reason(), pb::RefusalReason::UnknownNetwork);
    assert_eq!(refused.subject, "someone@rrag");
    assert!(refused.signer.contains("relay-gfp"), "{}", refused.signer);

    // A malicious peer (a real arin-ea relay certificate) forges a CARIN
    // sender: a context claiming nl-fiod@carin, signed with its own fp key.
    let evil_relay = fed.pki.creds("arin-ea", Role::Relay, "relay-arin-ea");
    let evil_fp = fed.pki.creds("arin-ea", Role::Fp, "mallory");
    let peers = vec![focal_relay::config::PeerConfig {
        name: "relay-gfp".into(),
        network: NetworkId::new("gfp").unwrap(),
        address: format!("127.0.0.1:{}", fed.nodes["gfp"].port),
        default_route: true,
    }];
    let hello = pb::Hello {
        protocol_version: 1,
        relay: "relay-arin-ea".into(),
        networks: vec!["arin-ea".into()],
        ..Default::default()
    };
    let socket = UdpSocket::bind(("127.0.0.1", evil_port)).unwrap();
    let evil = Federation::start(
        socket,
        &evil_relay,
        fed.pki.trust(),
        hello,
        &peers,
        Arc::new(Nothing),
        Tuning::default(),
    )
    .unwrap();
    let link = evil.link("relay-gfp").unwrap();
    let gfp_peer = tokio::time::timeout(DEADLINE, link.wait_connected()).await.unwrap().unwrap();
    assert_eq!(gfp_peer.hello.log_origin, "focal/gfp/relay-gfp", "the hello names the audit log");
    assert_eq!(gfp_peer.hello.log_key.len(), 32, "and carries its Ed25519 key");
    let payload = b"forged".to_vec();
    let forge = |sender_cert: &focal_certs::Credentials, sign_with: &focal_certs::Credentials| {
        let params = ContextParams {
            msg_id: envelope::new_msg_id(),
            sender: Address::parse("nl-fiod@carin").unwrap(),
            recipients: vec![Address::parse("za-afu@arinsa").unwrap()],
            created_at_ms: now_ms(),
            expires_at_ms: now_ms() + 600_000,
            handling: pb::HandlingCode::H1,
            priority: pb::Priority::Normal,
            forward_of: None,
            broadcast_network: None,
        };
        let context = envelope::build_context(&params).unwrap();
        let digest = envelope::sha256(&payload);
        pb::EnvelopeHeader {
            signature: envelope::sign(&sign_with.signing_key().unwrap(), &context, &digest),
            context,
            sender_cert: sender_cert.cert_der().to_vec(),
            payload_sha256: digest.to_vec(),
            payload_size: payload.len() as u64,
            hops: vec![pb::Hop { relay: "relay-arin-ea".into(), network: "arin-ea".into(), at_ms: now_ms() }],
            deliver_to: vec![],
        }
    };
    let ack =
        link.send_envelope(forge(&evil_fp, &evil_fp), std::io::Cursor::new(payload.clone())).await.unwrap();
    assert_eq!(ack.status(), pb::TransferStatus::Refused, "{}", ack.detail);
    assert!(ack.detail.contains("not of the sender"), "{}", ack.detail);
    // And a CARIN certificate (public) with a signature by another key.
    let ack = link
        .send_envelope(forge(&alice.creds, &evil_fp), std::io::Cursor::new(payload.clone()))
        .await
        .unwrap();
    assert_eq!(ack.status(), pb::TransferStatus::Refused, "{}", ack.detail);
    let before = bob.inbox().await.len();
    assert_eq!(before, 1, "Bob has the 3-network message only (the sealed one was acked)");
    evil.close().await;

    // The audit trail of the sealed message: ACCEPTED (hop 0) and FORWARDED
    // at CARIN; RECEIVED (hop 1) and FORWARDED at the hub; RECEIVED (hop 2)
    // and DELIVERED at ARINSA. The forgeries are REFUSED at the hub.
    use pb::AuditKind as K;
    let trail = |log: &[pb::AuditRecord]| -> Vec<(K, u32, String)> {
        log.iter().filter(|r| r.msg_id == params.msg_id).map(|r| (r.kind(), r.hop, r.peer.clone())).collect()
    };
    let carin = audit_log(&fed, "carin").await;
    assert_eq!(
        trail(&carin),
        [
            (K::Accepted, 0, "focal://carin/fp/nl-fiod".to_string()),
            (K::Forwarded, 0, "relay-gfp".to_string())
        ]
    );
    let gfp = audit_log(&fed, "gfp").await;
    assert_eq!(
        trail(&gfp),
        [
            (K::Received, 1, "focal://carin/relay/relay-carin".to_string()),
            (K::Forwarded, 1, "relay-arinsa".to_string())
        ]
    );
    let forged: Vec<_> = gfp
        .iter()
        .filter(|r| r.kind() == K::Refused && r.peer == "focal://arin-ea/relay/relay-arin-ea")
        .collect();
    assert_eq!(forged.len(), 2, "both forgeries refused and audited");
    assert!(gfp.iter().any(|r| r.kind() == K::Refused && r.reason() == pb::RefusalReason::UnknownNetwork));
    assert!(gfp.iter().any(|r| r.kind() == K::PeerConnected));
    let arinsa = audit_log(&fed, "arinsa").await;
    let kinds: Vec<_> = trail(&arinsa).into_iter().map(|(k, hop, _)| (k, hop)).collect();
    assert_eq!(kinds[..2], [(K::Received, 2), (K::Delivered, 2)]);

    fed.stop_all().await;
}

/// A handler for the test's malicious relay: answers nothing useful.
struct Nothing;

impl InboundHandler for Nothing {
    fn envelope<'a>(
        &'a self,
        _: Arc<RemotePeer>,
        _: pb::EnvelopeHeader,
        _: &'a mut InboundPayload,
    ) -> BoxFuture<'a, EnvelopeAnswer> {
        Box::pin(async {
            pb::TransferAck { status: pb::TransferStatus::Refused as i32, ..Default::default() }.into()
        })
    }
    fn receipt(&self, _: Arc<RemotePeer>, r: pb::ReceiptTransfer) -> BoxFuture<'_, pb::ReceiptAck> {
        Box::pin(async move {
            pb::ReceiptAck { receipt_id: r.receipt_id, status: pb::TransferStatus::Stored as i32 }
        })
    }
    fn directory_query(
        &self,
        _: Arc<RemotePeer>,
        q: pb::DirectoryQuery,
    ) -> BoxFuture<'_, pb::DirectoryAnswer> {
        Box::pin(
            async move { pb::DirectoryAnswer { query_id: q.query_id, entries: vec![], error: "no".into() } },
        )
    }
    fn cosign(&self, _: Arc<RemotePeer>, _: pb::CosignRequest) -> BoxFuture<'_, pb::CosignResponse> {
        Box::pin(async { pb::CosignResponse::default() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_down_and_hub_restarted_200_messages_arrive_once_in_order() {
    init();
    let mut fed = federation(
        &["gfp", "carin", "arinsa"],
        &["gfp", "carin", "arinsa"],
        &[("carin", "gfp", true), ("arinsa", "gfp", true)],
        &[],
    )
    .await;
    let alice = fed.fp("carin", "nl-fiod").await;
    fed.nodes.get_mut("arinsa").unwrap().stop().await;

    // 100 messages queue at the hub; then the hub restarts (its outbox is
    // restored from its store) while 100 more queue at CARIN.
    let mut sent = Vec::new();
    let send = |i: u32| {
        let payload = common::random_bytes(100 + i as usize, i as u8);
        let h = header_to(&alice, &["za-afu@arinsa"], &payload);
        let id = common::msg_id(&h);
        let alice = &alice;
        async move {
            alice.send_header(h, &payload).await.unwrap();
            id
        }
    };
    for i in 0..100u32 {
        sent.push(send(i).await);
    }
    fed.nodes.get_mut("gfp").unwrap().stop().await;
    for i in 100..200u32 {
        sent.push(send(i).await);
    }
    fed.nodes.get_mut("gfp").unwrap().start().await;
    // ARINSA comes back on the same port and data.
    fed.nodes.get_mut("arinsa").unwrap().start().await;
    let back = Instant::now();
    let bob = fed.fp("arinsa", "za-afu").await;
    let got = eventually("200 messages at ARINSA", || async {
        let inbox = bob.inbox().await;
        (inbox.len() >= 200).then_some(inbox)
    })
    .await;
    eprintln!("200 messages delivered {:?} after ARINSA's restart", back.elapsed());
    let ids: Vec<Vec<u8>> = got.iter().map(|m| common::msg_id(m.header.as_ref().unwrap())).collect();
    assert_eq!(ids, sent, "each message once, in the order sent");
    // Nothing more turns up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bob.inbox().await.len(), 200);
    fed.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_expires_in_the_outbox_comes_back_as_a_relay_signed_expired_receipt() {
    init();
    let mut fed = federation(&["gfp", "carin"], &["gfp", "carin"], &[("carin", "gfp", true)], &[]).await;
    let alice = fed.fp("carin", "nl-fiod").await;
    fed.nodes.get_mut("gfp").unwrap().stop().await;
    let payload = b"short-lived".to_vec();
    let h = alice.header(&["x@arinsa"], &payload, |p| p.expires_at_ms = now_ms() + 1_500);
    alice.send_header(h.clone(), &payload).await.unwrap();
    let expired = eventually("the EXPIRED receipt", || async {
        receipts(&alice).await.into_iter().find(|r| r.kind() == pb::ReceiptKind::Expired)
    })
    .await;
    assert_eq!(expired.msg_id, common::msg_id(&h));
    assert_eq!(expired.subject, "x@arinsa");
    assert!(expired.signer.contains("relay-carin"), "{}", expired.signer);
    let log = audit_log(&fed, "carin").await;
    assert!(log.iter().any(|r| r.kind() == pb::AuditKind::Expired && r.peer == "relay-gfp"));
    fed.nodes.get_mut("carin").unwrap().stop().await;
}
