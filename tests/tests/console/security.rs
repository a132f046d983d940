//! The console's protections, spoken to with a plain HTTP client (no
//! browser): session token (also on the compose progress endpoint), CSRF
//! token and Origin check, Host check,
//! security headers, the loopback-only bind, an unopenable message shown as
//! `cannot open: <reason>` in the inbox, and that an open live-update
//! event stream does not hold the console up at shutdown.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use focal_client::progress::NoProgress;
use focal_tests::Federation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::{get, request};
use crate::{ConsoleProc, PROMPT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_session_token_are_refused() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder().focal_point("nl-fiod@carin").start().await?;
    let c = ConsoleProc::start(fed.fp("nl-fiod@carin"), &bins, &[]).await?;
    ensure!(c.login.starts_with("http://127.0.0.1:"), "{}", c.login);

    let paths = [
        "/",
        "/inbox",
        "/compose",
        "/static/console.css",
        "/static/live.js",
        "/static/compose.js",
        "/events",
        "/compose/progress?token=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "/message/a@carin/00/attachment/0",
    ];
    for path in paths {
        let r = get(&format!("{}{path}", c.base), &[]).await?;
        ensure!(r.status == 403, "{path} without a session: {} {}", r.status, r.text());
        ensure!(r.header("content-security-policy").contains("default-src 'self'"), "{:?}", r.headers);
    }
    let wrong_cookie = format!("{}=0000", c.cookie_name());
    let r = get(&format!("{}/inbox", c.base), &[("cookie", &wrong_cookie)]).await?;
    ensure!(r.status == 403, "wrong cookie: {}", r.status);
    let r = get(&format!("{}/?token=0123", c.base), &[]).await?;
    ensure!(r.status == 403, "wrong token: {}", r.status);

    // The right token: a strict, HttpOnly cookie and a redirect off the token URL.
    let r = get(&c.login, &[]).await?;
    ensure!(r.status == 303, "login: {} {}", r.status, r.text());
    let set = r.header("set-cookie");
    ensure!(set.contains(&c.token) && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    ensure!(r.header("location") == "/", "{:?}", r.headers);

    let cookie = c.cookie();
    let r = get(&format!("{}/inbox", c.base), &[("cookie", &cookie)]).await?;
    ensure!(r.status == 200, "inbox with the session: {} {}", r.status, r.text());
    ensure!(
        r.header("content-security-policy").contains("frame-ancestors 'none'")
            && r.header("content-security-policy").contains("form-action 'self'"),
        "{:?}",
        r.headers
    );
    ensure!(r.header("x-frame-options") == "DENY", "{:?}", r.headers);
    let page = r.text();
    // No inline script: the only script is the console's own live-update file.
    let own = "<script src=\"/static/live.js\" defer></script>";
    ensure!(page.matches("<script").count() == page.matches(own).count(), "{page}");
    ensure!(!page.contains("http://") && !page.contains("https://"), "{page}");
    let r = get(&format!("{}/static/live.js", c.base), &[("cookie", &cookie)]).await?;
    ensure!(r.status == 200 && r.header("content-type").starts_with("text/javascript"), "{:?}", r.headers);
    ensure!(r.text().contains("new EventSource('/events')"), "{}", r.text());
    // Keys and certificates never reach the browser.
    ensure!(!page.contains("PRIVATE KEY") && !page.contains("CERTIFICATE"), "{page}");

    // Compose: its only script is the console's own compose file, and the
    // progress endpoint answers only with the session (unknown token: 404).
    let page = get(&format!("{}/compose", c.base), &[("cookie", &cookie)]).await?.text();
    let own = "<script src=\"/static/compose.js\" defer></script>";
    ensure!(page.matches("<script").count() == 1 && page.contains(own), "{page}");
    let token = page
        .split("name=\"progress\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("compose form has no progress token")?
        .to_owned();
    ensure!(token.len() == 64 && token != c.token, "{token}");
    let progress = format!("{}/compose/progress?token={token}", c.base);
    let r = get(&progress, &[]).await?;
    ensure!(r.status == 403, "progress without a session: {} {}", r.status, r.text());
    let r = get(&progress, &[("cookie", &wrong_cookie)]).await?;
    ensure!(r.status == 403, "progress with a wrong cookie: {}", r.status);
    let r = get(&progress, &[("cookie", &cookie)]).await?;
    ensure!(r.status == 404, "progress of a compose not sent yet: {} {}", r.status, r.text());
    let r = get(&format!("{}/compose/progress?token=x", c.base), &[("cookie", &cookie)]).await?;
    ensure!(r.status == 400, "malformed progress token: {}", r.status);

    // DNS rebinding: the right cookie under another host name is refused.
    let r = get(&format!("{}/inbox", c.base), &[("cookie", &cookie), ("host", "evil.example:80")]).await?;
    ensure!(r.status == 403, "foreign Host: {}", r.status);

    // A waiting message the console cannot open (sealed to an encryption
    // key this focal point no longer holds) gets a "cannot open: <reason>"
    // row in the inbox, not a broken page.
    let me = vec![focal_proto::Address::parse_member("nl-fiod@carin")?];
    let draft = focal_client::Draft::new(me, "sealed to a retired key", "unreadable now");
    let sent = fed.client("nl-fiod@carin").await?.send(&draft, Arc::new(NoProgress)).await?;
    let key_dir = fed.fp("nl-fiod@carin").profile()?.key_dir;
    std::fs::rename(&key_dir, key_dir.with_extension("retired"))?;
    focal_client::keys::KeyStore::new(&key_dir).generate(false, focal_client::util::now_ms())?;
    let r = get(&format!("{}/inbox", c.base), &[("cookie", &cookie)]).await?;
    let page = r.text();
    ensure!(r.status == 200, "inbox with an unreadable message: {} {page}", r.status);
    ensure!(
        page.contains("cannot open: verification failed") && page.contains("no recipient stanza"),
        "{page}"
    );
    ensure!(page.contains(&hex::encode(sent.msg_id)), "the unreadable message is listed: {page}");

    // A live page's event stream (an open tab) does not hold the console
    // up at shutdown: SIGTERM ends the stream and the process.
    let host = c.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&host).await?;
    let req = format!(
        "GET /events HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(PROMPT, tcp.read(&mut b)).await.context("event stream headers")??;
        ensure!(n == 1, "the event stream closed before its headers: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    ensure!(head.starts_with("http/1.1 200") && head.contains("text/event-stream"), "{head}");
    let status = c.terminate().await?;
    ensure!(status.success(), "focal console after SIGTERM: {status}");
    let mut rest = Vec::new();
    tokio::time::timeout(PROMPT, tcp.read_to_end(&mut rest))
        .await
        .context("the event stream stayed open")??;
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_form_posts_are_refused() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder().focal_point("nl-fiod@carin").focal_point("be-ocsc@carin").start().await?;
    let c = ConsoleProc::start(fed.fp("nl-fiod@carin"), &bins, &[]).await?;
    let cookie = c.cookie();
    let page = get(&format!("{}/compose", c.base), &[("cookie", &cookie)]).await?.text();
    let csrf = page
        .split("action=\"/compose?csrf=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("compose form has no CSRF token in its action")?
        .to_owned();
    ensure!(csrf.len() == 64 && csrf != c.token, "{csrf}");
    let origin = c.base.clone();
    // The compose page's progress token (any 64 hex digits).
    const PROGRESS: &str = "5eed0000000000000000000000000000000000000000000000000000000000aa";
    let progress = format!("{}/compose/progress?token={PROGRESS}", c.base);
    let form = |to: &str| {
        let b = "XyZboundary";
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"progress\"\r\n\r\n{PROGRESS}\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"to_other\"\r\n\r\n{to}\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nforged\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nforged\r\n--{b}--\r\n"
        )
        .into_bytes()
    };
    let ct = "multipart/form-data; boundary=XyZboundary";
    let with_csrf = format!("{}/compose?csrf={csrf}", c.base);
    let without = format!("{}/compose", c.base);

    // A page elsewhere posting with the victim's cookie: no CSRF token.
    let r = request(
        "POST",
        &without,
        &[("cookie", &cookie), ("content-type", ct), ("origin", &origin)],
        form("be-ocsc@carin"),
    )
    .await?;
    ensure!(r.status == 403, "no CSRF token: {} {}", r.status, r.text());
    // A wrong token.
    let wrong = format!("{}/compose?csrf={}", c.base, "0".repeat(64));
    let r = request(
        "POST",
        &wrong,
        &[("cookie", &cookie), ("content-type", ct), ("origin", &origin)],
        form("be-ocsc@carin"),
    )
    .await?;
    ensure!(r.status == 403, "wrong CSRF token: {}", r.status);
    // The right token but another site's Origin.
    let r = request(
        "POST",
        &with_csrf,
        &[("cookie", &cookie), ("content-type", ct), ("origin", "http://evil.example")],
        form("be-ocsc@carin"),
    )
    .await?;
    ensure!(r.status == 403, "foreign Origin: {}", r.status);
    let r = request(
        "POST",
        &with_csrf,
        &[("cookie", &cookie), ("content-type", ct), ("origin", &origin), ("sec-fetch-site", "cross-site")],
        form("be-ocsc@carin"),
    )
    .await?;
    ensure!(r.status == 403, "Sec-Fetch-Site cross-site: {}", r.status);
    // Without the session cookie, even with the token.
    let r = request("POST", &with_csrf, &[("content-type", ct), ("origin", &origin)], form("be-ocsc@carin"))
        .await?;
    ensure!(r.status == 403, "no session: {}", r.status);
    // Nothing was sent by any of these.
    let sent = get(&format!("{}/sent", c.base), &[("cookie", &cookie)]).await?.text();
    ensure!(!sent.contains("forged"), "a refused post was sent: {sent}");
    let r = get(&progress, &[("cookie", &cookie)]).await?;
    ensure!(r.status == 404, "a refused post reached the compose handler: {} {}", r.status, r.text());

    // The same post from the console's own page goes through.
    let r = request(
        "POST",
        &with_csrf,
        &[("cookie", &cookie), ("content-type", ct), ("origin", &origin)],
        form("be-ocsc@carin"),
    )
    .await?;
    ensure!(r.status == 303, "same-origin post: {} {}", r.status, r.text());
    ensure!(r.header("location").starts_with("/sent?accepted="), "{:?}", r.headers);
    let sent = get(&format!("{}/sent", c.base), &[("cookie", &cookie)]).await?.text();
    ensure!(sent.contains("forged") && sent.contains("be-ocsc@carin"), "{sent}");
    // Its progress: the console's send to the relay went to its end.
    let r = get(&progress, &[("cookie", &cookie)]).await?;
    ensure!(
        r.status == 200 && r.header("content-type") == "application/json",
        "{} {:?}",
        r.status,
        r.headers
    );
    let p: serde_json::Value = serde_json::from_slice(&r.body)?;
    ensure!(p["phase"] == "storing" && p["state"] == "sent" && p["done"] == p["total"], "{p}");
    fed.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_bind_needs_dangerous_listen() -> Result<()> {
    let bins = focal_tests::bins!();
    let fed = Federation::builder().focal_point("nl-fiod@carin").start().await?;
    let fp = fed.fp("nl-fiod@carin");
    for addr in ["0.0.0.0", "192.0.2.10", "::"] {
        let mut cmd = fp.cli(&bins);
        cmd.args(["console", "--listen", addr]);
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "console bound {addr}: {err}");
        ensure!(err.contains("not a loopback address") && err.contains("--dangerous-listen"), "{err}");
    }
    // The library refuses too, before binding anything.
    let e = focal_client::console::check_listen("0.0.0.0:0".parse()?, false).unwrap_err().to_string();
    ensure!(e.contains("--dangerous-listen"), "{e}");
    ensure!(focal_client::console::check_listen("0.0.0.0:0".parse()?, true).is_ok());
    fed.shutdown().await
}
