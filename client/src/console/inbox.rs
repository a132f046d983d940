//! Focal point lists: the inbox (the relay's waiting messages, with the
//! sealed fields of those already opened here, or else read locally by
//! [`super::preview`] without marking them read), sent messages with their
//! receipts, overdue requests and a case thread. The data comes from
//! [`Client::list_inbox`](crate::Client::list_inbox),
//! [`Client::receipts`](crate::Client::receipts), [`crate::case::thread`] and
//! [`crate::case::overdue`], exactly as for the CLI.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::response::IntoResponse;

use super::html::{self, esc, table, time, url};
use super::preview::{self, Preview};
use super::strings::strings;
use super::{Page, Shared};
use crate::util::{handling_name, msg_id_hex, now_ms, priority_name};

/// Reload period of the inbox and sent pages in a browser without
/// JavaScript (with it, they update on each change the relay reports).
const LIVE_FALLBACK_SECS: u32 = 30;

/// Link to a message view.
pub(crate) fn message_link(sender: &str, id: &str, text: &str) -> String {
    format!("<a href=\"/message/{}/{}\">{}</a>", url(sender), url(id), esc(text))
}

/// Link to a case thread (empty for no case).
pub(crate) fn case_link(case_ref: &str) -> String {
    if case_ref.is_empty() {
        return String::new();
    }
    format!("<a href=\"/case?ref={}\">{}</a>", url(case_ref), esc(case_ref))
}

fn priority_cell(p: i32) -> String {
    let name = priority_name(p);
    if name.eq_ignore_ascii_case("urgent") {
        format!("<span class=\"urgent\">{}</span>", esc(name))
    } else {
        esc(name)
    }
}

/// A byte count as `812 B`, `3.4 MB`.
fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// `GET /inbox`.
pub(crate) async fn inbox(State(st): State<Shared>) -> Page {
    let s = strings();
    let waiting = st.client.list_inbox().await?;
    let store = st.client.store();
    let mut rows = Vec::new();
    let mut budget = preview::PAGE_BUDGET_BYTES;
    for m in &waiting {
        let id = msg_id_hex(&m.msg_id);
        let from = m.sender.to_string();
        let rec = store.received(&id, &from)?;
        let sealed = |why: &str| format!("<em>{}</em>", esc(why));
        let (subject, kind, case, deadline) = match &rec {
            Some(r) => (
                message_link(&from, &id, if r.subject.is_empty() { &id } else { &r.subject }),
                esc(&r.kind),
                case_link(&r.case_ref),
                esc(&time(r.response_deadline_ms)),
            ),
            None => match preview::preview(&st, m, &mut budget).await {
                Preview::Opened(p) => {
                    let mut subject =
                        message_link(&from, &id, if p.subject.is_empty() { &id } else { &p.subject });
                    let _ = write!(subject, "<br><span class=\"hint\">{}", esc(s.not_opened));
                    if !p.attachments.is_empty() {
                        let total: u64 = p.attachments.iter().map(|a| a.1).sum();
                        let _ = write!(
                            subject,
                            "; {}: {} ({})",
                            esc(s.attachments_label),
                            p.attachments.len(),
                            esc(&bytes(total))
                        );
                    }
                    subject.push_str("</span>");
                    (subject, esc(&p.kind), case_link(&p.case_ref), esc(&time(p.deadline_ms)))
                }
                Preview::Deferred => {
                    (message_link(&from, &id, s.open), sealed(s.sealed), sealed(s.sealed), sealed(s.sealed))
                }
                Preview::TooLarge => (
                    message_link(&from, &id, s.open),
                    sealed(s.too_large_to_preview),
                    sealed(s.sealed),
                    sealed(s.sealed),
                ),
                Preview::Failed(why) => (
                    format!(
                        "{}<br><span class=\"bad\">{}: {}</span>",
                        message_link(&from, &id, s.open),
                        esc(s.cannot_open),
                        esc(&why)
                    ),
                    sealed(s.sealed),
                    sealed(s.sealed),
                    sealed(s.sealed),
                ),
            },
        };
        rows.push(vec![
            esc(&time(m.received_at_ms)),
            esc(&from),
            subject,
            kind,
            case,
            priority_cell(m.priority),
            deadline,
            esc(handling_name(m.handling)),
            m.payload_size.to_string(),
        ]);
    }
    let head =
        [s.received, s.from, s.subject, s.kind, s.case_ref, s.priority, s.deadline, s.handling, s.size];
    let mut body = format!("<h1>{}</h1>", esc(s.inbox));
    body.push_str(&table(s.waiting, &head, &rows));
    let mut read = store.all_received()?;
    read.sort_by_key(|r| std::cmp::Reverse(r.read_at_ms));
    let rows: Vec<Vec<String>> = read
        .iter()
        .map(|r| {
            vec![
                esc(&time(r.created_at_ms)),
                esc(&r.from),
                if r.acked { esc(&r.subject) } else { message_link(&r.from, &r.msg_id, &r.subject) },
                esc(&r.kind),
                case_link(&r.case_ref),
                esc(&time(r.response_deadline_ms)),
                esc(&r.handling),
                if r.acked { esc(s.acknowledged.split(':').next().unwrap_or("")) } else { String::new() },
            ]
        })
        .collect();
    let head = [s.created, s.from, s.subject, s.kind, s.case_ref, s.deadline, s.handling, s.state];
    body.push_str(&table(s.read_messages, &head, &rows));
    Ok(html::frame(Some(&st), s.inbox, &body, Some(LIVE_FALLBACK_SECS)).into_response())
}

