//! What keeps other local programs and web pages out of the console.
//!
//! - **Session**: a random 256-bit token per start. `GET /?token=T` with the
//!   right token sets the cookie `focal_session_PORT=T; HttpOnly;
//!   SameSite=Strict; Path=/` and redirects to `/` (the token leaves the
//!   address bar). Every other request needs that cookie, else 403.
//! - **CSRF**: every form posts to an action carrying `?csrf=C` (a second
//!   random token, only ever written into our own pages). A POST without the
//!   right `csrf`, or whose `Origin` header is not this console's origin, is
//!   refused with 403 before any handler runs.
//! - **DNS rebinding**: the `Host` header must be `127.0.0.1:PORT`,
//!   `localhost:PORT` or `[::1]:PORT` (any host with `--dangerous-listen`).
//! - **Headers** on every response: a strict CSP (`default-src 'self';
//!   frame-ancestors 'none'; form-action 'self'`), `X-Frame-Options: DENY`,
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (not
//!   `no-referrer`: with it browsers send `Origin: null` on form posts),
//!   `Cache-Control: no-store`.
//! - **Bind**: loopback only, unless `--dangerous-listen` ([`check_listen`]).

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Failure, Shared};
use crate::error::{ClientError, Result};

/// Name of the session cookie of the console on `port`. Cookies are not
/// isolated by port, so two consoles (say a focal point's and an
/// auditor's) on one machine need different names.
pub fn cookie_name(port: u16) -> String {
    format!("focal_session_{port}")
}

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Refuses a non-loopback `addr` unless `dangerous` (`--dangerous-listen`).
pub fn check_listen(addr: SocketAddr, dangerous: bool) -> Result<()> {
    if addr.ip().is_loopback() || dangerous {
        return Ok(());
    }
    Err(ClientError::invalid(
        "listen address",
        format!(
            "{addr} is not a loopback address: the console would be reachable from other machines; \
             use --dangerous-listen {addr} if that is really meant"
        ),
    ))
}

/// A random token: 32 bytes from the OS, hex.
pub(crate) fn random_token() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ClientError::invalid("random source", "the OS random generator failed"))?;
    Ok(hex::encode(b))
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

fn refuse(why: &str) -> Response {
    Failure(StatusCode::FORBIDDEN, why.to_owned()).into_response()
}

/// The middleware in front of every route.
pub(crate) async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let mut resp = check(&st, req, next).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn check(st: &Shared, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if !st.dangerous_listen {
        let port = st.port;
        let ok = [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
        if !ok.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            return refuse("unexpected Host header: the console answers on 127.0.0.1 only");
        }
    }
    let query = req.uri().query();
    if req.method() == Method::GET
        && req.uri().path() == "/"
        && let Some(token) = query_param(query, "token")
    {
        if !same(token, &st.session) {
            return refuse("wrong session token: open the URL printed by `focal console`");
        }
        let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", cookie_name(st.port), st.session);
        let mut resp = axum::response::Redirect::to("/").into_response();
        resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii"));
        return resp;
    }
    if !cookie(req.headers(), &cookie_name(st.port)).is_some_and(|c| same(c, &st.session)) {
        return refuse("no valid session: open the URL printed by `focal console`");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let want = format!("http://{host}");
        if origin.is_some_and(|o| !o.eq_ignore_ascii_case(&want)) {
            return refuse("cross-site request refused (Origin is not this console)");
        }
        let fetch_site = req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
            return refuse("cross-site request refused (Sec-Fetch-Site)");
        }
        if !query_param(query, "csrf").is_some_and(|c| same(c, &st.csrf)) {
            return refuse("missing or wrong CSRF token: reload the page and submit the form again");
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_dangerous() {
        assert!(check_listen("127.0.0.1:0".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:8080".parse().unwrap(), false).is_ok());
        let e = check_listen("0.0.0.0:8080".parse().unwrap(), false).unwrap_err().to_string();
        assert!(e.contains("--dangerous-listen"), "{e}");
        assert!(check_listen("192.0.2.1:80".parse().unwrap(), false).is_err());
        assert!(check_listen("0.0.0.0:8080".parse().unwrap(), true).is_ok());
    }

    #[test]
    fn tokens_and_parsing() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()) && !same(&a, &b) && !same(&a, &a[1..]));
        assert_eq!(query_param(Some("x=1&csrf=ab"), "csrf"), Some("ab"));
        assert_eq!(query_param(Some("xcsrf=ab"), "csrf"), None);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; focal_session_80=xyz; focal_session_8=no"));
        assert_eq!(cookie(&h, &cookie_name(80)), Some("xyz"));
        assert_eq!(cookie(&h, &cookie_name(8)), Some("no"));
    }
}
