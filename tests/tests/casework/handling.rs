//! Handling code H2 enforced by the forwarder's relay: a forward of an H2
//! message leaving the forwarder's network is refused (HANDLING, audited as
//! REFUSED) unless it carries a valid release signed by the originator for
//! that network; within the network it needs none. H3's restrictions reach
//! the recipient.

use std::time::Duration;

use anyhow::Result;
use focal_proto::{NetworkId, Role, pb};
use focal_tests::Federation;

use crate::{addr, audit_records, draft, quiet, wait_and_read, wait_reachable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_forward_needs_the_originators_release_outside_the_network() -> Result<()> {
    let mut fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("be-ocsc@carin")
        .focal_point("za-afu@arinsa")
        .focal_point("bw-dcec@arinsa")
        .focal_point("ng-efcc@gfp")
        .start()
        .await?;
    let nl = fed.client("nl-fiod@carin").await?;
    let za = fed.client("za-afu@arinsa").await?;
    let be = fed.client("be-ocsc@carin").await?;
    wait_reachable(&nl, &["za-afu@arinsa", "ng-efcc@gfp"]).await?;

    // NL sends an H2 disclosure to ZA (arinsa).
    let mut d = draft(&["za-afu@arinsa"], "Disclosure: Blue Yacht BV", "Art. 56 disclosure.");
    d.kind = pb::MessageKind::SpontaneousDisclosure;
    d.handling = pb::HandlingCode::H2;
    d.case_ref = "C-H2".into();
    let orig = nl.send(&d, quiet()).await?;
    let opened = wait_and_read(&za, orig.msg_id, "nl-fiod@carin").await?;
    let oref = opened.info.reference();

    // Without a release, ZA may not forward it outside arinsa: refused at ZA's relay.
    let e = za.forward(&oref, vec![addr("be-ocsc@carin")], None, quiet()).await.unwrap_err().to_string();
    assert!(e.contains("HANDLING") && e.contains("no release"), "{e}");

    // The refusal is in arinsa's audit log (REFUSED, reason HANDLING, forwarder as sender).
    fed.add_member("auditor@arinsa", Role::Auditor)?;
    let auditor = fed.member("auditor@arinsa").client().await?;
    let recs = audit_records(&auditor).await?;
    let refused: Vec<_> = recs
        .iter()
        .filter(|r| {
            r.kind == pb::AuditKind::Refused as i32
                && r.reason == pb::RefusalReason::Handling as i32
                && r.sender == "za-afu@arinsa"
        })
        .collect();
    assert_eq!(refused.len(), 1, "{recs:?}");
    assert_eq!(refused[0].recipients, ["be-ocsc@carin"]);
    assert_eq!(refused[0].handling, pb::HandlingCode::H2 as i32);

    // Inside arinsa no release is needed.
    let inside = za.forward(&oref, vec![addr("bw-dcec@arinsa")], None, quiet()).await?;
    let bw = fed.client("bw-dcec@arinsa").await?;
    let f = wait_and_read(&bw, inside.msg_id, "za-afu@arinsa").await?;
    assert!(f.content.body.contains("Art. 56 disclosure."));
    assert_eq!(f.info.handling, pb::HandlingCode::H2 as i32);

    // A release for gfp only does not cover carin.
    let carin = NetworkId::new("carin")?;
    let gfp = NetworkId::new("gfp")?;
    let rel_gfp = nl.make_release(orig.msg_id, std::slice::from_ref(&gfp), Duration::from_secs(3600));
    let e = za.forward(&oref, vec![addr("be-ocsc@carin")], Some(rel_gfp.clone()), quiet()).await.unwrap_err();
    assert!(e.to_string().contains("does not permit network carin"), "{e}");
    // A release signed by someone else (the forwarder itself) is refused.
    let forged = za.make_release(orig.msg_id, &[], Duration::from_secs(3600));
    let e = za.forward(&oref, vec![addr("be-ocsc@carin")], Some(forged), quiet()).await.unwrap_err();
    assert!(e.to_string().contains("not by the originator"), "{e}");
    // A release of another message is refused.
    let other = nl.make_release([9; 16], &[], Duration::from_secs(3600));
    let e = za.forward(&oref, vec![addr("be-ocsc@carin")], Some(other), quiet()).await.unwrap_err();
    assert!(e.to_string().contains("release is for message"), "{e}");
    // An expired release is refused.
    let expired = nl.make_release(orig.msg_id, &[], Duration::ZERO);
    let e = za.forward(&oref, vec![addr("be-ocsc@carin")], Some(expired), quiet()).await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");

    // With NL's release for carin the forward goes through, across the hub.
    let rel = nl.make_release(orig.msg_id, &[carin, gfp], Duration::from_secs(3600));
    let fwd = za.forward(&oref, vec![addr("be-ocsc@carin")], Some(rel), quiet()).await?;
    let got = wait_and_read(&be, fwd.msg_id, "za-afu@arinsa").await?;
    assert!(got.content.subject.starts_with("Fwd: "));
    assert_eq!(got.content.kind(), pb::MessageKind::SpontaneousDisclosure);
    assert_eq!(got.content.case_ref, "C-H2");
    let ctx = focal_proto::envelope::parse_context(&got.info.header.context)?;
    let fo = ctx.ctx.forward_of.expect("forward_of");
    assert_eq!(fo.original_msg_id, orig.msg_id.to_vec());
    assert_eq!(fo.original_sender, "nl-fiod@carin");
    assert!(fo.release.is_some());
    // The gfp-only release also serves a forward to gfp.
    za.forward(&oref, vec![addr("ng-efcc@gfp")], Some(rel_gfp), quiet()).await?;
    // Refusals are per message: exactly the five refused attempts are audited.
    let recs = audit_records(&auditor).await?;
    let n = recs
        .iter()
        .filter(|r| r.kind == pb::AuditKind::Refused as i32 && r.reason == pb::RefusalReason::Handling as i32)
        .count();
    assert_eq!(n, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h3_are_shown_to_the_recipient_not_enforced() -> Result<()> {
    let fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("za-afu@arinsa")
        .start()
        .await?;
    let nl = fed.client("nl-fiod@carin").await?;
    let za = fed.client("za-afu@arinsa").await?;
    wait_reachable(&nl, &["za-afu@arinsa"]).await?;
    let mut d = draft(&["za-afu@arinsa"], "Restricted", "x");
    d.handling = pb::HandlingCode::H3;
    d.handling_restrictions = "Not to be shared with tax authorities.".into();
    let s = nl.send(&d, quiet()).await?;
    let got = wait_and_read(&za, s.msg_id, "nl-fiod@carin").await?;
    assert_eq!(got.info.handling, pb::HandlingCode::H3 as i32);
    assert_eq!(got.content.handling_restrictions, "Not to be shared with tax authorities.");
    // H3 forwards are not restricted by relays (advisory): this one goes through.
    let fed_nl = za.forward(&got.info.reference(), vec![addr("nl-fiod@carin")], None, quiet()).await?;
    let back = wait_and_read(&nl, fed_nl.msg_id, "za-afu@arinsa").await?;
    assert_eq!(back.content.handling_restrictions, "Not to be shared with tax authorities.");
    Ok(())
}

/// Enrols `fp` as a member that is NOT a law-enforcement authority.
async fn enrol_not_le(fed: &Federation, address: &str) -> Result<()> {
    let c = fed.client(address).await?;
    c.keys().generate(false, focal_client::util::now_ms())?;
    let opts = focal_client::PublishOptions { law_enforcement: false, ..Default::default() };
    c.publish_key(&opts).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h0_reaches_law_enforcement_members_only() -> Result<()> {
    use futures::StreamExt;
    let fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point_unenrolled("nl-fiu@carin")
        .focal_point("za-saps@arinsa")
        .focal_point_unenrolled("za-fic@arinsa")
        .start()
        .await?;
    enrol_not_le(&fed, "nl-fiu@carin").await?;
    enrol_not_le(&fed, "za-fic@arinsa").await?;
    let nl = fed.client("nl-fiod@carin").await?;
    wait_reachable(&nl, &["za-saps@arinsa", "za-fic@arinsa"]).await?;
    let h0 = |to: &[&str]| {
        let mut d = draft(to, "H0", "law enforcement only");
        d.handling = pb::HandlingCode::H0;
        d
    };

    // A local non-law-enforcement recipient: the Send itself is refused.
    let e = nl.send(&h0(&["nl-fiu@carin"]), quiet()).await.unwrap_err().to_string();
    assert!(e.contains("HANDLING") && e.contains("nl-fiu@carin"), "{e}");

    // A law-enforcement member of another network receives it.
    let ok = nl.send(&h0(&["za-saps@arinsa"]), quiet()).await?;
    let saps = fed.client("za-saps@arinsa").await?;
    wait_and_read(&saps, ok.msg_id, "nl-fiod@carin").await?;

    // A non-law-enforcement member of another network: accepted at carin,
    // refused by arinsa's relay, and the sender gets a REFUSED receipt naming HANDLING.
    let mut receipts = nl.inbox(true).await?;
    let refused = nl.send(&h0(&["za-fic@arinsa"]), quiet()).await?;
    let r = tokio::time::timeout(crate::PROMPT, async {
        while let Some(item) = receipts.next().await {
            if let focal_client::InboxItem::Receipt(r) = item?
                && r.body.msg_id == refused.msg_id
            {
                return Ok::<_, anyhow::Error>(r);
            }
        }
        anyhow::bail!("inbox ended")
    })
    .await??;
    assert_eq!(r.kind(), "REFUSED");
    assert!(r.problem.is_none(), "{:?}", r.problem);
    assert!(r.body.detail.contains("HANDLING"), "{}", r.body.detail);
    let fic = fed.client("za-fic@arinsa").await?;
    assert!(fic.list_inbox().await?.is_empty());
    Ok(())
}
