//! Who may not open or keep a federation link: a relay announcing a network
//! its certificate is not of, an `fp` certificate, an unconfigured relay, a
//! wrong ALPN; and a peer sending oversized or garbage frames, or flooding,
//! is cut off (or slowed) while another peer's transfers keep flowing.

mod federation_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_support::*;
use focal_proto::{Role, pb};
use focal_relay::federation::{Direction, LinkEvent, RefusalKind, Tuning, close_code};

fn refused(kind: RefusalKind) -> impl Fn(&LinkEvent) -> bool {
    move |e| matches!(e, LinkEvent::Refused(r) if r.kind == kind && r.direction == Direction::Inbound)
}

fn no_link_event(r: &Relay) -> bool {
    !r.handler.events().iter().any(|e| matches!(e, LinkEvent::Connected(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_of_network_a_announcing_network_b_is_refused() {
    init();
    let pki = Pki::new(&["carin", "gfp", "arinsa"]);
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let carin_creds = pki.creds("carin", Role::Relay, "relay-carin");
    // gfp knows carin as a peer, but carin's address is a socket nobody serves.
    let idle = udp();
    let mut gfp = start(
        &gfp_creds,
        &pki,
        udp(),
        vec![peer("relay-carin", "carin", idle.local_addr().unwrap())],
        tuning(),
    );

    for networks in [vec!["arinsa"], vec!["carin", "arinsa"], vec![]] {
        let (_ep, conn) =
            raw_connect(&carin_creds, &pki, focal_certs::ALPN_FEDERATION, "gfp", gfp.addr).await.unwrap();
        let mut hello = hello_of(&carin_creds);
        hello.networks = networks.iter().map(|s| s.to_string()).collect();
        let answer = raw_hello(&conn, hello).await;
        assert!(answer.is_err(), "no hello back for networks {networks:?}: {answer:?}");
        assert_eq!(close_code_of(&conn).await, Some(close_code::HELLO_REFUSED as u64));
        let ev = wait_event(&mut gfp.events, "hello refused", refused(RefusalKind::BadHello)).await;
        let LinkEvent::Refused(r) = ev else { unreachable!() };
        assert_eq!(r.identity.unwrap().uri(), "focal://carin/relay/relay-carin");
        assert!(r.reason.contains("certificate is of network \"carin\""), "{}", r.reason);
    }
    // A hello naming another relay than the certificate is refused too.
    let (_ep, conn) =
        raw_connect(&carin_creds, &pki, focal_certs::ALPN_FEDERATION, "gfp", gfp.addr).await.unwrap();
    let mut hello = hello_of(&carin_creds);
    hello.relay = "relay-other".into();
    assert!(raw_hello(&conn, hello).await.is_err());
    assert_eq!(close_code_of(&conn).await, Some(close_code::HELLO_REFUSED as u64));
    // The honest hello on the same certificate is accepted.
    let (_ep, conn) =
        raw_connect(&carin_creds, &pki, focal_certs::ALPN_FEDERATION, "gfp", gfp.addr).await.unwrap();
    let answer = raw_hello(&conn, hello_of(&carin_creds)).await.unwrap();
    assert!(matches!(answer.kind, Some(pb::frame::Kind::Hello(h)) if h == hello_of(&gfp_creds)));
    gfp.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fp_certificate_cannot_open_a_federation_link() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let fp = pki.creds("carin", Role::Fp, "nl-fiod");
    let mut gfp = start(&gfp_creds, &pki, udp(), vec![], tuning());
    // With TLS 1.3 the client may finish its side before the server refuses
    // its certificate: accept a failed connect or a connection that dies
    // before any hello is answered.
    match raw_connect(&fp, &pki, focal_certs::ALPN_FEDERATION, "gfp", gfp.addr).await {
        Err(e) => assert!(!e.is_empty()),
        Ok((_ep, conn)) => {
            let hello = pb::Hello {
                protocol_version: 1,
                relay: "nl-fiod".into(),
                networks: vec!["carin".into()],
                ..Default::default()
            };
            assert!(raw_hello(&conn, hello).await.is_err());
        }
    }
    let ev = wait_event(&mut gfp.events, "handshake refused", refused(RefusalKind::Handshake)).await;
    let LinkEvent::Refused(r) = ev else { unreachable!() };
    assert!(r.identity.is_none());
    assert!(no_link_event(&gfp));
    assert_eq!(gfp.handler.requests.lock().unwrap().len(), 0);
    gfp.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_relay_is_refused_with_a_reason() {
    init();
    let pki = Pki::new(&["gfp", "arinsa"]);
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let arinsa_creds = pki.creds("arinsa", Role::Relay, "relay-arinsa");
    let (gs, as_) = (udp(), udp());
    let ga = gs.local_addr().unwrap();
    let mut gfp = start(&gfp_creds, &pki, gs, vec![], tuning());
    // arinsa believes gfp is its peer; gfp does not know arinsa.
    let mut arinsa = start(&arinsa_creds, &pki, as_, vec![peer("relay-gfp", "gfp", ga)], tuning());
    let ev = wait_event(&mut gfp.events, "unconfigured refused", refused(RefusalKind::Unconfigured)).await;
    let LinkEvent::Refused(r) = ev else { unreachable!() };
    assert_eq!(r.identity.unwrap().uri(), "focal://arinsa/relay/relay-arinsa");
    assert!(r.reason.contains("not a configured peer"), "{}", r.reason);
    // The dialler learns why, as an outbound refusal by the peer.
    let ev = wait_event(&mut arinsa.events, "refused by peer", |e| {
        matches!(e, LinkEvent::Refused(r) if r.kind == RefusalKind::ByPeer && r.direction == Direction::Outbound)
    })
    .await;
    let LinkEvent::Refused(r) = ev else { unreachable!() };
    assert!(r.reason.contains("unconfigured relay"), "{}", r.reason);
    let mut status = arinsa.fed.link("relay-gfp").unwrap().watch();
    let s =
        tokio::time::timeout(DEADLINE, status.wait_for(|s| s.last_error.is_some())).await.unwrap().unwrap();
    assert!(s.last_error.as_ref().unwrap().contains("not a configured peer"), "{s:?}");
    drop(s);
    assert!(no_link_event(&gfp) && no_link_event(&arinsa));
    arinsa.fed.close().await;
    gfp.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_alpn_is_refused() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let carin_creds = pki.creds("carin", Role::Relay, "relay-carin");
    let idle = udp();
    let mut gfp = start(
        &gfp_creds,
        &pki,
        udp(),
        vec![peer("relay-carin", "carin", idle.local_addr().unwrap())],
        tuning(),
    );
    for alpn in [focal_certs::ALPN_GRPC, b"focal-fed/2".as_slice()] {
        match raw_connect(&carin_creds, &pki, alpn, "gfp", gfp.addr).await {
            Err(e) => assert!(!e.is_empty()),
            Ok((_ep, conn)) => assert!(raw_hello(&conn, hello_of(&carin_creds)).await.is_err()),
        }
        wait_event(&mut gfp.events, "handshake refused", refused(RefusalKind::Handshake)).await;
    }
    assert!(no_link_event(&gfp));
    gfp.fed.close().await;
}

/// gfp with two peers: carin (a real relay) and arinsa (played by a raw
/// QUIC client that misbehaves).
struct Bench {
    pki: Pki,
    carin: Relay,
    gfp: Relay,
    arinsa_creds: focal_certs::Credentials,
    _idle: std::net::UdpSocket,
}

fn bench(gfp_tuning: Tuning) -> Bench {
    let pki = Pki::new(&["carin", "gfp", "arinsa"]);
    let carin_creds = pki.creds("carin", Role::Relay, "relay-carin");
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    let arinsa_creds = pki.creds("arinsa", Role::Relay, "relay-arinsa");
    let (cs, gs, idle) = (udp(), udp(), udp());
    let (ca, ga) = (cs.local_addr().unwrap(), gs.local_addr().unwrap());
    let peers =
        vec![peer("relay-carin", "carin", ca), peer("relay-arinsa", "arinsa", idle.local_addr().unwrap())];
    let gfp = start(&gfp_creds, &pki, gs, peers, gfp_tuning);
    let carin = start(&carin_creds, &pki, cs, vec![peer("relay-gfp", "gfp", ga)], tuning());
    Bench { pki, carin, gfp, arinsa_creds, _idle: idle }
}

/// Waits until carin and gfp share exactly one connection. (gfp's endpoint
/// may also hold a dial towards arinsa's silent address, so it is not
/// counted.)
async fn settle_bench(b: &Bench, to_gfp: &focal_relay::federation::LinkHandle) {
    let to_carin = b.gfp.fed.link("relay-carin").unwrap();
    eventually("carin and gfp agree on one connection", || match (to_gfp.remote(), to_carin.remote()) {
        (Some(x), Some(y)) => x.dialled_by_us != y.dialled_by_us && b.carin.fed.open_connections() == 1,
        _ => false,
    })
    .await;
}

/// Connects as arinsa and passes the hello.
async fn evil_peer(b: &Bench) -> (quinn::Endpoint, quinn::Connection) {
    let (ep, conn) =
        raw_connect(&b.arinsa_creds, &b.pki, focal_certs::ALPN_FEDERATION, "gfp", b.gfp.addr).await.unwrap();
    raw_hello(&conn, hello_of(&b.arinsa_creds)).await.unwrap();
    (ep, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_garbage_frames_disconnect_only_that_peer() {
    init();
    let mut b = bench(tuning());
    let to_gfp = b.carin.fed.link("relay-gfp").unwrap();
    settle_bench(&b, &to_gfp).await;
    let generation = to_gfp.status().generation;
    let downs =
        |r: &Relay| r.handler.events().iter().filter(|e| matches!(e, LinkEvent::Disconnected { .. })).count();
    let carin_downs = downs(&b.carin);

    // carin's transfer is in the middle of its payload while arinsa misbehaves.
    let len = 4 * 1024 * 1024;
    let (reader, reached, gate) = PatternReader::gated(len, 1024 * 1024);
    let link = to_gfp.clone();
    let transfer = tokio::spawn(async move { link.send_envelope(header("honest", len), reader).await });
    reached.await.unwrap();

    let one_chunk = |data: Vec<u8>| {
        focal_proto::frame::encode(
            &pb::Frame { kind: Some(pb::frame::Kind::PayloadChunk(pb::PayloadChunk { data })) },
            1 << 20,
        )
        .unwrap()
    };
    let start_of = |size: u64| {
        focal_proto::frame::encode(
            &pb::Frame {
                kind: Some(pb::frame::Kind::TransferStart(pb::TransferStart {
                    header: Some(pb::EnvelopeHeader { payload_size: size, ..Default::default() }),
                })),
            },
            1 << 20,
        )
        .unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // A length prefix of 2 MiB: over the 1 MiB maximum, refused before buffering.
        ("oversized", (2u32 * 1024 * 1024).to_be_bytes().to_vec()),
        // A well-framed body that is not a protobuf Frame.
        ("garbage", [5u32.to_be_bytes().to_vec(), vec![0xff; 5]].concat()),
        // A frame that may not open a stream.
        (
            "unexpected",
            focal_proto::frame::encode(
                &pb::Frame { kind: Some(pb::frame::Kind::TransferEnd(pb::TransferEnd {})) },
                1 << 20,
            )
            .unwrap(),
        ),
        // More payload than the header declares.
        ("too long", [start_of(10), one_chunk(vec![1; 11])].concat()),
        // A chunk over 64 KiB.
        ("big chunk", [start_of(100_000), one_chunk(vec![1; 65_537])].concat()),
    ];
    for (what, bytes) in cases {
        let (_ep, conn) = evil_peer(&b).await;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let _ = send.write_all(&bytes).await;
        assert_eq!(close_code_of(&conn).await, Some(close_code::PROTOCOL_VIOLATION as u64), "{what}");
        let ev = wait_event(&mut b.gfp.events, what, |e| matches!(e, LinkEvent::Violation { .. })).await;
        let LinkEvent::Violation { peer, detail, .. } = ev else { unreachable!() };
        assert_eq!(peer, "relay-arinsa", "{what}");
        assert!(!detail.is_empty());
    }

    // carin's link never dropped and its transfer completes.
    gate.send(()).unwrap();
    let ack = transfer.await.unwrap().unwrap();
    assert_eq!(ack.status, pb::TransferStatus::Stored as i32, "{ack:?}");
    let honest: Vec<_> = b.gfp.handler.envelopes().into_iter().filter(|r| r.from == "relay-carin").collect();
    assert_eq!(honest.len(), 1);
    assert!(honest[0].complete && honest[0].size == len);
    assert_eq!(downs(&b.carin), carin_downs);
    assert_eq!(to_gfp.status().generation, generation);
    let again = to_gfp.send_envelope(header("honest-2", 1000), PatternReader::new(1000)).await.unwrap();
    assert_eq!(again.status, pb::TransferStatus::Stored as i32);
    b.carin.fed.close().await;
    b.gfp.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_flood_is_rate_limited_and_others_keep_flowing() {
    init();
    const RATE: u32 = 100;
    const BURST: u32 = 20;
    let b = bench(Tuning { frames_per_second: RATE, frame_burst: BURST, ..tuning() });
    let to_gfp = b.carin.fed.link("relay-gfp").unwrap();
    settle_bench(&b, &to_gfp).await;
    let (_ep, conn) = evil_peer(&b).await;

    // arinsa floods pings, as many streams at once as gfp allows.
    let started = Instant::now();
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood = {
        let conn = conn.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let pings = (0..300u64).map(|n| {
                let conn = conn.clone();
                let answered = answered.clone();
                async move {
                    let (mut send, mut recv) = conn.open_bi().await.ok()?;
                    let f = pb::Frame { kind: Some(pb::frame::Kind::Ping(pb::Ping { nonce: n })) };
                    send.write_all(&focal_proto::frame::encode(&f, 1 << 20).unwrap()).await.ok()?;
                    send.finish().ok()?;
                    recv.read_to_end(1024).await.ok()?;
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Some(())
                }
            });
            futures::future::join_all(pings).await;
        })
    };

    // Meanwhile carin's traffic (its own budget) flows.
    for i in 0..3 {
        let len = 512 * 1024;
        let ack = to_gfp
            .send_envelope(header(&format!("during-flood-{i}"), len), PatternReader::new(len))
            .await
            .unwrap();
        assert_eq!(ack.status, pb::TransferStatus::Stored as i32);
    }
    // Whatever the machine's speed, the flooder got no more answers than
    // its budget allows: burst + rate x elapsed (+1 for its hello).
    let answered_now = answered.load(std::sync::atomic::Ordering::SeqCst);
    let budget = f64::from(BURST) + f64::from(RATE) * started.elapsed().as_secs_f64() + 1.0;
    assert!((answered_now as f64) <= budget, "{answered_now} answers within a budget of {budget}");
    // The flood is slowed, not fatal: all pings are answered in the end.
    tokio::time::timeout(Duration::from_secs(60), flood).await.unwrap().unwrap();
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 300);
    let budget = f64::from(BURST) + f64::from(RATE) * started.elapsed().as_secs_f64() + 1.0;
    assert!(300.0 <= budget);
    assert!(conn.close_reason().is_none());
    b.carin.fed.close().await;
    b.gfp.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialled_address_answering_with_another_relays_certificate_is_refused() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    // A valid carin relay certificate, but not the relay gfp means to reach.
    let impostor_creds = pki.creds("carin", Role::Relay, "relay-carin-b");
    let (gs, is) = (udp(), udp());
    let (ga, ia) = (gs.local_addr().unwrap(), is.local_addr().unwrap());
    let impostor = start(&impostor_creds, &pki, is, vec![peer("relay-gfp", "gfp", ga)], tuning());
    let mut gfp = start(&gfp_creds, &pki, gs, vec![peer("relay-carin", "carin", ia)], tuning());
    let ev = wait_event(&mut gfp.events, "identity mismatch", |e| {
        matches!(e, LinkEvent::Refused(r) if r.kind == RefusalKind::IdentityMismatch && r.direction == Direction::Outbound)
    })
    .await;
    let LinkEvent::Refused(r) = ev else { unreachable!() };
    assert_eq!(r.peer.as_deref(), Some("relay-carin"));
    assert_eq!(r.identity.unwrap().uri(), "focal://carin/relay/relay-carin-b");
    assert!(gfp.fed.link("relay-carin").unwrap().remote().is_none());
    assert!(no_link_event(&gfp) && no_link_event(&impostor));
    impostor.fed.close().await;
    gfp.fed.close().await;
}

/// A relay whose TLS handshake passed under the old trust and whose hello
/// ends after a reload that distrusts it (its network taken out of the
/// bundle) is closed as REVOKED, not adopted: the reload closes only
/// adopted connections, so one stalled in its hello used to slip through.
/// (If the relay had not yet checked the certificate when the trust
/// changed, its TLS layer refuses the handshake instead: also not adopted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_hello_ends_after_a_reload_distrusting_it_is_closed() {
    init();
    let b = bench(tuning());
    let (_ep, conn) =
        raw_connect(&b.arinsa_creds, &b.pki, focal_certs::ALPN_FEDERATION, "gfp", b.gfp.addr).await.unwrap();
    let mut bundle = b.pki.trust.current().bundle().clone();
    bundle.networks.remove(&net("arinsa"));
    b.pki.trust.replace(focal_certs::TrustStore::new(bundle, vec![]).unwrap());
    let _ = raw_hello(&conn, hello_of(&b.arinsa_creds)).await;
    let closed =
        tokio::time::timeout(Duration::from_secs(30), conn.closed()).await.expect("not closed in time");
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), close_code::REVOKED as u64, "{c:?}");
        }
        // The client's handshake completes before the relay has checked the
        // client's certificate; if the trust changed in between, the relay's
        // TLS layer refuses it (a TLS alert, QUIC crypto error 0x1xx).
        quinn::ConnectionError::ConnectionClosed(c) if (0x100..0x200).contains(&u64::from(c.error_code)) => {}
        other => panic!("closed for another reason: {other:?}"),
    }
    assert!(b.gfp.fed.link("relay-arinsa").unwrap().remote().is_none(), "not adopted");
    b.gfp.fed.close().await;
    b.carin.fed.close().await;
}