/// `GET /sent`: sent messages, newest first, each with its receipts.
pub(crate) async fn sent(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Page {
    let s = strings();
    let receipts = st.client.receipts(0).await?;
    let mut by_msg: HashMap<String, Vec<String>> = HashMap::new();
    for r in &receipts {
        let line = match &r.problem {
            None => format!(
                "<span class=\"ok\">{}</span> {} {}",
                esc(r.kind()),
                esc(&r.body.subject),
                esc(&time(r.body.at_ms))
            ),
            Some(p) => format!("<span class=\"bad\">{} ({})</span>", esc(r.kind()), esc(p)),
        };
        by_msg.entry(msg_id_hex(&r.body.msg_id)).or_default().push(line);
    }
    let mut sent = st.client.store().all_sent()?;
    sent.sort_by_key(|m| std::cmp::Reverse(m.created_at_ms));
    let rows: Vec<Vec<String>> = sent
        .iter()
        .map(|m| {
            let rc = by_msg.get(&m.msg_id).map(|v| v.join("<br>"));
            vec![
                esc(&time(m.created_at_ms)),
                esc(&m.to.join(", ")),
                format!("{}<br><code>{}</code>", esc(&m.subject), esc(&m.msg_id)),
                esc(&m.kind),
                case_link(&m.case_ref),
                esc(&m.handling),
                rc.unwrap_or_else(|| format!("<em>{}</em>", esc(s.no_receipt))),
            ]
        })
        .collect();
    let mut body = format!("<h1>{}</h1>", esc(s.sent));
    if let Some(id) = q.get("accepted") {
        body.push_str(&html::notice(&format!("{}: {id}", s.accepted)));
    }
    let head = [s.created, s.to, s.subject, s.kind, s.case_ref, s.handling, s.receipts];
    body.push_str(&table(s.sent, &head, &rows));
    Ok(html::frame(Some(&st), s.sent, &body, Some(LIVE_FALLBACK_SECS)).into_response())
}

/// `GET /overdue`.
pub(crate) async fn overdue(State(st): State<Shared>) -> Page {
    let s = strings();
    let list = crate::case::overdue(st.client.store(), now_ms())?;
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|o| {
            vec![
                format!("{}<br><code>{}</code>", esc(&o.subject), esc(&o.msg_id)),
                case_link(&o.case_ref),
                esc(&o.kind),
                format!("<span class=\"bad\">{}</span>", esc(&time(o.deadline_ms))),
                esc(&html::age(o.late_by_ms)),
                esc(&o.waiting_for.join(", ")),
            ]
        })
        .collect();
    let head = [s.subject, s.case_ref, s.kind, s.deadline, s.late_by, s.waiting_for];
    let body = format!("<h1>{}</h1>{}", esc(s.overdue), table(s.overdue, &head, &rows));
    Ok(html::frame(Some(&st), s.overdue, &body, None).into_response())
}

/// `GET /case?ref=R`.
pub(crate) async fn case(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Page {
    let s = strings();
    let case_ref = q.get("ref").cloned().unwrap_or_default();
    let me = st.client.address().to_string();
    let thread = crate::case::thread(st.client.store(), &me, &case_ref)?;
    let rows: Vec<Vec<String>> = thread
        .iter()
        .map(|e| {
            let subject = if e.direction == "received" {
                message_link(&e.from, &e.msg_id, &e.subject)
            } else {
                esc(&e.subject)
            };
            vec![
                esc(&time(e.created_at_ms)),
                esc(e.direction),
                esc(&e.from),
                esc(&e.to.join(", ")),
                format!("{subject}<br><code>{}</code>", esc(&e.msg_id)),
                esc(&e.kind),
                esc(&e.handling),
                esc(&e.reply_to_msg_id),
            ]
        })
        .collect();
    let head = [s.created, s.direction, s.from, s.to, s.subject, s.kind, s.handling, s.in_reply_to];
    let title = format!("{} {case_ref}", s.case);
    let body = format!("<h1>{}</h1>{}", esc(&title), table(&title, &head, &rows));
    Ok(html::frame(Some(&st), s.case, &body, None).into_response())
}
