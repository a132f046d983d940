//! Page building: the one HTML-escape helper, the page frame (title,
//! skip link, navigation of the role, notice), small table and form
//! helpers, and the stylesheet served from the binary.
//!
//! Pages are plain strings; every value that comes from outside (message
//! fields, addresses, errors) goes through [`esc`]. No inline `style`
//! attributes or scripts (the CSP forbids them); live pages load the one
//! script of the binary, `/static/live.js`.

use std::fmt::Write;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use focal_proto::Role;

use super::State;
use super::strings::strings;
use crate::util::fmt_time_ms;

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value.
pub(crate) fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time as `YYYY-MM-DD HH:MM UTC` (empty for 0).
pub(crate) fn time(ms: i64) -> String {
    if ms == 0 {
        return String::new();
    }
    let t = fmt_time_ms(ms);
    format!("{} {} UTC", &t[..10], &t[11..16])
}

/// A duration in ms as `3 h 5 min`, `42 s`.
pub(crate) fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The action URL of a form posting to `path`, with the CSRF token.
pub(crate) fn action(st: &State, path: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    esc(&format!("{path}{sep}csrf={}", st.csrf))
}

/// A table: caption, header cells, rows of already-escaped cells.
pub(crate) fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = format!("<div class=\"scroll\"><table><caption>{}</caption><thead><tr>", esc(caption));
    for h in head {
        let _ = write!(t, "<th scope=\"col\">{}</th>", esc(h));
    }
    t.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(t, "<tr><td colspan=\"{}\">{}</td></tr>", head.len(), esc(strings().none));
    }
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            let _ = write!(t, "<td>{c}</td>");
        }
        t.push_str("</tr>");
    }
    t.push_str("</tbody></table></div>");
    t
}

/// A definition list of (label, already-escaped value).
pub(crate) fn fields(items: &[(&str, String)]) -> String {
    let mut t = String::from("<dl class=\"fields\">");
    for (k, v) in items.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = write!(t, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    t.push_str("</dl>");
    t
}

/// The whole page around `body`; `st` gives the navigation of the role.
/// With `refresh_secs` the page is live ([`super::live`]): updated by the
/// script on each change, or reloaded every `refresh_secs` without script.
pub(crate) fn frame(st: Option<&State>, title: &str, body: &str, refresh_secs: Option<u32>) -> Html<String> {
    let s = strings();
    let mut nav = String::new();
    let mut who = String::new();
    if let Some(st) = st {
        let links: &[(&str, &str)] = match st.role {
            Role::Fp => {
                &[("/inbox", s.inbox), ("/compose", s.compose), ("/sent", s.sent), ("/overdue", s.overdue)]
            }
            Role::Admin => &[("/admin", s.federation)],
            Role::Auditor => &[("/audit", s.audit)],
            Role::Relay => &[],
        };
        nav.push_str("<nav aria-label=\"main\"><ul>");
        for (href, label) in links {
            let current = if *label == title { " aria-current=\"page\"" } else { "" };
            let _ = write!(nav, "<li><a href=\"{href}\"{current}>{}</a></li>", esc(label));
        }
        nav.push_str("</ul></nav>");
        who = format!(
            "<p class=\"who\">{} &middot; {}</p>",
            esc(&st.client.address().to_string()),
            esc(st.role.as_str())
        );
    }
    // A page with a refresh period is live: the script swaps its content
    // when the relay reports a change; without script, the meta refresh.
    let refresh = refresh_secs
        .map(|n| {
            format!(
                "<noscript><meta http-equiv=\"refresh\" content=\"{n}\"></noscript>\
                 <script src=\"/static/live.js\" defer></script>"
            )
        })
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{title} - {app}</title><link rel=\"stylesheet\" href=\"/static/console.css\"></head>\
         <body><a class=\"skip\" href=\"#main\">{skip}</a><header><p class=\"app\">{app}</p>{who}{nav}</header>\
         <main id=\"main\">{body}</main></body></html>",
        lang = s.lang,
        title = esc(title),
        app = esc(s.app),
        skip = esc(s.skip),
    ))
}

/// A short notice paragraph (status role, for screen readers).
pub(crate) fn notice(text: &str) -> String {
    format!("<p class=\"notice\" role=\"status\">{}</p>", esc(text))
}

/// `GET /static/console.css`.
pub(crate) async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

const CSS: &str = r#"
:root { --fg:#1b1f24; --muted:#57606a; --line:#d0d7de; --accent:#0b5cad; --bad:#b00020; --ok:#116329; --bg:#fff; --soft:#f3f5f7; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
.skip { position:absolute; left:-999px; } .skip:focus { left:8px; top:8px; background:#fff; padding:4px; }
header { display:flex; flex-wrap:wrap; align-items:center; gap:0 24px; padding:8px 24px; background:#0d2740; color:#fff; }
header .app { font-weight:700; margin:8px 0; } header .who { margin:8px 0; opacity:.85; }
header nav ul { display:flex; flex-wrap:wrap; gap:4px 16px; list-style:none; margin:0; padding:0; }
header nav a { color:#fff; } header nav a[aria-current=page] { font-weight:700; text-decoration-thickness:3px; }
main { max-width:1280px; margin:0 auto; padding:16px 24px 48px; }
h1 { font-size:1.6rem; margin:.6rem 0 1rem; } h2 { font-size:1.25rem; margin:1.6rem 0 .6rem; }
a { color:var(--accent); } a:focus, button:focus, input:focus, select:focus, textarea:focus { outline:3px solid #f2a900; outline-offset:1px; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; margin:.4rem 0 1rem; }
caption { text-align:left; font-weight:600; padding:4px 0; }
th, td { border-bottom:1px solid var(--line); padding:6px 8px; text-align:left; vertical-align:top; }
th { background:var(--soft); }
.urgent { color:var(--bad); font-weight:700; } .bad { color:var(--bad); } .ok { color:var(--ok); font-weight:600; }
.notice { background:#e7f3ff; border-left:4px solid var(--accent); padding:8px 12px; }
dl.fields { display:grid; grid-template-columns: max-content 1fr; gap:4px 16px; }
dl.fields dt { font-weight:600; } dl.fields dd { margin:0; overflow-wrap:anywhere; }
pre.body { white-space:pre-wrap; background:var(--soft); padding:12px; border-radius:4px; }
form.stack { display:grid; gap:10px; max-width:900px; }
form.stack label { font-weight:600; display:block; }
input[type=text], input[type=date], select, textarea { width:100%; font:inherit; padding:6px; border:1px solid #8c959f; border-radius:4px; }
textarea { min-height:6rem; }
progress { width:100%; height:1.2rem; }
fieldset { border:1px solid var(--line); border-radius:4px; }
.hint { color:var(--muted); font-size:.9rem; margin:2px 0; }
button { font:inherit; padding:6px 14px; border-radius:4px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; }
form.inline { display:inline; }
form.inline button { padding:2px 8px; font-size:.9rem; }
.row { display:flex; flex-wrap:wrap; gap:12px; align-items:end; }
.row > div { flex:1 1 180px; }
svg { max-width:100%; height:auto; }
ul.plain { list-style:none; margin:0; padding:0; }
code, .mono { font-family: ui-monospace, monospace; font-size:.9rem; overflow-wrap:anywhere; }
@media (max-width: 900px) { main { padding:12px; } dl.fields { grid-template-columns:1fr; } }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(url("nl-fiod@carin"), "nl-fiod%40carin");
        assert_eq!(age(3_723_000), "1 h 2 min");
        assert_eq!(time(0), "");
    }
}
