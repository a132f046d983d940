//! `focal console` (issue 10): the local web console, run as a real `focal
//! console` child process against a real federation on loopback.
//!
//! - `security`: plain HTTP, no browser: requests without the session
//!   token are refused, cross-site posts (wrong Origin, no CSRF token) are
//!   refused, the security headers are set, and a non-loopback address is
//!   refused without `--dangerous-listen`.
//! - `browser`: the end-to-end scenario in headless Chromium driven
//!   over WebDriver (`chromium` + `chromedriver`), with a screenshot of each
//!   view saved under `target/tmp/console-screenshots/` (path printed).
//!   Without chromedriver the browser tests skip with a loud message, or
//!   FAIL when `FOCAL_REQUIRE_BROWSER=1` (CI sets it).
//!
//! Run: `cargo test -p focal-tests --test console`.

mod browser;
mod fedview;
mod http;
mod security;
mod webdriver;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use focal_tests::{Bins, FocalPoint};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Failure bound for anything that should happen promptly (never a pace).
pub const PROMPT: Duration = Duration::from_secs(90);

/// A running `focal console` child process (killed on drop).
pub struct ConsoleProc {
    /// The one-time login URL it printed (`http://127.0.0.1:PORT/?token=…`).
    pub login: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The session token.
    pub token: String,
    child: tokio::process::Child,
}

impl ConsoleProc {
    /// Starts `focal --profile <fp> --json console <extra>` and reads the URL it prints.
    pub async fn start(fp: &FocalPoint, bins: &Bins, extra: &[&str]) -> Result<ConsoleProc> {
        let mut cmd = fp.cli(bins);
        cmd.arg("--json").arg("console").args(extra);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut child = cmd.spawn().context("starting focal console")?;
        let out = child.stdout.take().context("console stdout")?;
        let mut lines = BufReader::new(out).lines();
        let line = tokio::time::timeout(PROMPT, lines.next_line())
            .await
            .context("focal console printed no URL in time")??
            .context("focal console exited before printing its URL")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
        let login = v["url"].as_str().context("url")?.to_owned();
        let (base, token) = login.split_once("/?token=").context("URL without token")?;
        Ok(ConsoleProc { base: base.to_owned(), token: token.to_owned(), login: login.clone(), child })
    }

    /// Sends SIGTERM and waits (at most [`PROMPT`]) for the console to exit.
    pub async fn terminate(mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().context("the console exited already")?;
        let kill = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        anyhow::ensure!(kill.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(PROMPT, self.child.wait())
            .await
            .context("the console did not exit after SIGTERM")?
            .context("waiting for the console")
    }

    /// `Cookie` header value of the session.
    pub fn cookie(&self) -> String {
        format!("{}={}", self.cookie_name(), self.token)
    }

    /// Name of the session cookie.
    pub fn cookie_name(&self) -> String {
        let port = self.base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        focal_client::console::cookie_name(port)
    }
}

/// True if the browser tests can run; false (after a loud message) if they
/// should skip; an error if `FOCAL_REQUIRE_BROWSER=1` and they cannot.
pub fn browser_or_skip(test: &str) -> Result<bool> {
    if webdriver::available() {
        return Ok(true);
    }
    let msg = "chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)";
    if std::env::var("FOCAL_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        bail!("{test}: FOCAL_REQUIRE_BROWSER=1 but {msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: {msg} !!!!!!!!\n");
    Ok(false)
}

/// SHA-256 hex of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}
