//! The end-to-end scenario in headless Chromium: a CARIN focal
//! point composes an urgent asset-tracing request with an attachment to an
//! ARINSA focal point (across the carin–arinsa link; the compose page shows
//! the upload and the send to the relay reaching 100 %); ARINSA's console shows
//! it (kind and case already shown before it is opened, without marking it
//! read), opens it, downloads the attachment with the right hash, replies and
//! acknowledges; the sender's open inbox shows a follow-up pushed live (no
//! navigation, no reload); the sender's console shows the delivery receipt and the
//! reply in the case thread; the secretariat's console shows the link
//! states, shows a link paused elsewhere without navigating, and resumes it; the auditor's console verifies the
//! log, requiring ARINSA's witness cosignature (shown as verified against
//! the key given with `--witness`), and draws the message's route. One screenshot per view is saved.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use focal_client::progress::NoProgress;
use focal_proto::Role;
use focal_proto::pb::{self, admin_client::AdminClient};
use focal_tests::Federation;

use crate::webdriver::{Driver, Session};
use crate::{ConsoleProc, PROMPT, browser_or_skip, http, sha256_hex};

const CASE: &str = "CARIN-2026-0042";
const SUBJECT: &str = "Asset tracing: Meridian Holdings accounts";
const FOLLOW_UP: &str = "Follow-up: Meridian Holdings 2024 statements";

fn shots_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn shot(s: &Session, dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(format!("{name}.png"));
    s.screenshot(&path).await?;
    eprintln!("screenshot: {}", path.display());
    Ok(())
}

/// The witness name and verifier key of `network`'s relay (its witness key
/// file, as the secretariat would hand it to auditors).
fn witness_key(fed: &Federation, network: &str) -> Result<(String, String)> {
    let relay = fed.relay(network);
    let name = focal_relay::audit::witness::witness_name(&relay.config.audit_origin());
    let der = std::fs::read(relay.data_dir().join("witness.key")).context("the relay's witness key")?;
    let key = focal_proto::audit::WitnessSigner::from_pkcs8(&name, &der)?.verifier_key();
    Ok((name, key))
}

/// Follows the link whose href is exactly `href`. Live pages may swap
/// their content between finding and clicking the link (when the relay
/// reports a change): a stale element is looked up again.
async fn follow(s: &Session, href: &str) -> Result<()> {
    press(s, &format!("a[href=\"{href}\"]")).await
}

