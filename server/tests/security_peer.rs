//! A malicious federation peer against a whole running relay
//! (`focal_relay::serve` with `listen.federation`): a test peer holding a
//! valid CARIN relay certificate (a configured peer of the GFP relay) speaks
//! the real transport (`Federation::start`) and replays a message, before
//! and after its recipient acked it, and sends an expired old message. The
//! recipient sees the message exactly once, the old one never, and the
//! peer's honest traffic keeps flowing.
//!
//! Forged senders, networks not served, floods and garbage frames are in
//! federation_relay.rs and federation_security.rs.

mod common;
mod federation_support;

use std::sync::Arc;

use common::{Fp, Pki, init, now_ms, random_bytes};
use focal_proto::envelope::{self, ContextParams};
use focal_proto::{Address, NetworkId, Role, pb};
use focal_relay::federation::Federation;

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// A header from `alice` (CARIN) to `to`, signed by her, with CARIN's hop.
fn header(
    alice: &focal_certs::Credentials,
    to: &str,
    payload: &[u8],
    created: i64,
    expires: i64,
) -> pb::EnvelopeHeader {
    let params = ContextParams {
        msg_id: envelope::new_msg_id(),
        sender: alice.identity.address(),
        recipients: vec![Address::parse(to).unwrap()],
        created_at_ms: created,
        expires_at_ms: expires,
        handling: pb::HandlingCode::H1,
        priority: pb::Priority::Normal,
        forward_of: None,
        broadcast_network: None,
    };
    let context = envelope::build_context(&params).unwrap();
    let digest = envelope::sha256(payload);
    pb::EnvelopeHeader {
        signature: envelope::sign(&alice.signing_key().unwrap(), &context, &digest),
        context,
        sender_cert: alice.cert_der().to_vec(),
        payload_sha256: digest.to_vec(),
        payload_size: payload.len() as u64,
        hops: vec![pb::Hop { relay: "relay-carin".into(), network: "carin".into(), at_ms: created }],
        deliver_to: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_old_messages_from_a_peer_are_not_delivered_again() {
    init();
    let pki = Pki::new(&["gfp", "carin", "arinsa"]);
    let evil_socket = federation_support::udp();
    let evil_addr = evil_socket.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let peer = format!("[[peers]]\nname = \"relay-carin\"\nnetwork = \"carin\"\naddress = \"{evil_addr}\"\n");
    let path = pki.federated_relay_config("gfp", data.path(), &peer, 0);
    let config = focal_relay::config::RelayConfig::load(&path).unwrap();
    let listeners = focal_relay::Listeners::bind(&config).await.unwrap();
    let grpc = listeners.grpc.local_addr().unwrap();
    let quic = listeners.federation.as_ref().unwrap().local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(focal_relay::serve(config, listeners, async move {
        let _ = stopped.await;
    }));

    // The peer: a real CARIN relay certificate, the real transport.
    let carin = pki.creds("carin", Role::Relay, "relay-carin");
    let peers = vec![focal_relay::config::PeerConfig {
        name: "relay-gfp".into(),
        network: NetworkId::new("gfp").unwrap(),
        address: quic.to_string(),
        default_route: true,
    }];
    let evil = Federation::start(
        evil_socket,
        &carin,
        pki.trust(),
        federation_support::hello_of(&carin),
        &peers,
        Arc::new(federation_support::Recorder::default()),
        federation_support::tuning(),
    )
    .unwrap();
    let link = evil.link("relay-gfp").unwrap();
    tokio::time::timeout(DEADLINE, link.wait_connected()).await.unwrap().unwrap();
    // Both sides dial; "relay-carin" < "relay-gfp", so the connection this
    // side dialled is the one both keep. Wait for it, or a transfer may be
    // cut by the duplicate-connection swap (LinkLost "duplicate connection").
    federation_support::eventually("the link settles on carin's own dial", || {
        link.remote().is_some_and(|r| r.dialled_by_us) && evil.open_connections() == 1
    })
    .await;

    let g = Fp::connect(&pki, "gfp", "g", grpc).await;
    let alice = pki.creds("carin", Role::Fp, "alice");
    let payload = random_bytes(2_000, 8);
    let send = |h: pb::EnvelopeHeader| {
        let link = link.clone();
        let payload = payload.clone();
        async move { link.send_envelope(h, std::io::Cursor::new(payload)).await.unwrap() }
    };
    use pb::TransferStatus as S;

    let now = now_ms();
    let h = header(&alice, "g@gfp", &payload, now, now + 3_600_000);
    assert_eq!(send(h.clone()).await.status(), S::Stored);
    let replay = send(h.clone()).await;
    assert_eq!(replay.status(), S::Duplicate, "{}", replay.detail);
    assert_eq!(g.inbox().await.len(), 1, "a replay is not a second message");
    g.ack(&h, g.delivered(&h)).await.unwrap();
    let replay = send(h.clone()).await;
    assert_eq!(replay.status(), S::Duplicate, "after the ack too: {}", replay.detail);
    assert!(g.inbox().await.is_empty(), "an acked message never comes back");

    // An old message, past its expiry.
    // Refused before the core, so replaying it (here five times) sends no
    // REFUSED receipt per recipient back towards its sender.
    let old = header(&alice, "g@gfp", &payload, now - 7_200_000, now - 3_600_000);
    for _ in 0..5 {
        let ack = send(old.clone()).await;
        assert_eq!(ack.status(), S::Refused, "{}", ack.detail);
        assert!(ack.detail.contains("a replay"), "{}", ack.detail);
    }
    assert!(g.inbox().await.is_empty());

    // The peer's honest traffic still flows.
    let fresh = header(&alice, "g@gfp", &payload, now_ms(), now_ms() + 3_600_000);
    assert_eq!(send(fresh.clone()).await.status(), S::Stored);
    let inbox = g.inbox().await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].header.as_ref().unwrap().context, fresh.context);

    // Non-delivery receipts for g's messages: the peer may pass on one
    // signed by itself or by the recipient's relay, not one signed by a
    // relay of a third network (ARINSA refusing a recipient at RRAG).
    let receipt = |signer: &focal_certs::Credentials, subject: &str| {
        let body = pb::ReceiptBody {
            version: 1,
            msg_id: vec![7; 16],
            original_sender: "g@gfp".into(),
            subject: subject.into(),
            kind: pb::ReceiptKind::Refused as i32,
            reason: pb::RefusalReason::Policy as i32,
            detail: "refused".into(),
            at_ms: now_ms(),
            signer: signer.identity.uri(),
            payload_sha256: vec![1; 32],
        };
        let key = signer.signing_key().unwrap();
        let blob = focal_proto::signed::sign_blob(
            focal_proto::signed::TAG_RECEIPT,
            prost::Message::encode_to_vec(&body),
            &key,
            signer.cert_der(),
        );
        let id = focal_proto::envelope::sha256(&blob.body).to_vec();
        pb::ReceiptTransfer {
            receipt_id: id,
            receipt: Some(pb::Receipt { signed: Some(blob) }),
            hops: vec![],
        }
    };
    let arinsa = pki.creds("arinsa", Role::Relay, "relay-arinsa");
    let forged = link.send_receipt(receipt(&arinsa, "x@rrag")).await.unwrap();
    assert_eq!(forged.status(), S::Refused, "a third network's relay signed it");
    let own = link.send_receipt(receipt(&carin, "x@rrag")).await.unwrap();
    assert_eq!(own.status(), S::Stored, "the delivering peer may refuse");
    let recipients = link.send_receipt(receipt(&arinsa, "y@arinsa")).await.unwrap();
    assert_eq!(recipients.status(), S::Stored, "the recipient's relay may refuse");

    evil.close().await;
    let _ = stop.send(());
    relay.await.unwrap().unwrap();
}
