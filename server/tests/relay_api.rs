//! The relay's gRPC API over real mTLS on 127.0.0.1 with a real sled store
//! in a temp dir: the happy path (send, inbox replay and live push, fetch
//! from an offset, ack, receipts), every refusal with its precise status and
//! the store unchanged, the directory, expiry receipts, health, reflection,
//! and a graceful shutdown after which a restarted relay finds everything.

mod common;

use std::time::Duration;

use common::*;
use focal_proto::Role;
use focal_proto::pb::{self, inbox_event::Event};
use prost::Message;
use tonic::Code;

const LIMITS: &str =
    "[limits]\nmax_message_bytes = 1000000\nmax_lifetime_secs = 86400\nshutdown_grace_secs = 2\n";

async fn relay(pki: &Pki, data: &std::path::Path) -> TestRelay {
    TestRelay::start(&pki.relay_config("carin", data, LIMITS)).await
}

async fn next_event(s: &mut tonic::Streaming<pb::InboxEvent>) -> Event {
    let ev = tokio::time::timeout(Duration::from_secs(30), s.message()).await.expect("event within 30 s");
    ev.unwrap().expect("stream open").event.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_inbox_fetch_ack_and_receipts() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = relay(&pki, data.path()).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let b = Fp::connect(&pki, "carin", "b", relay.addr).await;
    let c = Fp::connect(&pki, "carin", "c", relay.addr).await;

    let small = random_bytes(1_000, 1);
    let large = random_bytes(300_000, 2); // a payload file, several fetch chunks
    let (r1, h1) = a.send(&["b@carin", "c@carin"], &small).await.unwrap();
    let (r2, h2) = a.send(&["b@carin", "c@carin"], &large).await.unwrap();
    assert_eq!(r1.msg_id, msg_id(&h1));
    assert_eq!(r1.relay, "relay-carin");
    assert!(r2.audit_leaf_index > r1.audit_leaf_index);
    assert!(r1.accepted_at_ms > 0);

    let inbox = b.inbox().await;
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[0].header.as_ref().unwrap().context, h1.context);
    assert_eq!(inbox[1].header.as_ref().unwrap().context, h2.context);
    assert!(inbox[0].mailbox_seq < inbox[1].mailbox_seq);
    let hops = &inbox[0].header.as_ref().unwrap().hops;
    assert_eq!((hops.len(), hops[0].relay.as_str(), hops[0].network.as_str()), (1, "relay-carin", "carin"));

    let (fh, got) = b.fetch("a@carin", &r2.msg_id, 0).await.unwrap();
    assert_eq!(fh.context, h2.context);
    assert_eq!(got, large);
    let (_, tail) = c.fetch("a@carin", &r2.msg_id, 250_000).await.unwrap();
    assert_eq!(tail, large[250_000..], "resumable from an offset");
    assert_eq!(c.fetch("a@carin", &r1.msg_id, 0).await.unwrap().1, small);
    let e = c.fetch("a@carin", &r1.msg_id, 5_000).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");

    // Live push after the replay.
    let req = pb::InboxRequest { include_receipts: false, replay_only: false };
    let mut live = c.relay().inbox(req).await.unwrap().into_inner();
    assert!(matches!(next_event(&mut live).await, Event::Message(_)));
    assert!(matches!(next_event(&mut live).await, Event::Message(_)));
    assert!(matches!(next_event(&mut live).await, Event::ReplayDone(true)));
    let (_, h3) = a.send(&["c@carin"], b"third").await.unwrap();
    match next_event(&mut live).await {
        Event::Message(m) => assert_eq!(m.header.unwrap().context, h3.context),
        other => panic!("{other:?}"),
    }

    // Ack, then the DELIVERED receipt reaches the sender (live and listed).
    let req = pb::InboxRequest { include_receipts: true, replay_only: false };
    let mut a_live = a.relay().inbox(req).await.unwrap().into_inner();
    assert!(matches!(next_event(&mut a_live).await, Event::ReplayDone(true)));
    b.ack(&h1, b.delivered(&h1)).await.unwrap();
    let Event::Receipt(live_receipt) = next_event(&mut a_live).await else { panic!("receipt expected") };
    let body = pb::ReceiptBody::decode(live_receipt.signed.as_ref().unwrap().body.as_slice()).unwrap();
    assert_eq!((body.kind(), body.subject.as_str()), (pb::ReceiptKind::Delivered, "b@carin"));
    let listed = a.relay().receipts(pb::ReceiptsRequest { since_ms: 0 }).await.unwrap().into_inner().receipts;
    assert_eq!(listed, vec![live_receipt]);
    assert_eq!(b.inbox().await.len(), 1);
    let e = b.ack(&h1, b.delivered(&h1)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(b.fetch("a@carin", &r1.msg_id, 0).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.fetch("a@carin", &r1.msg_id, 0).await.unwrap().1, small, "c has not acked yet");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_precise_statuses_and_change_nothing() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = relay(&pki, data.path()).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let b = Fp::connect(&pki, "carin", "b", relay.addr).await;
    let c = Fp::connect(&pki, "carin", "c", relay.addr).await;
    let auditor = Fp::connect_role(&pki, "carin", Role::Auditor, "aud", relay.addr).await;
    let p = random_bytes(2_000, 3);
    let now = now_ms();
    let check = |r: Result<pb::SendResponse, tonic::Status>, code: Code, text: &str| {
        let e = r.expect_err("refused");
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(text), "{:?} does not contain {text:?}", e.message());
    };

    check(auditor.send(&["b@carin"], &p).await.map(|r| r.0), Code::PermissionDenied, "only focal points");

    // The envelope names b as sender, but a is calling.
    let mut spoof = a.header(&["c@carin"], &p, |c| c.sender = b.addr.clone());
    check(
        a.send_header(spoof.clone(), &p).await,
        Code::PermissionDenied,
        "envelope sender b@carin is not the caller a@carin",
    );
    // Sender a, but b's certificate in the header.
    spoof = a.header(&["c@carin"], &p, |_| {});
    spoof.sender_cert = b.creds.cert_der().to_vec();
    check(
        a.send_header(spoof, &p).await,
        Code::PermissionDenied,
        "sender_cert is the certificate of focal://carin/fp/b",
    );

    let mut bad = a.header(&["b@carin"], &p, |_| {});
    bad.signature[5] ^= 1;
    check(a.send_header(bad, &p).await, Code::InvalidArgument, "bad signature");

    let expired = a.header(&["b@carin"], &p, |c| {
        c.created_at_ms = now - 20_000;
        c.expires_at_ms = now - 10_000;
    });
    check(a.send_header(expired, &p).await, Code::FailedPrecondition, "message expired");
    let future = a.header(&["b@carin"], &p, |c| {
        c.created_at_ms = now + 3_600_000;
        c.expires_at_ms = now + 7_200_000;
    });
    check(a.send_header(future, &p).await, Code::FailedPrecondition, "ahead of the relay clock");
    let long = a.header(&["b@carin"], &p, |c| c.expires_at_ms = now + 2 * 86_400_000);
    check(a.send_header(long, &p).await, Code::InvalidArgument, "exceeds this relay's maximum of 86400 s");

    let big = random_bytes(1_000_001, 4);
    check(
        a.send(&["b@carin"], &big).await.map(|r| r.0),
        Code::ResourceExhausted,
        "exceeds this relay's maximum of 1000000 bytes",
    );

    let h = a.header(&["b@carin"], &p, |_| {});
    let other = random_bytes(p.len(), 9);
    check(a.send_header(h.clone(), &other).await, Code::InvalidArgument, "payload digest mismatch");
    check(
        a.send_header(h.clone(), &p[..100]).await,
        Code::InvalidArgument,
        "header says 2000 bytes, received 100",
    );
    check(
        a.send_header(h.clone(), &[p.clone(), vec![0]].concat()).await,
        Code::InvalidArgument,
        "longer than the header",
    );

    let remote = a.header(&["b@carin", "x@arinsa"], &p, |_| {});
    check(a.send_header(remote, &p).await, Code::FailedPrecondition, "no federation route to arinsa");

    let mut garbage = a.header(&["b@carin"], &p, |_| {});
    garbage.context = vec![0xff, 0x01, 0x02];
    check(a.send_header(garbage, &p).await, Code::InvalidArgument, "context:");

    let chunk_first = vec![pb::SendRequest { part: Some(pb::send_request::Part::Chunk(p.clone())) }];
    let r = a.relay().send(tokio_stream::iter(chunk_first)).await.map(|r| r.into_inner());
    check(r, Code::InvalidArgument, "first SendRequest must carry the header");

    // Bytes that are not a SendRequest: tonic's prost decoder answers INTERNAL.
    let r = raw_send(&a, vec![0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(r.unwrap_err().code(), Code::Internal);

    assert!(b.inbox().await.is_empty(), "no refused send reached a mailbox");

    // Accepted once, then a duplicate.
    a.send_header(h.clone(), &p).await.unwrap();
    check(a.send_header(h.clone(), &p).await, Code::AlreadyExists, "was already accepted");
    assert_eq!(b.inbox().await.len(), 1);

    // Only recipients fetch; unknown messages are NOT_FOUND.
    let id = msg_id(&h);
    assert_eq!(c.fetch("a@carin", &id, 0).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(b.fetch("a@carin", &[7; 16], 0).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(b.fetch("a@carin", &[7; 3], 0).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(auditor.fetch("a@carin", &id, 0).await.unwrap_err().code(), Code::PermissionDenied);

    // Acks need the caller's own, matching DELIVERED receipt.
    let e = b
        .ack(
            &h,
            c.sign_receipt(pb::ReceiptBody::decode(b.delivered(&h).signed.unwrap().body.as_slice()).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut wrong = pb::ReceiptBody::decode(b.delivered(&h).signed.unwrap().body.as_slice()).unwrap();
    wrong.payload_sha256 = vec![0; 32];
    let e = b.ack(&h, b.sign_receipt(wrong)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("delivered.body.payload_sha256"), "{e:?}");
    let mut tampered = b.delivered(&h);
    tampered.signed.as_mut().unwrap().body.push(0);
    assert_eq!(b.ack(&h, tampered).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(b.inbox().await.len(), 1, "refused acks change nothing");
    b.ack(&h, b.delivered(&h)).await.unwrap();
    relay.stop().await.unwrap();
}

/// Sends raw bytes as the one message of a Send call.
async fn raw_send(fp: &Fp, bytes: Vec<u8>) -> Result<tonic::Response<Vec<u8>>, tonic::Status> {
    #[derive(Clone, Default)]
    struct Raw;
    impl tonic::codec::Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }
    impl tonic::codec::Encoder for Raw {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            dst: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            bytes::BufMut::put_slice(dst, &item);
            Ok(())
        }
    }
    impl tonic::codec::Decoder for Raw {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(
            &mut self,
            src: &mut tonic::codec::DecodeBuf<'_>,
        ) -> Result<Option<Vec<u8>>, tonic::Status> {
            use bytes::Buf;
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
    let mut grpc = tonic::client::Grpc::new(fp.channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/focal.v1.Relay/Send");
    grpc.client_streaming(tonic::Request::new(tokio_stream::iter(vec![bytes])), path, Raw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_publish_and_lookup() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = relay(&pki, data.path()).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let b = Fp::connect(&pki, "carin", "b", relay.addr).await;
    let auditor = Fp::connect_role(&pki, "carin", Role::Auditor, "aud", relay.addr).await;
    let dir = |fp: &Fp| focal_proto::pb::directory_client::DirectoryClient::new(fp.channel.clone());
    let now = now_ms();
    let entry = |fp: &Fp, serial| {
        focal_certs::make_directory_entry(
            &fp.creds,
            [serial as u8; 32],
            serial,
            now - 1000,
            now + 86_400_000,
            true,
            "A",
        )
        .unwrap()
    };

    dir(&a).publish(entry(&a, 2)).await.unwrap();
    let got = dir(&b).lookup(pb::LookupRequest { address: "a@carin".into() }).await.unwrap().into_inner();
    assert_eq!(got, entry(&a, 2), "the signed entry as published (Ed25519 signatures are deterministic)");
    let body = pb::DirectoryEntryBody::decode(got.signed.unwrap().body.as_slice()).unwrap();
    assert_eq!((body.address.as_str(), body.key_serial), ("a@carin", 2));
    assert!(dir(&auditor).lookup(pb::LookupRequest { address: "a@carin".into() }).await.is_ok());

    let e = dir(&a).publish(entry(&b, 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut tampered = entry(&a, 3);
    tampered.signed.as_mut().unwrap().body.push(1);
    assert_eq!(dir(&a).publish(tampered).await.unwrap_err().code(), Code::InvalidArgument);
    let e = dir(&a).publish(entry(&a, 1)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "older key serial: {e:?}");
    assert_eq!(dir(&auditor).publish(entry(&a, 4)).await.unwrap_err().code(), Code::PermissionDenied);

    let e = dir(&a).lookup(pb::LookupRequest { address: "nobody@carin".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = dir(&a).lookup(pb::LookupRequest { address: "x@arinsa".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("no federation route to arinsa"), "{e:?}");
    let e = dir(&a).lookup(pb::LookupRequest { address: "not an address".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    dir(&b).publish(entry(&b, 1)).await.unwrap();
    let all =
        dir(&a).list_members(pb::ListMembersRequest { network: "carin".into() }).await.unwrap().into_inner();
    assert_eq!(all.entries.len(), 2);
    let e = dir(&a).list_members(pb::ListMembersRequest { network: "arinsa".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_other_networks_and_silent_clients() {
    init();
    let pki = Pki::new(&["carin", "arinsa"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = relay(&pki, data.path()).await;
    // A client that opens TCP and never speaks TLS must not hold up others.
    let _silent = tokio::net::TcpStream::connect(relay.addr).await.unwrap();

    let outsider = pki.creds("arinsa", Role::Fp, "x");
    let refused = match channel(pki.trust(), &outsider, "carin", relay.addr).await {
        Err(_) => true,
        // TLS 1.3: the client may finish first and learn at its first RPC.
        Ok(ch) => focal_proto::pb::relay_client::RelayClient::new(ch)
            .receipts(pb::ReceiptsRequest { since_ms: 0 })
            .await
            .is_err(),
    };
    assert!(refused, "an arinsa focal point must not reach the carin relay");

    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    a.send(&["a@carin"], b"to myself").await.unwrap();
    assert_eq!(a.inbox().await.len(), 1);
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_leave_and_the_sender_gets_a_relay_signed_receipt() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = relay(&pki, data.path()).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let b = Fp::connect(&pki, "carin", "b", relay.addr).await;
    let req = pb::InboxRequest { include_receipts: true, replay_only: false };
    let mut a_live = a.relay().inbox(req).await.unwrap().into_inner();
    assert!(matches!(next_event(&mut a_live).await, Event::ReplayDone(true)));

    let p = random_bytes(500, 5);
    let h = a.header(&["b@carin"], &p, |c| c.expires_at_ms = c.created_at_ms + 1_500);
    a.send_header(h.clone(), &p).await.unwrap();
    let Event::Receipt(r) = next_event(&mut a_live).await else { panic!("receipt expected") };
    let blob = r.signed.unwrap();
    focal_proto::signed::verify_blob(focal_proto::signed::TAG_RECEIPT, &blob).unwrap();
    let signer = focal_certs::identity_of_cert(&blob.signer_cert).unwrap();
    assert_eq!(signer.uri(), "focal://carin/relay/relay-carin");
    let body = pb::ReceiptBody::decode(blob.body.as_slice()).unwrap();
    assert_eq!(body.kind(), pb::ReceiptKind::Expired);
    assert_eq!((body.subject.as_str(), body.msg_id.as_slice()), ("b@carin", msg_id(&h).as_slice()));
    assert!(b.inbox().await.is_empty());
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_graceful_shutdown_and_restart() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let config = pki.relay_config("carin", data.path(), LIMITS);
    let mut relay = TestRelay::start(&config).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;

    let mut health = HealthClient::new(a.channel.clone());
    for service in ["", "focal.v1.Relay", "focal.v1.Directory", "focal.v1.Audit"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }

    let mut refl = ServerReflectionClient::new(a.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut s = refl.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        s.message().await.unwrap().unwrap().message_response
    else {
        panic!("list services response expected")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["focal.v1.Relay", "focal.v1.Directory", "focal.v1.Audit", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }

    let (sent, _) = a.send(&["a@carin"], &random_bytes(100_000, 6)).await.unwrap();
    let mut watch =
        health.watch(HealthCheckRequest { service: "focal.v1.Relay".into() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);
    relay.trigger_shutdown();
    let during =
        tokio::time::timeout(Duration::from_secs(30), watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(during.status(), ServingStatus::NotServing);
    drop(watch);
    relay.stop().await.unwrap();

    // Same data dir, new process-local relay: everything accepted is there.
    let mut relay = TestRelay::start(&config).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let inbox = a.inbox().await;
    assert_eq!(inbox.len(), 1);
    let (_, got) = a.fetch("a@carin", &sent.msg_id, 0).await.unwrap();
    assert_eq!(got, random_bytes(100_000, 6));
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_new_sends_and_keeps_what_it_holds() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), "")).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let (kept, _) = a.send(&["a@carin"], b"kept").await.unwrap();
    relay.stop().await.unwrap();

    // Restarted with a limit below what the store already holds.
    let small = pki.relay_config("carin", data.path(), "[limits]\nmax_store_bytes = 1000\n");
    let mut relay = TestRelay::start(&small).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let e = a.send(&["a@carin"], b"refused").await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("store is full"), "{e:?}");
    assert_eq!(a.inbox().await.len(), 1);
    assert_eq!(a.fetch("a@carin", &kept.msg_id, 0).await.unwrap().1, b"kept");
    relay.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_dropped_not_buffered() {
    init();
    let pki = Pki::new(&["carin"]);
    let data = tempfile::tempdir().unwrap();
    let extra = "[limits]\ninbox_live_buffer = 8\nsends_per_minute = 100000\n";
    let mut relay = TestRelay::start(&pki.relay_config("carin", data.path(), extra)).await;
    let a = Fp::connect(&pki, "carin", "a", relay.addr).await;
    let b = Fp::connect(&pki, "carin", "b", relay.addr).await;
    let req = pb::InboxRequest { include_receipts: false, replay_only: false };
    let mut live = b.relay().inbox(req).await.unwrap().into_inner();
    assert!(matches!(next_event(&mut live).await, Event::ReplayDone(true)));

    // b does not read while far more than the HTTP/2 windows and the live
    // buffer can hold is pushed to it (each event is a ~0.7 KB header).
    const N: usize = 2_000;
    for round in 0..N / 100 {
        let sends = (0..100).map(|i| {
            let a = &a;
            async move { a.send(&["b@carin"], &[(round * 100 + i) as u8; 16]).await.unwrap() }
        });
        futures::future::join_all(sends).await;
    }
    let mut received = 0;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(30), live.message()).await.expect("stream moves") {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("stream ended without a status after {received} events"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("reconnect to replay"), "{status:?}");
    assert!(received < N, "{received}");
    // Nothing was lost: the mailbox replays everything.
    assert_eq!(b.inbox().await.len(), N);
    relay.stop().await.unwrap();
}
