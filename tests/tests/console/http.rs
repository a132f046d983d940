//! A minimal HTTP/1.1 client for the console tests (hyper, one connection
//! per request, loopback only): the security tests speak to the console
//! with it, and the WebDriver client speaks to chromedriver with it.

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Status code.
    pub(crate) status: u16,
    /// Headers.
    pub(crate) headers: http::HeaderMap,
    /// Body.
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value ("" if absent).
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// Sends `method url` with `headers` and `body`; `url` is `http://host:port/path?query`.
pub(crate) async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Reply> {
    let rest = url.strip_prefix("http://").with_context(|| format!("not an http URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let stream =
        tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connect {authority}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path);
    let mut has_host = false;
    for (k, v) in headers {
        has_host |= k.eq_ignore_ascii_case("host");
        req = req.header(*k, *v);
    }
    if !has_host {
        req = req.header("host", authority);
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::from(body)))?).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    Ok(Reply { status, headers, body })
}

/// GET with headers.
pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    request("GET", url, headers, Vec::new()).await
}

/// A JSON request (WebDriver); fails on a non-2xx status with the server's message.
pub(crate) async fn json(
    method: &str,
    url: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = request(method, url, &[("content-type", "application/json")], bytes).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).with_context(|| format!("{method} {url}: not JSON: {}", r.text()))?;
    if !(200..300).contains(&r.status) {
        bail!("{method} {url}: HTTP {}: {}", r.status, v);
    }
    Ok(v)
}
