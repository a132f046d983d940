//! A case thread across three networks (CARIN, ARINSA, RRAG through the GFP
//! hub) as `focal case` builds it from the local store, and overdue requests.

use anyhow::Result;
use focal_client::case::{overdue, thread};
use focal_client::util::now_ms;
use focal_client::{Draft, MessageRef};
use focal_proto::pb;
use focal_tests::Federation;

use crate::{addr, draft, quiet, wait_and_read, wait_reachable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_across_three_networks_and_overdue_requests() -> Result<()> {
    let fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("za-afu@arinsa")
        .focal_point("uy-senaclaft@rrag")
        .start()
        .await?;
    let nl = fed.client("nl-fiod@carin").await?;
    let za = fed.client("za-afu@arinsa").await?;
    let uy = fed.client("uy-senaclaft@rrag").await?;
    wait_reachable(&nl, &["za-afu@arinsa", "uy-senaclaft@rrag"]).await?;
    let case = "CARIN-2026-0042";

    // 1. NL asks ZA and UY (one request each, a week to respond).
    let mut q1 = draft(&["za-afu@arinsa"], "Tracing: Blue Yacht BV", "Any accounts?");
    q1.kind = pb::MessageKind::AssetTracingRequest;
    q1.case_ref = case.into();
    q1.response_deadline_ms = now_ms() + 7 * 86_400_000;
    let q1 = nl.send(&q1, quiet()).await?;
    let mut q2 = q1_like(&["uy-senaclaft@rrag"], case, "Tracing in Uruguay");
    q2.response_deadline_ms = now_ms() - 1; // already due: no answer will come
    let q2 = nl.send(&q2, quiet()).await?;

    // 2. ZA reads and answers (reply link, same case), copying UY.
    let got = wait_and_read(&za, q1.msg_id, "nl-fiod@carin").await?;
    let mut r1: Draft = draft(&["nl-fiod@carin", "uy-senaclaft@rrag"], "Re: Tracing", "Two accounts found.");
    r1.kind = pb::MessageKind::Response;
    r1.case_ref = got.content.case_ref.clone();
    r1.reply_to = Some(MessageRef { msg_id: q1.msg_id, sender: addr("nl-fiod@carin") });
    let r1 = za.send(&r1, quiet()).await?;

    // 3. UY reads both, and coordinates (answering ZA's message) without answering NL's request.
    wait_and_read(&uy, q2.msg_id, "nl-fiod@carin").await?;
    wait_and_read(&uy, r1.msg_id, "za-afu@arinsa").await?;
    let mut c1 = draft(&["nl-fiod@carin", "za-afu@arinsa"], "Coordination", "Let us meet.");
    c1.kind = pb::MessageKind::CaseCoordination;
    c1.case_ref = case.into();
    c1.reply_to = Some(MessageRef { msg_id: r1.msg_id, sender: addr("za-afu@arinsa") });
    let c1 = uy.send(&c1, quiet()).await?;

    // 4. NL reads what came back; an unrelated message does not join the thread.
    wait_and_read(&nl, r1.msg_id, "za-afu@arinsa").await?;
    wait_and_read(&nl, c1.msg_id, "uy-senaclaft@rrag").await?;
    nl.send(&draft(&["za-afu@arinsa"], "Other matter", "x"), quiet()).await?;

    let t = thread(nl.store(), "nl-fiod@carin", case)?;
    let ids: Vec<String> = t.iter().map(|e| e.msg_id.clone()).collect();
    let hex = |id: [u8; 16]| hex::encode(id);
    assert_eq!(ids, [hex(q1.msg_id), hex(q2.msg_id), hex(r1.msg_id), hex(c1.msg_id)]);
    assert!(t.windows(2).all(|w| w[0].created_at_ms <= w[1].created_at_ms), "time order");
    assert_eq!(t[0].direction, "sent");
    assert_eq!((t[2].direction, t[2].from.as_str()), ("received", "za-afu@arinsa"));
    assert_eq!(t[2].reply_to_msg_id, hex(q1.msg_id));
    assert_eq!(t[3].reply_to_msg_id, hex(r1.msg_id));
    assert_eq!(t[3].kind, "coordination");

    // The same case seen from UY (rrag): what it read and sent.
    let tu = thread(uy.store(), "uy-senaclaft@rrag", case)?;
    assert_eq!(
        tu.iter().map(|e| e.msg_id.clone()).collect::<Vec<_>>(),
        [hex(q2.msg_id), hex(r1.msg_id), hex(c1.msg_id)]
    );

    // Overdue: q2 (deadline passed, UY never replied to it); q1 is answered and not yet due.
    let o = overdue(nl.store(), now_ms())?;
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(
        (o[0].msg_id.clone(), o[0].waiting_for.clone()),
        (hex(q2.msg_id), vec!["uy-senaclaft@rrag".to_string()])
    );
    // Once q1's deadline has passed it is still not overdue: ZA answered it.
    let later = overdue(nl.store(), now_ms() + 8 * 86_400_000)?;
    assert_eq!(later.iter().map(|o| o.msg_id.clone()).collect::<Vec<_>>(), [hex(q2.msg_id)]);
    Ok(())
}

fn q1_like(to: &[&str], case: &str, subject: &str) -> Draft {
    let mut d = draft(to, subject, "Please check.");
    d.kind = pb::MessageKind::AssetTracingRequest;
    d.case_ref = case.into();
    d
}
