//! Just enough of the W3C WebDriver protocol, spoken over plain HTTP to a
//! `chromedriver` child process on loopback, to drive headless Chromium:
//! navigate, find, click, type, read text and attributes, cookies,
//! screenshots. (A WebDriver crate would bring a TLS stack the tests do not
//! need; chromedriver listens on 127.0.0.1 in clear.)
//!
//! Waiting is on page state with a deadline ([`Session::wait_for`]): the
//! console has no script, so a page is complete once loaded, and state that
//! changes elsewhere (a message arriving) is seen by reloading.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::http;

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The browser and its driver are installed (`chromium`, `chromedriver` on PATH).
pub(crate) fn available() -> bool {
    let on_path = |name: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    on_path("chromedriver") && on_path("chromium")
}

/// A running chromedriver in its own process group; on drop the whole
/// group (chromedriver and the browsers it started) is killed, so a failed
/// test leaves no browser behind.
pub(crate) struct Driver {
    base: String,
    child: tokio::process::Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Driver {
    /// Starts chromedriver on a port it picks and waits until it says where.
    /// With `--port=0` chromedriver finds a free port and then binds it, so
    /// two starting at the same moment (parallel tests) can race for one
    /// port; the loser exits with "port not available" and is started again.
    pub(crate) async fn start() -> Result<Driver> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Driver::start_once().await {
                Err(e) if attempt < 5 && format!("{e:#}").contains("port not available") => {
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn start_once() -> Result<Driver> {
        let mut child = tokio::process::Command::new("chromedriver")
            .arg("--port=0")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let out = child.stdout.take().context("chromedriver stdout")?;
        let mut lines = BufReader::new(out).lines();
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            let mut said = Vec::new();
            while let Some(l) = lines.next_line().await? {
                if let Some(rest) = l.split("started successfully on port ").nth(1) {
                    return Ok::<u16, anyhow::Error>(rest.trim_end_matches('.').trim().parse()?);
                }
                said.push(l);
            }
            bail!("chromedriver exited before reporting its port: {}", said.join(" | "))
        })
        .await
        .context("chromedriver did not start within 60 s")??;
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Driver { base: format!("http://127.0.0.1:{port}"), child })
    }

    /// A new headless browser session, 1280 px wide (or `width`).
    pub(crate) async fn session(&self, width: u32, profile_dir: &Path) -> Result<Session> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},1000"),
                         format!("--user-data-dir={}", profile_dir.display())],
            }
        }}});
        let v = http::json("POST", &format!("{}/session", self.base), Some(caps)).await?;
        let id = v["value"]["sessionId"].as_str().context("no session id")?.to_owned();
        Ok(Session { base: format!("{}/session/{id}", self.base) })
    }
}

/// One browser session.
pub(crate) struct Session {
    base: String,
}

/// An element reference.
#[derive(Clone, Debug)]
pub(crate) struct Elem(String);

impl Session {
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let v = http::json(method, &format!("{}{path}", self.base), body).await?;
        Ok(v["value"].clone())
    }

    /// Navigates to `url` (returns once loaded).
    pub(crate) async fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await.map(|_| ())
    }

    /// The current URL.
    pub(crate) async fn url(&self) -> Result<String> {
        Ok(self.cmd("GET", "/url", None).await?.as_str().unwrap_or_default().to_owned())
    }

    /// The page source.
    pub(crate) async fn source(&self) -> Result<String> {
        Ok(self.cmd("GET", "/source", None).await?.as_str().unwrap_or_default().to_owned())
    }

    /// Every element matching a CSS selector.
    pub(crate) async fn find_all(&self, css: &str) -> Result<Vec<Elem>> {
        let v = self.cmd("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await?;
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(|e| e[ELEMENT].as_str().map(|s| Elem(s.to_owned()))).collect())
            .unwrap_or_default())
    }

    /// The first element matching `css` (an error naming it if none).
    pub(crate) async fn find(&self, css: &str) -> Result<Elem> {
        self.find_all(css).await?.into_iter().next().with_context(|| format!("no element {css}"))
    }

    /// Clicks an element.
    pub(crate) async fn click(&self, e: &Elem) -> Result<()> {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({}))).await.map(|_| ())
    }

    /// Types into an element (for a file input: the file's path).
    pub(crate) async fn type_into(&self, e: &Elem, text: &str) -> Result<()> {
        self.cmd("POST", &format!("/element/{}/value", e.0), Some(json!({"text": text}))).await.map(|_| ())
    }

    /// Visible text of an element.
    pub(crate) async fn text(&self, e: &Elem) -> Result<String> {
        Ok(self
            .cmd("GET", &format!("/element/{}/text", e.0), None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// An attribute or property of an element (e.g. `href`).
    pub(crate) async fn attr(&self, e: &Elem, name: &str) -> Result<String> {
        let v = self.cmd("GET", &format!("/element/{}/property/{name}", e.0), None).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Value of a cookie (HttpOnly cookies included).
    pub(crate) async fn cookie(&self, name: &str) -> Result<String> {
        let v = self.cmd("GET", &format!("/cookie/{name}"), None).await?;
        Ok(v["value"].as_str().context("cookie without value")?.to_owned())
    }

    /// Saves a PNG screenshot of the viewport.
    pub(crate) async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.cmd("GET", "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().context("screenshot")?)?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Reloads `url` until the page source contains `needle`, for at most
    /// `limit` (a failure bound, never a pace: it returns at the first match).
    pub(crate) async fn wait_for(&self, url: &str, needle: &str, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            self.goto(url).await?;
            if self.source().await?.contains(needle) {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("{url} did not show {needle:?} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits (without reloading) until the page source contains `needle`,
    /// e.g. after a click that submits a form; at most `limit`.
    pub(crate) async fn wait_source(&self, needle: &str, limit: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let src = self.source().await?;
            if src.contains(needle) {
                return Ok(src);
            }
            if start.elapsed() > limit {
                bail!("the page did not show {needle:?} within {limit:?}: {src}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the current URL contains `part` (after a click that
    /// navigates); at most `limit`. Returns the URL.
    pub(crate) async fn wait_url(&self, part: &str, limit: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let url = self.url().await?;
            if url.contains(part) {
                return Ok(url);
            }
            if start.elapsed() > limit {
                bail!(
                    "the browser did not reach {part:?} within {limit:?}: at {url}: {}",
                    self.source().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs a script in the page through WebDriver (the console itself
    /// serves none; this is the test measuring the layout).
    pub(crate) async fn execute(&self, script: &str) -> Result<Value> {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Ends the session (closes the browser).
    pub(crate) async fn quit(self) -> Result<()> {
        http::json("DELETE", &self.base, None).await.map(|_| ())
    }
}
