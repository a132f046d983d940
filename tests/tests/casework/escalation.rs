//! Escalation through real relays: ARINSA's relay config names `alt@arinsa`
//! as the alternate of its members; a CARIN sender's urgent request is
//! sealed also to the alternate (learned from the directory), ARINSA's relay
//! holds the alternate's copy and either releases it after the configured
//! time (ESCALATED audit record + relay-signed ESCALATED receipt, surviving
//! a relay restart) or drops it when the primary acknowledges in time
//! (ESCALATION_CANCELLED audit record, nothing for the alternate).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use focal_client::Client;
use focal_proto::{Role, pb};
use focal_relay::config::{EscalationConfig, RelayConfig};
use focal_tests::Federation;

use crate::urgent::until;
use crate::{PROMPT, audit_records, draft, quiet, wait_and_read, wait_reachable};

/// Changes a relay's config and restarts it (the harness offers no
/// builder hook for these keys).
pub(crate) async fn reconfigure(
    fed: &mut Federation,
    network: &str,
    f: impl FnOnce(&mut RelayConfig),
) -> Result<()> {
    let r = fed.relay_mut(network);
    f(&mut r.config);
    r.save_config()?;
    r.stop().await?;
    // In-process, the old relay's QUIC endpoint may hold its UDP port for a
    // moment after `stop` returns: retry the bind (a failure bound only).
    let end = tokio::time::Instant::now() + PROMPT;
    loop {
        match r.start().await {
            Ok(()) => return Ok(()),
            Err(e) if format!("{e:#}").contains("binding") && tokio::time::Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn rule(member: &str, alternate: &str, after: &str) -> EscalationConfig {
    EscalationConfig { member: member.into(), alternate: alternate.into(), after: after.into() }
}

/// A CARIN sender, ARINSA's primaries (za-npa, mw-fiu) and alternate,
/// ARINSA's auditor, with `rules` in ARINSA's relay config.
async fn federation(rules: Vec<EscalationConfig>) -> Result<(Federation, Client)> {
    let mut fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("za-npa@arinsa")
        .focal_point("mw-fiu@arinsa")
        .focal_point("alt@arinsa")
        .start()
        .await?;
    fed.add_member("audit@arinsa", Role::Auditor)?;
    reconfigure(&mut fed, "arinsa", |c| c.escalation = rules).await?;
    let sender = fed.client("nl-fiod@carin").await?;
    wait_reachable(&sender, &["za-npa@arinsa", "mw-fiu@arinsa", "alt@arinsa"]).await?;
    Ok((fed, sender))
}

/// `primary` reads and acknowledges `msg_id`; returns what it read and
/// ARINSA's ESCALATION_CANCELLED records about it once there is one.
async fn acknowledge(
    fed: &Federation,
    primary: &Client,
    msg_id: [u8; 16],
) -> Result<(focal_client::OpenedMessage, Vec<pb::AuditRecord>)> {
    let got = wait_and_read(primary, msg_id, "nl-fiod@carin").await?;
    primary.ack(&got.info.reference(), &got.info.payload_sha256).await?;
    let kind = pb::AuditKind::EscalationCancelled;
    until("the acknowledgement is audited", PROMPT, || async {
        Ok(!records_of(fed, msg_id, kind).await?.is_empty())
    })
    .await?;
    Ok((got, records_of(fed, msg_id, kind).await?))
}

async fn send_urgent(sender: &Client) -> Result<[u8; 16]> {
    let mut d = draft(&["za-npa@arinsa"], "Freezing request", "Account 123 is being emptied.");
    d.priority = pb::Priority::Urgent;
    d.kind = pb::MessageKind::FreezingRequest;
    let sent = sender.send(&d, quiet()).await?;
    let rec = sender.store().sent(&hex::encode(sent.msg_id))?.context("sent record")?;
    assert_eq!(rec.to, ["alt@arinsa", "za-npa@arinsa"], "sealed also to the alternate");
    assert_eq!(sent.to, rec.to, "the sender is told every recipient it was sealed to");
    Ok(sent.msg_id)
}

/// Waits for a receipt of `kind` about `msg_id` in `client`'s receipts.
pub(crate) async fn wait_receipt(
    client: &Client,
    msg_id: [u8; 16],
    kind: &str,
) -> Result<focal_client::ReceiptInfo> {
    let end = tokio::time::Instant::now() + PROMPT;
    loop {
        let all = client.receipts(0).await?;
        if let Some(r) = all.into_iter().find(|r| r.body.msg_id == msg_id && r.kind() == kind) {
            return Ok(r);
        }
        ensure!(tokio::time::Instant::now() < end, "no {kind} receipt for {}", hex::encode(msg_id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn records_of(fed: &Federation, msg_id: [u8; 16], kind: pb::AuditKind) -> Result<Vec<pb::AuditRecord>> {
    let auditor = fed.member("audit@arinsa").client().await?;
    let all = audit_records(&auditor).await?;
    Ok(all.into_iter().filter(|r| r.msg_id == msg_id && r.kind == kind as i32).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_urgent_request_escalates_after_the_timeout_across_a_restart() -> Result<()> {
    let (mut fed, sender) = federation(vec![rule("*", "alt@arinsa", "3s")]).await?;
    // The directory publishes the rule with the member's entry.
    let entry =
        sender.directory().lookup(pb::LookupRequest { address: "za-npa@arinsa".into() }).await?.into_inner();
    assert_eq!(
        entry.escalation,
        Some(pb::EscalationRoute { alternate: "alt@arinsa".into(), after_ms: 3_000 })
    );

    let msg_id = send_urgent(&sender).await?;
    let primary = fed.client("za-npa@arinsa").await?;
    wait_and_read(&primary, msg_id, "nl-fiod@carin").await?;
    // The held copy is on disk: a restart keeps it and its timer.
    reconfigure(&mut fed, "arinsa", |_| {}).await?;

    let receipt = wait_receipt(&sender, msg_id, "ESCALATED").await?;
    assert_eq!(receipt.problem, None, "signed by the relay and verified");
    assert_eq!(receipt.body.subject, "za-npa@arinsa");
    assert!(receipt.body.detail.contains("alt@arinsa"), "{}", receipt.body.detail);
    assert!(receipt.body.signer.contains("relay"), "{}", receipt.body.signer);

    let alternate = fed.client("alt@arinsa").await?;
    let got = wait_and_read(&alternate, msg_id, "nl-fiod@carin").await?;
    assert_eq!(got.content.kind, pb::MessageKind::FreezingRequest as i32);
    let escalated = records_of(&fed, msg_id, pb::AuditKind::Escalated).await?;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert_eq!(escalated[0].recipients, ["alt@arinsa"]);
    assert_eq!(escalated[0].peer, "za-npa@arinsa");
    // The primary still has its own copy, once.
    let waiting = primary.list_inbox().await?;
    assert_eq!(waiting.iter().filter(|m| m.msg_id == msg_id).count(), 1);
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_escalation_when_the_primary_acknowledges_in_time() -> Result<()> {
    // Ten minutes: the acknowledgement always comes first.
    let (fed, sender) = federation(vec![rule("za-npa@arinsa", "alt@arinsa", "10m")]).await?;
    let msg_id = send_urgent(&sender).await?;
    let primary = fed.client("za-npa@arinsa").await?;
    let (got, cancelled) = acknowledge(&fed, &primary, msg_id).await?;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].recipients, ["alt@arinsa"]);
    assert!(records_of(&fed, msg_id, pb::AuditKind::Escalated).await?.is_empty());

    let alternate = fed.client("alt@arinsa").await?;
    assert!(alternate.list_inbox().await?.iter().all(|m| m.msg_id != msg_id), "nothing for the alternate");
    wait_receipt(&sender, msg_id, "DELIVERED").await?;
    assert!(
        sender.receipts(0).await?.iter().all(|r| !(r.body.msg_id == msg_id && r.kind() == "ESCALATED")),
        "no ESCALATED receipt"
    );
    // The alternate cannot fetch the dropped copy either.
    let e = alternate.read(&got.info.reference(), &Default::default(), quiet()).await;
    assert!(e.is_err(), "the alternate read a dropped copy");
    fed.shutdown().await
}

/// A network default gives two recipients of one urgent request the same
/// alternate: ARINSA holds one copy for both. The first primary's
/// acknowledgement leaves it waiting for the second (ESCALATION_CANCELLED
/// about the first); when the second is overdue the alternate gets the
/// copy, with an ESCALATED record and receipt about the second only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alternate_stands_in_for_each_primary_of_a_message() -> Result<()> {
    // za-npa has ten minutes (its own rule), the others 8 s: both name alt.
    let rules = vec![rule("za-npa@arinsa", "alt@arinsa", "10m"), rule("*", "alt@arinsa", "8s")];
    let (fed, sender) = federation(rules).await?;

    let mut d = draft(&["za-npa@arinsa", "mw-fiu@arinsa"], "Freezing request", "Two accounts.");
    d.priority = pb::Priority::Urgent;
    let msg_id = sender.send(&d, quiet()).await?.msg_id;
    let rec = sender.store().sent(&hex::encode(msg_id))?.context("sent record")?;
    assert_eq!(rec.to, ["alt@arinsa", "mw-fiu@arinsa", "za-npa@arinsa"], "the alternate once");

    let first = fed.client("za-npa@arinsa").await?;
    let (_, cancelled) = acknowledge(&fed, &first, msg_id).await?;
    assert_eq!((cancelled.len(), cancelled[0].peer.as_str()), (1, "za-npa@arinsa"));
    assert!(cancelled[0].detail.contains("still waits for mw-fiu@arinsa"), "{}", cancelled[0].detail);

    // mw-fiu does not acknowledge: the alternate gets the copy for it.
    let receipt = wait_receipt(&sender, msg_id, "ESCALATED").await?;
    assert_eq!((receipt.problem, receipt.body.subject.as_str()), (None, "mw-fiu@arinsa"));
    let alternate = fed.client("alt@arinsa").await?;
    wait_and_read(&alternate, msg_id, "nl-fiod@carin").await?;
    let escalated = records_of(&fed, msg_id, pb::AuditKind::Escalated).await?;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert_eq!(
        (escalated[0].recipients.as_slice(), escalated[0].peer.as_str()),
        (&["alt@arinsa".to_string()][..], "mw-fiu@arinsa")
    );
    let receipts = sender.receipts(0).await?;
    let n = receipts.iter().filter(|r| r.body.msg_id == msg_id && r.kind() == "ESCALATED").count();
    assert_eq!(n, 1, "one ESCALATED receipt, about mw-fiu");
    fed.shutdown().await
}