/// Clicks the element matching `css`, looking it up again if a live page
/// swapped its content in between.
async fn press(s: &Session, css: &str) -> Result<()> {
    let mut attempts = 0;
    loop {
        let e = s.find(css).await?;
        match s.click(&e).await {
            Err(e) if attempts < 5 && format!("{e:#}").contains("stale element") => attempts += 1,
            done => return done,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_receipt_links_and_audit_in_the_browser() -> Result<()> {
    if !browser_or_skip("request_reply_receipt_links_and_audit_in_the_browser")? {
        return Ok(());
    }
    focal_tests::init();
    let bins = focal_tests::bins!();
    let mut fed = Federation::builder()
        .hub("gfp")
        .link("carin", "arinsa")
        .focal_point("nl-fiod@carin")
        .focal_point("za-npa@arinsa")
        .start()
        .await?;
    let admin = fed.add_member("secretariat@carin", Role::Admin)?.clone();
    let auditor = fed.add_member("audit@carin", Role::Auditor)?.clone();
    let log_key = focal_client::Client::connect(auditor.profile()?)
        .await?
        .audit()
        .get_log_info(focal_proto::pb::GetCheckpointRequest { fresh: false })
        .await?
        .into_inner()
        .verifier_key;
    let carin = ConsoleProc::start(fed.fp("nl-fiod@carin"), &bins, &[]).await?;
    let arinsa = ConsoleProc::start(fed.fp("za-npa@arinsa"), &bins, &[]).await?;
    let sec = ConsoleProc::start(&admin, &bins, &[]).await?;
    // The auditor trusts ARINSA's relay as a witness of CARIN's log and
    // requires its cosignature (GFP's cosignature is shown, not verified).
    let (arinsa_witness, arinsa_wkey) = witness_key(&fed, "arinsa")?;
    let aud = ConsoleProc::start(
        &auditor,
        &bins,
        &["--audit-key", &log_key, "--witness", &arinsa_wkey, "--require-witnesses", "1"],
    )
    .await?;

    let shots = shots_dir()?;
    eprintln!("console screenshots go to {}", shots.display());
    let attachment = fed.dir().join("bank-statements-2025.csv");
    let content: Vec<u8> =
        (0..200_000u32).flat_map(|i| format!("{i},EUR,{}\n", i * 7).into_bytes()).collect();
    std::fs::write(&attachment, &content)?;
    let want_sha = sha256_hex(&content);

    let driver = Driver::start().await?;
    let s = driver.session(1280, &fed.dir().join("chromium-profile")).await?;

    // CARIN composes an urgent asset-tracing request with an attachment.
    s.goto(&carin.login).await?;
    ensure!(s.url().await?.ends_with("/inbox"), "login did not land on the inbox: {}", s.url().await?);
    shot(&s, &shots, "01-carin-inbox").await?;
    s.goto(&format!("{}/compose", carin.base)).await?;
    let to = s
        .find("option[value=\"za-npa@arinsa\"]")
        .await
        .context("ARINSA's focal point in the directory list")?;
    s.click(&to).await?;
    s.type_into(&s.find("#subject").await?, SUBJECT).await?;
    s.click(&s.find("#kind option[value=\"asset-tracing\"]").await?).await?;
    s.type_into(&s.find("#case_ref").await?, CASE).await?;
    s.click(&s.find("#urgent").await?).await?;
    s.type_into(&s.find("#authority").await?, "FIOD, Netherlands").await?;
    s.type_into(&s.find("#legal_basis").await?, "UNCAC art. 46, 48").await?;
    s.type_into(&s.find("#subjects").await?, "Meridian Holdings Ltd:ZA-2019/123456/07").await?;
    s.type_into(&s.find("#assets").await?, "Bank accounts at Standard Bank").await?;
    s.type_into(&s.find("#body").await?, "Please trace the accounts of Meridian Holdings.").await?;
    s.type_into(&s.find("#attachment").await?, &attachment.display().to_string()).await?;
    shot(&s, &shots, "02-carin-compose").await?;
    // The progress element is hidden until the form is sent.
    let hidden = s.execute("return document.getElementById('progress-box').hidden;").await?;
    ensure!(hidden == serde_json::Value::Bool(true), "progress shown before sending: {hidden}");
    s.click(&s.find("#send").await?).await?;
    let url = s.wait_url("/sent?accepted=", PROMPT).await?;
    let msg_id = url.split("accepted=").nth(1).context("accepted id")?.to_owned();
    ensure!(msg_id.len() == 32, "{url}");
    // The compose script posted the form itself and showed the progress of
    // the upload to the console, then of the console's send to the relay,
    // both to their end; it keeps the last values in sessionStorage, which
    // survives the redirect to this page.
    let shown = s.execute("return window.sessionStorage.getItem('focal-compose-progress');").await?;
    let shown: serde_json::Value =
        serde_json::from_str(shown.as_str().context("no compose progress recorded")?)?;
    ensure!(shown["upload"] == 100, "upload progress did not reach its end: {shown}");
    // The last phase seen: every byte out, the relay checking and storing it.
    ensure!(shown["phase"] == "storing" && shown["percent"] == 100, "send progress: {shown}");
    ensure!(shown["state"] == "sent", "send progress: {shown}");
    // Sent exactly once: one record of it on the sent page.
    let sent = s.source().await?;
    ensure!(sent.matches(&format!("{SUBJECT}<br>")).count() == 1, "not sent exactly once: {sent}");
    // A refused compose (no recipient): the script shows the console's
    // error page in place of the form, as a plain form post would.
    s.goto(&format!("{}/compose", carin.base)).await?;
    s.type_into(&s.find("#body").await?, "to nobody").await?;
    s.click(&s.find("#send").await?).await?;
    s.wait_source("no recipient: pick one from the directory", PROMPT).await?;
    ensure!(s.find("#compose").await.is_err(), "the form is still shown after the error");
    shot(&s, &shots, "03-carin-sent").await?;

    // ARINSA sees it, opens it, downloads the attachment, replies, acknowledges.
    s.goto(&arinsa.login).await?;
    let href = format!("/message/nl-fiod%40carin/{msg_id}");
    s.wait_for(&format!("{}/inbox", arinsa.base), &href, PROMPT).await?;
    let inbox = s.source().await?;
    ensure!(inbox.contains("class=\"urgent\">urgent<") && inbox.contains("nl-fiod@carin"), "{inbox}");
    // Before it is opened, the row already shows the sealed kind and case
    // (decrypted locally by the console)...
    let row = s
        .execute(&format!("return document.querySelector('a[href=\"{href}\"]').closest('tr').innerText"))
        .await?;
    let row = row.as_str().unwrap_or_default();
    for want in ["asset-tracing", CASE, "not opened yet", "attachments: 1"] {
        ensure!(row.contains(want), "unopened inbox row lacks {want:?}: {row}");
    }
    // ...without marking it read (no record in ARINSA's local store) and
    // without any READ receipt reaching the sender.
    let record = fed
        .fp("za-npa@arinsa")
        .profile()?
        .store_dir
        .join("received")
        .join(format!("{msg_id}-nl-fiod@carin.json"));
    ensure!(!record.exists(), "listing recorded the message as read: {}", record.display());
    let receipts = fed.client("nl-fiod@carin").await?.receipts(0).await?;
    ensure!(
        !receipts.iter().any(|r| r.kind() == "READ" && hex::encode(&r.body.msg_id) == msg_id),
        "a READ receipt came back from listing: {receipts:?}"
    );
    shot(&s, &shots, "04-arinsa-inbox").await?;
    follow(&s, &href).await?;
    let page = s.wait_source("id=\"reply-body\"", PROMPT).await?;
    for want in [
        SUBJECT,
        "verified:",
        "asset-tracing request",
        CASE,
        "bank-statements-2025.csv",
        &want_sha,
        "Meridian Holdings Ltd",
    ] {
        ensure!(page.contains(want), "message view lacks {want:?}: {page}");
    }
    shot(&s, &shots, "05-arinsa-message").await?;
    let link = s.find("a[download]").await?;
    let download_url = s.attr(&link, "href").await?;
    let cookie = format!("{}={}", arinsa.cookie_name(), s.cookie(&arinsa.cookie_name()).await?);
    let file = http::get(&download_url, &[("cookie", &cookie)]).await?;
    ensure!(file.status == 200, "download: {}", file.status);
    ensure!(file.header("content-disposition").contains("attachment"), "{:?}", file.headers);
    ensure!(sha256_hex(&file.body) == want_sha, "downloaded attachment has another SHA-256");
    s.type_into(&s.find("#reply-body").await?, "Accounts identified; statements follow.").await?;
    s.click(&s.find("#reply-send").await?).await?;
    let url = s.wait_url("/sent?accepted=", PROMPT).await?;
    let reply_id = url.split("accepted=").nth(1).context("reply id")?.to_owned();
    shot(&s, &shots, "06-arinsa-replied").await?;
    s.goto(&format!("{}{href}", arinsa.base)).await?;
    s.click(&s.find("#ack").await?).await?;
    s.wait_url("/inbox", PROMPT).await?;
    s.wait_source("Acknowledged", PROMPT).await?;

    // Live push: with CARIN's inbox open and its script connected to
    // /events, ARINSA sends a follow-up; it appears in the open page, put
    // there by the script (the page is not reloaded, the test does not navigate).
    s.goto(&carin.login).await?;
    ensure!(s.url().await?.ends_with("/inbox"), "login did not land on the inbox: {}", s.url().await?);
    s.wait_source("data-live=\"connected\"", PROMPT).await?;
    s.execute("window.focalSamePage = true; return true;").await?;
    let to = vec![focal_proto::Address::parse_member("nl-fiod@carin")?];
    let follow_up = focal_client::Draft::new(to, FOLLOW_UP, "Statements for 2024 follow separately.");
    fed.client("za-npa@arinsa").await?.send(&follow_up, Arc::new(NoProgress)).await?;
    s.wait_source(FOLLOW_UP, PROMPT).await?;
    let same = s.execute("return window.focalSamePage === true;").await?;
    ensure!(same == serde_json::Value::Bool(true), "the inbox was reloaded, not updated in place");
    let updates = s.execute("return document.documentElement.getAttribute('data-live-updates');").await?;
    ensure!(updates.as_str().is_some_and(|n| n != "0"), "no live update counted: {updates}");
    shot(&s, &shots, "07-carin-inbox-live").await?;

    // CARIN: the delivery receipt, then the reply in the case thread.
    s.wait_for(&format!("{}/sent", carin.base), "DELIVERED</span> za-npa@arinsa", PROMPT).await?;
    shot(&s, &shots, "07-carin-receipts").await?;
    let reply_href = format!("/message/za-npa%40arinsa/{reply_id}");
    s.wait_for(&format!("{}/inbox", carin.base), &reply_href, PROMPT).await?;
    follow(&s, &reply_href).await?;
    s.wait_source("Accounts identified", PROMPT).await?;
    s.goto(&format!("{}/case?ref={CASE}", carin.base)).await?;
    let thread = s.source().await?;
    ensure!(thread.contains(SUBJECT) && thread.contains(&format!("Re: {SUBJECT}")), "{thread}");
    ensure!(thread.contains(&msg_id), "the reply names the request it answers: {thread}");
    shot(&s, &shots, "08-carin-case-thread").await?;

    // The secretariat: link states, then pause and resume a link.
    s.goto(&sec.login).await?;
    let page = s.source().await?;
    ensure!(page.contains("relay.arinsa") && page.contains("relay.gfp") && page.contains("<svg"), "{page}");
    ensure!(page.contains("connected"), "no connected link: {page}");
    shot(&s, &shots, "09-secretariat-federation").await?;
    // Live: another secretariat session pauses the GFP link (as `focal
    // admin pause-peer` does); the open page shows it without navigating.
    s.wait_source("data-live=\"connected\"", PROMPT).await?;
    s.execute("window.focalSamePage = true; return true;").await?;
    let admin_client = focal_client::Client::connect(admin.profile()?).await?;
    AdminClient::new(admin_client.channel()).pause_peer(pb::PeerRequest { peer: "relay.gfp".into() }).await?;
    s.wait_source("state-paused", PROMPT).await?;
    let same = s.execute("return window.focalSamePage === true;").await?;
    ensure!(same == serde_json::Value::Bool(true), "the secretariat page was reloaded, not updated");
    shot(&s, &shots, "10-secretariat-paused").await?;
    press(&s, "button[aria-label=\"Resume relay.gfp\"]").await?;
    s.wait_source("role=\"status\">resume:", PROMPT).await?;

    // The auditor: fetch and verify, then the route of the request. The
    // relay's peers cosign its checkpoints a few seconds after they grow:
    // fetch again until ARINSA's cosignature on the latest checkpoint is there.
    s.goto(&aud.login).await?;
    let want = format!("cosigned by {arinsa_witness} (verified)");
    let start = std::time::Instant::now();
    loop {
        s.goto(&format!("{}/audit", aud.base)).await?;
        s.click(&s.find("#fetch").await?).await?;
        s.wait_url("/audit?cosigned=", PROMPT).await?;
        let witnesses = match s.find("#witnesses").await {
            Ok(e) => s.text(&e).await?,
            Err(_) => String::new(),
        };
        if witnesses.contains(&want) {
            break;
        }
        ensure!(start.elapsed() < PROMPT, "no verified cosignature by {arinsa_witness}: {witnesses:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let status = s.text(&s.find("#verify-status").await?).await?;
    ensure!(status == "verified", "audit verification (1 witness required): {status}");
    let page = s.source().await?;
    ensure!(page.contains("Log signature") && page.contains(">OK<"), "checkpoint checks: {page}");
    shot(&s, &shots, "11-auditor-log").await?;
    s.goto(&format!("{}/audit?msg_id={msg_id}", aud.base)).await?;
    follow(&s, &format!("/audit/trace?msg_id={msg_id}")).await?;
    s.wait_source("id=\"route\"", PROMPT).await?;
    let route = s.text(&s.find("#route").await?).await.unwrap_or_default();
    let page = s.source().await?;
    for want in ["accepted", "forwarded", "relay.arinsa", "nl-fiod@carin", "za-npa@arinsa"] {
        ensure!(page.contains(want), "route lacks {want:?}: {route} {page}");
    }
    ensure!(s.find("#route svg").await.is_ok(), "no route picture");
    shot(&s, &shots, "12-auditor-route").await?;
    s.quit().await?;

    // Tablet width: the compose form fits without sideways scrolling.
    let t = driver.session(768, &fed.dir().join("chromium-tablet")).await?;
    t.goto(&carin.login).await?;
    t.goto(&format!("{}/compose", carin.base)).await?;
    let fits = t.execute("return document.documentElement.scrollWidth <= window.innerWidth").await?;
    ensure!(fits == serde_json::Value::Bool(true), "compose overflows at 768 px");
    shot(&t, &shots, "13-tablet-compose").await?;
    t.goto(&format!("{}/sent", carin.base)).await?;
    shot(&t, &shots, "14-tablet-sent").await?;
    t.quit().await?;
    fed.shutdown().await
}
