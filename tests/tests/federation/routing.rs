//! Routing across networks: through the GFP hub, directly between peers, to
//! several networks at once, and the refusals (unknown network, loop) that
//! come back to the sender as non-delivery receipts signed by a relay.

use focal_proto::pb;
use focal_tests::Federation;
use focal_tests::raw::{CraftOptions, craft, send_envelope};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carin_to_arinsa_through_gfp_and_delivered_receipt_back() -> Result<()> {
    let fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("za-npa@arinsa")
        .start()
        .await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("za-npa@arinsa").await?;
    let (mut a_in, mut b_in) = (live(&a).await?, live(&b).await?);
    let sent = a.send(&draft(&["za-npa@arinsa"], "tracing request"), quiet()).await?;
    let m = wait_message(&mut b_in, sent.msg_id).await?;
    assert_eq!(hop_networks(&m), ["carin", "gfp", "arinsa"]);
    let opened = b.read(&m.reference(), &Default::default(), quiet()).await?;
    assert_eq!(opened.content.subject, "tracing request");
    b.ack(&m.reference(), &m.payload_sha256).await?;
    let r = wait_receipt(&mut a_in, sent.msg_id, None).await?;
    assert_eq!(r.body.kind, pb::ReceiptKind::Delivered as i32, "{r:?}");
    assert_eq!(r.body.signer, "za-npa@arinsa");
    assert!(r.problem.is_none(), "receipt does not verify: {:?}", r.problem);
    assert!(b.list_inbox().await?.is_empty(), "acked message still waiting");
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_peering_bypasses_the_hub() -> Result<()> {
    let fed = Federation::builder()
        .hub("gfp")
        .link("carin", "arinsa")
        .focal_point("nl-fiod@carin")
        .focal_point("za-npa@arinsa")
        .focal_point("ch-fedpol@gfp")
        .start()
        .await?;
    let a = fed.client("nl-fiod@carin").await?;
    let b = fed.client("za-npa@arinsa").await?;
    let mut b_in = live(&b).await?;
    let sent = a.send(&draft(&["za-npa@arinsa"], "direct"), quiet()).await?;
    let m = wait_message(&mut b_in, sent.msg_id).await?;
    assert_eq!(hop_networks(&m), ["carin", "arinsa"], "the hub is not on the route");
    // The hub still carries what has no direct peer.
    let g = fed.client("ch-fedpol@gfp").await?;
    let mut g_in = live(&g).await?;
    let sent = a.send(&draft(&["ch-fedpol@gfp"], "to the hub's own member"), quiet()).await?;
    let m = wait_message(&mut g_in, sent.msg_id).await?;
    assert_eq!(hop_networks(&m), ["carin", "gfp"]);
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_three_networks_arrives_once_at_each() -> Result<()> {
    let to = ["za-npa@arinsa", "bw-dcec@arinsa", "cr-ici@rrag", "kr-spo@arin-ap"];
    let mut b = Federation::builder().hub("gfp").focal_point("nl-fiod@carin");
    for r in to {
        b = b.focal_point(r);
    }
    let fed = b.start().await?;
    let a = fed.client("nl-fiod@carin").await?;
    let mut a_in = live(&a).await?;
    let mut inboxes = Vec::new();
    for r in to {
        let c = fed.client(r).await?;
        let i = live(&c).await?;
        inboxes.push((r, c, i));
    }
    let sent = a.send(&draft(&to, "three networks"), quiet()).await?;
    for (r, c, i) in &mut inboxes {
        let m = wait_message(i, sent.msg_id).await?;
        let net = r.split('@').nth(1).unwrap();
        assert_eq!(hop_networks(&m), ["carin", "gfp", net]);
        // Each copy carries only the recipients its next hop must reach.
        for d in &m.header.deliver_to {
            assert!(d.ends_with(&format!("@{net}")), "copy for {net} also addressed to {d}");
        }
        let copies = c.list_inbox().await?.iter().filter(|x| x.msg_id == sent.msg_id).count();
        assert_eq!(copies, 1, "{r} holds {copies} copies");
        c.ack(&m.reference(), &m.payload_sha256).await?;
    }
    // The receipts travel independently (three networks, lanes in parallel
    // at every hop): they may arrive in any order.
    let mut waiting: std::collections::BTreeSet<&str> = to.into_iter().collect();
    while !waiting.is_empty() {
        let rc = wait_receipt(&mut a_in, sent.msg_id, None).await?;
        assert_eq!(rc.body.kind, pb::ReceiptKind::Delivered as i32);
        assert_eq!(rc.body.signer, rc.body.subject);
        assert!(
            waiting.remove(rc.body.subject.as_str()),
            "unexpected or second receipt from {}",
            rc.body.subject
        );
    }
    // Nothing arrived twice meanwhile.
    for (r, c, _) in &inboxes {
        assert!(c.list_inbox().await?.is_empty(), "{r} got another copy after its ack");
    }
    fed.shutdown().await
}

/// Sends a hand-made envelope from `from` (its own certificate) to
/// `to`, a recipient the client library could not look up, and returns
/// the relay's answer.
async fn send_crafted(fed: &Federation, from: &str, to: &str) -> Result<(pb::SendResponse, [u8; 16])> {
    let fp = fed.fp(from);
    let key = focal_certs::EncryptionKey::generate()?;
    let recipient = (addr(to), focal_proto::envelope::RecipientPublicKey(key.public()));
    let opts = CraftOptions::default();
    let env = craft(&fp.address, &fp.cert.credentials()?, &[recipient], &opts)?;
    let client = fp.client().await?;
    let resp = send_envelope(client.channel(), &env, 64 * 1024).await?;
    Ok((resp, opts.msg_id))
}

/// A relay-signed REFUSED receipt for `msg_id` with one of `reasons`.
async fn expect_refusal(
    inbox: &mut Inbox,
    msg_id: [u8; 16],
    reasons: &[pb::RefusalReason],
) -> Result<ReceiptInfo> {
    let r = wait_receipt(inbox, msg_id, None).await?;
    assert_eq!(r.body.kind, pb::ReceiptKind::Refused as i32, "{r:?}");
    assert!(
        reasons.iter().any(|x| *x as i32 == r.body.reason),
        "reason {} not in {reasons:?}: {r:?}",
        r.body.reason
    );
    assert!(r.problem.is_none(), "refusal does not verify: {:?}", r.problem);
    let signer = r.signer.as_ref().context("refusal without signer")?;
    assert_eq!(signer.role, focal_proto::Role::Relay, "refusals are signed by a relay: {signer}");
    Ok(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_network_is_refused_with_a_non_delivery_receipt() -> Result<()> {
    let fed = Federation::builder().hub("gfp").focal_point("nl-fiod@carin").network("arinsa").start().await?;
    let a = fed.client("nl-fiod@carin").await?;
    let mut a_in = live(&a).await?;
    match send_crafted(&fed, "nl-fiod@carin", "ghost@nowhere").await {
        // Accepted at carin, refused where the route ends (the hub).
        Ok((_, msg_id)) => {
            let r = expect_refusal(&mut a_in, msg_id, &[pb::RefusalReason::UnknownNetwork]).await?;
            assert!(r.body.detail.contains("nowhere"), "the refusal names the network: {r:?}");
        }
        Err(e) => panic!("carin must accept and refuse with a receipt, not fail the send: {e:#}"),
    }
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_loop_is_refused_with_a_non_delivery_receipt() -> Result<()> {
    // gfp's default route points back at carin: a message for a network
    // nobody serves goes carin -> gfp -> carin, which must be refused.
    let fed = Federation::builder()
        .hub("gfp")
        .default_route("gfp", "carin")
        .focal_point("nl-fiod@carin")
        .start()
        .await?;
    let a = fed.client("nl-fiod@carin").await?;
    let mut a_in = live(&a).await?;
    let (_, msg_id) = send_crafted(&fed, "nl-fiod@carin", "ghost@arin-wa").await?;
    expect_refusal(&mut a_in, msg_id, &[pb::RefusalReason::Loop, pb::RefusalReason::TooManyHops]).await?;
    fed.shutdown().await
}
