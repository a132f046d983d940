//! The federation view of a secretariat: carin and arinsa are spokes of
//! the gfp hub, not linked to each other. `focal admin status` of the CARIN
//! secretariat prints the gfp <-> arinsa link (known only from the hub's
//! link report), and, in headless Chromium, its console draws that link
//! with its state and "as reported by GFP". A screenshot is saved beside
//! the other console screenshots.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use focal_proto::Role;
use focal_tests::Federation;
use focal_tests::cli::{json_lines, ok};

use crate::webdriver::Driver;
use crate::{ConsoleProc, PROMPT, browser_or_skip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carin_secretariat_sees_the_gfp_arinsa_link() -> Result<()> {
    focal_tests::init();
    let bins = focal_tests::bins!();
    let mut fed = Federation::builder()
        .hub("gfp")
        .focal_point("nl-fiod@carin")
        .focal_point("za-npa@arinsa")
        .start()
        .await?;
    let admin = fed.add_member("secretariat@carin", Role::Admin)?.clone();

    // The CLI: the hub reports its links every few seconds; ask until its
    // report shows the link up.
    let start = Instant::now();
    let text = loop {
        let text = ok(&admin, &bins, &["admin", "status"]).await?;
        if text
            .lines()
            .any(|l| l.starts_with("link ") && l.contains("gfp <-> arinsa") && l.contains("connected"))
        {
            break text;
        }
        if start.elapsed() > PROMPT {
            bail!("focal admin status never showed gfp <-> arinsa connected:\n{text}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    ensure!(text.contains("reported   by gfp (relay.gfp)"), "{text}");
    let status = json_lines(&ok(&admin, &bins, &["--json", "admin", "status"]).await?)?;
    let reports = status[0]["remote_reports"].as_array().cloned().unwrap_or_default();
    ensure!(reports.len() == 1 && reports[0]["network"] == "gfp", "{status:?}");
    ensure!(
        reports[0]["links"].as_array().is_some_and(|l| l.iter().any(|l| l["peer_network"] == "arinsa")),
        "{status:?}"
    );

    if !browser_or_skip("the_carin_secretariat_sees_the_gfp_arinsa_link")? {
        return Ok(());
    }
    let sec = ConsoleProc::start(&admin, &bins, &[]).await?;

    let driver = Driver::start().await?;
    let s = driver.session(1280, &fed.dir().join("chromium-fedview")).await?;
    s.goto(&sec.login).await?;
    // The hub reports its links every few seconds; reload until its report
    // shows the link up.
    let link = "data-from=\"gfp\" data-to=\"arinsa\" data-state=\"connected\"";
    s.wait_for(&format!("{}/admin", sec.base), link, PROMPT).await?;
    let page = s.source().await?;
    ensure!(page.contains("as reported by GFP"), "no report source on the page: {page}");
    ensure!(page.contains("data-network=\"arinsa\"") && page.contains("data-network=\"gfp\""), "{page}");
    // The table lists it too.
    let rows = s.find_all("table tbody tr").await?;
    let mut texts = Vec::new();
    for r in &rows {
        texts.push(s.text(r).await?);
    }
    ensure!(
        texts.iter().any(|t| t.contains("GFP") && t.contains("ARINSA") && t.contains("connected")),
        "no GFP–ARINSA row: {texts:?}"
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("15-secretariat-federation-view.png");
    s.screenshot(&path).await?;
    eprintln!("screenshot: {}", path.display());
    s.quit().await?;
    Ok(())
}
