//! Federation links between two real relays over QUIC on loopback: link up,
//! hellos, a multi-MiB streamed envelope and its ack, request/response
//! streams, and exactly one connection when both sides dial at once.

mod federation_support;

use federation_support::*;
use focal_proto::{Role, pb};
use focal_relay::federation::{Federation, LinkEvent, Tuning};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_link_exchange_hellos_and_transfer_several_mib() {
    init();
    let Pair { carin_creds, gfp_creds, carin, gfp, .. } = Pair::start(tuning()).await;
    let to_gfp = carin.fed.link("relay-gfp").expect("configured");
    let to_carin = gfp.fed.link("relay-carin").expect("configured");
    assert!(carin.fed.link("relay-nobody").is_none());
    let remote_gfp = to_gfp.remote().unwrap();
    let remote_carin = to_carin.remote().unwrap();

    // Each side sees the other's hello, checked against its certificate.
    assert_eq!(remote_gfp.hello, hello_of(&gfp_creds));
    assert_eq!(remote_gfp.identity.uri(), "focal://gfp/relay/relay-gfp");
    assert_eq!(remote_carin.hello, hello_of(&carin_creds));
    assert_eq!(remote_carin.hello.networks, vec!["carin".to_string()]);

    // Several MiB, streamed from a generated reader, acked after the
    // receiver hashed every byte.
    let len = 6 * 1024 * 1024 + 12_345;
    let ack = to_gfp.send_envelope(header("env-1", len), PatternReader::new(len)).await.unwrap();
    assert_eq!(ack.status, pb::TransferStatus::Stored as i32, "{ack:?}");
    assert_eq!(ack.msg_id, b"env-1");
    let got = gfp.handler.envelopes();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!((r.from.as_str(), r.size, r.complete), ("relay-carin", len, true));
    assert_eq!(r.sha256, pattern_sha256(len));
    assert!(r.largest_chunk <= 64 * 1024);
    assert!(r.chunks >= (len / (64 * 1024)) as usize);

    // The other way, and an empty payload.
    let ack = to_carin.send_envelope(header("env-2", 1000), PatternReader::new(1000)).await.unwrap();
    assert_eq!(ack.status, pb::TransferStatus::Stored as i32);
    let ack = to_carin.send_envelope(header("env-3", 0), PatternReader::new(0)).await.unwrap();
    assert_eq!(ack.status, pb::TransferStatus::Stored as i32);
    assert_eq!(carin.handler.envelopes().len(), 2);

    // Several transfers at once on one link.
    let sends = (0..8u64).map(|i| {
        let l = to_gfp.clone();
        async move {
            let len = 100_000 + i * 7;
            l.send_envelope(header(&format!("c-{i}"), len), PatternReader::new(len)).await
        }
    });
    for ack in futures::future::join_all(sends).await {
        assert_eq!(ack.unwrap().status, pb::TransferStatus::Stored as i32);
    }
    assert_eq!(gfp.handler.envelopes().len(), 9);

    // A source that gives fewer bytes than declared is abandoned, not sent.
    let err = to_gfp.send_envelope(header("short", 5000), PatternReader::new(4000)).await.unwrap_err();
    assert!(err.to_string().contains("header declares 5000"), "{err}");

    // A receiver that already has the envelope answers at once; the sender
    // stops streaming and gets that answer.
    let len = 8 * 1024 * 1024;
    let ack = to_gfp.send_envelope(header("dup-1", len), PatternReader::new(len)).await.unwrap();
    assert_eq!(ack.status, pb::TransferStatus::Duplicate as i32, "{ack:?}");
    assert!(gfp.handler.requests.lock().unwrap().contains(&format!("duplicate of {len} bytes")));

    // Request/response streams.
    let rid = vec![9u8; 32];
    let ra = to_gfp
        .send_receipt(pb::ReceiptTransfer { receipt_id: rid.clone(), receipt: None, hops: vec![] })
        .await
        .unwrap();
    assert_eq!(ra.receipt_id, rid);
    let da =
        to_gfp.query_directory(pb::DirectoryQuery { query_id: 42, address: "x@gfp".into() }).await.unwrap();
    assert_eq!((da.query_id, da.error.as_str()), (42, "not found"));
    let co = to_carin
        .request_cosign(pb::CosignRequest {
            checkpoint_note: "n".into(),
            consistency_proof: vec![],
            old_size: 5,
        })
        .await
        .unwrap();
    assert_eq!(co.cosignature_line, "— witness 5");
    to_gfp.ping(77).await.unwrap();
    assert_eq!(gfp.handler.requests.lock().unwrap().len(), 3);

    // The link stayed up throughout: no violation, no refusal.
    for ev in gfp.handler.events().iter().chain(carin.handler.events().iter()) {
        assert!(!matches!(ev, LinkEvent::Violation { .. } | LinkEvent::Refused(_)), "{ev:?}");
    }

    carin.fed.close().await;
    gfp.fed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dial_keeps_exactly_the_smaller_relays_connection() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let carin_creds = pki.creds("carin", Role::Relay, "relay-carin");
    let gfp_creds = pki.creds("gfp", Role::Relay, "relay-gfp");
    // Several rounds: the order in which each side sees the two connections varies.
    for round in 0..3 {
        let (cs, gs) = (udp(), udp());
        let (ca, ga) = (cs.local_addr().unwrap(), gs.local_addr().unwrap());
        // Both sockets are bound before either relay starts, so both dial at once.
        let (carin, gfp) = if round % 2 == 0 {
            let c = start(&carin_creds, &pki, cs, vec![peer("relay-gfp", "gfp", ga)], tuning());
            let g = start(&gfp_creds, &pki, gs, vec![peer("relay-carin", "carin", ca)], tuning());
            (c, g)
        } else {
            let g = start(&gfp_creds, &pki, gs, vec![peer("relay-carin", "carin", ca)], tuning());
            let c = start(&carin_creds, &pki, cs, vec![peer("relay-gfp", "gfp", ga)], tuning());
            (c, g)
        };
        let to_gfp = carin.fed.link("relay-gfp").unwrap();
        let to_carin = gfp.fed.link("relay-carin").unwrap();
        // "relay-carin" < "relay-gfp": the connection carin dialled is the one kept.
        eventually("one connection, dialled by carin, on both sides", || {
            let (c, g) = (to_gfp.remote(), to_carin.remote());
            match (c, g) {
                (Some(c), Some(g)) => {
                    c.dialled_by_us
                        && !g.dialled_by_us
                        && carin.fed.open_connections() == 1
                        && gfp.fed.open_connections() == 1
                }
                _ => false,
            }
        })
        .await;
        let ack =
            to_carin.send_envelope(header("after-race", 10_000), PatternReader::new(10_000)).await.unwrap();
        assert_eq!(ack.status, pb::TransferStatus::Stored as i32);
        assert_eq!(carin.fed.open_connections(), 1);
        carin.fed.close().await;
        gfp.fed.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_bad_configuration_naming_the_field() {
    init();
    let pki = Pki::new(&["carin", "gfp"]);
    let carin = pki.creds("carin", Role::Relay, "relay-carin");
    let fp = pki.creds("carin", Role::Fp, "nl-fiod");
    let addr: std::net::SocketAddr = "127.0.0.1:7401".parse().unwrap();
    let handler = std::sync::Arc::new(Recorder::default());
    let try_start = |creds: &focal_certs::Credentials,
                     hello: pb::Hello,
                     peers: Vec<focal_relay::config::PeerConfig>,
                     t: Tuning| {
        Federation::start(udp(), creds, pki.trust.clone(), hello, &peers, handler.clone(), t)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let ok_peer = || peer("relay-gfp", "gfp", addr);
    let mut bad_addr = ok_peer();
    bad_addr.address = "relay-gfp.example".into();
    let cases = [
        (try_start(&carin, hello_of(&carin), vec![ok_peer(), ok_peer()], tuning()), "peers[1].name"),
        (try_start(&carin, hello_of(&carin), vec![bad_addr], tuning()), "peers[0].address"),
        (try_start(&carin, hello_of(&carin), vec![peer("relay-carin", "carin", addr)], tuning()), "itself"),
        (try_start(&carin, hello_of(&carin), vec![peer("Relay", "gfp", addr)], tuning()), "peers[0].name"),
        (try_start(&fp, hello_of(&fp), vec![], tuning()), "not a relay certificate"),
        (
            try_start(
                &carin,
                pb::Hello { networks: vec!["gfp".into()], ..hello_of(&carin) },
                vec![],
                tuning(),
            ),
            "own hello",
        ),
        (
            try_start(&carin, hello_of(&carin), vec![], Tuning { chunk_size: 100_000, ..tuning() }),
            "tuning.chunk_size",
        ),
    ];
    for (err, want) in cases {
        assert!(err.contains(want), "{err:?} should mention {want:?}");
    }
}
