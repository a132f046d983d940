//! Auditor view (certificate role `auditor`): the same functions as
//! `focal audit fetch|verify|trace|export|stats` ([`crate::audit`]) on the
//! auditor's local log directory. "Fetch and verify" downloads new entries
//! (verified on the way) and then verifies the whole directory offline with
//! the log key given at start (`--audit-key`); the checkpoint history shows
//! each stored checkpoint with the outcome of that verification (log
//! signature, consistency) and, per witness, its cosignature verified
//! against the keys given with `--witness` ([`super::witness`]), not
//! verified, or missing; `--require-witnesses N` makes the verification
//! itself fail below N valid cosignatures; entries can
//! be filtered by time, kind, sender, peer and message id; a message's
//! trace is drawn as a route; per-day counts as bars; exports as JSONL/CSV.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use serde_json::Value;

use super::html::{self, action, esc, fields, table, time, url};
use super::strings::strings;
use super::svg::{self, Stop};
use super::witness::{self, Cosig};
use super::{Failure, Page, Shared};
use crate::audit::{self, ExportFormat};
use focal_proto::audit::LogKey;

/// Rows shown at most in the entries table (newest first).
const MAX_ROWS: usize = 500;

fn key(st: &Shared) -> Result<&str, Failure> {
    st.audit_key.as_deref().ok_or_else(|| Failure(StatusCode::BAD_REQUEST, strings().no_key.into()))
}

/// `POST /audit/refresh`: fetch, then verify.
pub(crate) async fn refresh(State(st): State<Shared>) -> Page {
    let key = key(&st)?.to_owned();
    let mut client = st.client.audit();
    let fetched = audit::fetch(&mut client, &st.audit_dir, &key).await;
    let outcome = match &fetched {
        Ok(_) => {
            let named: Vec<(String, String)> =
                st.witnesses.iter().map(|t| (t.name().to_owned(), t.vkey.clone())).collect();
            audit::verify(&st.audit_dir, &key, &named, st.required_witnesses).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    *st.last_verify.lock().expect("verify state") = Some(outcome);
    let cos = fetched.as_ref().map(|r| r.cosignatures).unwrap_or(0);
    Ok(Redirect::to(&format!("/audit?cosigned={cos}")).into_response())
}

/// A stored checkpoint: size (from the file name), root line, whole note.
struct StoredCheckpoint {
    size: u64,
    root: String,
    note: String,
}

/// The stored checkpoints, smallest first.
fn checkpoint_files(st: &Shared) -> Vec<StoredCheckpoint> {
    let Ok(rd) = std::fs::read_dir(st.audit_dir.join("checkpoints")) else { return Vec::new() };
    let mut out: Vec<StoredCheckpoint> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "note"))
        .filter_map(|e| {
            let size = e.path().file_stem()?.to_str()?.parse().ok()?;
            let note = std::fs::read_to_string(e.path()).ok()?;
            let root = note.lines().nth(2).unwrap_or("").to_owned();
            Some(StoredCheckpoint { size, root, note })
        })
        .collect();
    out.sort_by_key(|c| c.size);
    out
}

/// The log signature of a stored checkpoint as a cell.
fn signature_cell(note: &str, key: Option<&LogKey>) -> String {
    let s = strings();
    match key.map(|k| witness::log_signature(note, k)) {
        Some(Ok(())) => format!("<span class=\"ok\">{}</span>", esc(s.ok)),
        Some(Err(e)) => format!("<span class=\"bad\">{}: {}</span>", esc(s.not_verified), esc(&e)),
        None => esc(s.not_verified),
    }
}

/// The witnesses' cosignatures on a checkpoint as a list.
fn witness_list(st: &Shared, note: &str, id: Option<&str>) -> String {
    let s = strings();
    let origin = note.lines().next().unwrap_or("");
    let rows = witness::cosignatures(note, origin, &st.witnesses);
    if rows.is_empty() {
        return esc(s.none);
    }
    let id = id.map(|i| format!(" id=\"{i}\"")).unwrap_or_default();
    let mut out = format!("<ul class=\"plain\"{id}>");
    for r in rows {
        let w = esc(&r.witness);
        let _ = match r.status {
            Cosig::Verified(at) => write!(
                out,
                "<li class=\"ok\">{} {w} {}<span class=\"hint\"> {}</span></li>",
                esc(s.cosigned_by),
                esc(s.cosig_verified),
                esc(&time(at.saturating_mul(1000).min(i64::MAX as u64) as i64))
            ),
            Cosig::NotVerified(why) => {
                write!(out, "<li class=\"bad\">{w}: {} ({})</li>", esc(s.cosig_not_verified), esc(&why))
            }
            Cosig::Missing => write!(out, "<li class=\"bad\">{w}: {}</li>", esc(s.cosig_missing)),
        };
    }
    out.push_str("</ul>");
    out
}

fn matches(v: &Value, q: &HashMap<String, String>) -> bool {
    let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let want = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let day = get("time").get(..10).unwrap_or("");
    want("since").is_none_or(|s| day >= s)
        && want("until").is_none_or(|s| day <= s)
        && want("kind").is_none_or(|s| get("kind") == s)
        && want("sender").is_none_or(|s| get("sender").contains(s))
        && want("peer").is_none_or(|s| get("peer").contains(s))
        && want("msg_id").is_none_or(|s| get("msg_id").starts_with(&s.to_ascii_lowercase()))
}

/// `GET /audit`.
pub(crate) async fn view(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Page {
    let s = strings();
    let mut body = format!("<h1>{}</h1>", esc(s.audit));
    if st.audit_key.is_none() {
        body.push_str(&format!("<p class=\"bad\">{}</p>", esc(s.no_key)));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\"><button type=\"submit\" id=\"fetch\">{}</button></form>",
        action(&st, "/audit/refresh"),
        esc(s.fetch_verify)
    );
    let last = st.last_verify.lock().expect("verify state").clone();
    let verified_size = match &last {
        Some(Ok(r)) => {
            let previous =
                r.previous_size.map_or(s.first_verification.into(), |p| format!("{} {p}", s.extends_size));
            let cos = q.get("cosigned").cloned().unwrap_or_default();
            body.push_str(&fields(&[
                (
                    s.verification,
                    format!("<span class=\"ok\" id=\"verify-status\">{}</span>", esc(s.verified)),
                ),
                (s.log, esc(&r.origin)),
                (s.entries, r.size.to_string()),
                (s.root, format!("<code>{}</code>", esc(&r.root))),
                (s.checkpoints, format!("{} {}", r.checkpoints, s.signatures_checked)),
                (s.consistency, esc(&previous)),
                (s.cosignatures_supplied, esc(&cos)),
            ]));
            Some(r.size)
        }
        Some(Err(e)) => {
            body.push_str(&fields(&[(
                s.verification,
                format!(
                    "<span class=\"bad\" id=\"verify-status\" role=\"alert\">{}: {}</span>",
                    esc(s.not_verified),
                    esc(e)
                ),
            )]));
            None
        }
        None => None,
    };
    let cps = checkpoint_files(&st);
    if cps.is_empty() {
        body.push_str(&html::notice(s.no_log));
        return Ok(html::frame(Some(&st), s.audit, &body, None).into_response());
    }
    let log_key = st.audit_key.as_deref().and_then(|k| LogKey::parse(k).ok());
    // Consistency: the last verification recomputed the root at every stored
    // checkpoint up to the size it verified, so each of those is a prefix of
    // the verified log (and of the one accepted before).
    let consistency = |size: u64| match verified_size {
        Some(v) if size <= v => format!("<span class=\"ok\">{}</span>", esc(s.ok)),
        _ => esc(s.not_verified),
    };
    if let Some(latest) = cps.last() {
        let _ = write!(body, "<h2>{}</h2>", esc(s.latest_checkpoint));
        if st.witnesses.is_empty() {
            body.push_str(&html::notice(s.no_witness_keys));
        }
        body.push_str(&fields(&[
            (s.size, latest.size.to_string()),
            (s.log_signature, signature_cell(&latest.note, log_key.as_ref())),
            (s.consistency, consistency(latest.size)),
            (s.cosignatures, witness_list(&st, &latest.note, Some("witnesses"))),
            (s.required_witnesses, st.required_witnesses.to_string()),
        ]));
    }
    let rows: Vec<Vec<String>> = cps
        .iter()
        .rev()
        .map(|c| {
            vec![
                c.size.to_string(),
                format!("<code>{}</code>", esc(&c.root)),
                signature_cell(&c.note, log_key.as_ref()),
                consistency(c.size),
                witness_list(&st, &c.note, None),
            ]
        })
        .collect();
    let _ = write!(body, "<h2>{}</h2>", esc(s.checkpoints));
    let head = [s.size, s.root, s.log_signature, s.consistency, s.cosignatures];
    body.push_str(&table(s.checkpoints, &head, &rows));

    let stats = audit::stats(&st.audit_dir)?;
    let days: Vec<(String, u64)> = stats.per_day.iter().map(|(d, n)| (d.clone(), n.records)).collect();
    let _ = write!(body, "<h2>{}</h2><figure>{}</figure>", esc(s.per_day), svg::bars(s.per_day, &days));
    let day_rows: Vec<Vec<String>> = stats
        .per_day
        .iter()
        .map(|(d, n)| vec![esc(d), n.records.to_string(), n.messages.to_string(), n.refusals.to_string()])
        .collect();
    body.push_str(&table(s.per_day, &[s.day, s.records, s.messages, s.refusals], &day_rows));

    let mut buf = Vec::new();
    audit::export(&st.audit_dir, ExportFormat::Jsonl, &mut buf)?;
    let all: Vec<Value> = buf.split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice(l).ok()).collect();
    let shown: Vec<&Value> = all.iter().rev().filter(|v| matches(v, &q)).take(MAX_ROWS).collect();
    let _ = write!(body, "<h2>{}</h2>", esc(s.entries));
    body.push_str(&filter_form(&q));
    let _ = write!(
        body,
        "<p><a href=\"/audit/export?format=jsonl\">{}</a> &middot; <a href=\"/audit/export?format=csv\">{}</a></p>",
        esc(s.export_jsonl),
        esc(s.export_csv)
    );
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|v| {
            let g =
                |k: &str| v.get(k).map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()));
            let id = g("msg_id").unwrap_or_default();
            let recips = v
                .get("recipients")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
            vec![
                g("index").unwrap_or_default(),
                esc(&g("time").unwrap_or_default()),
                esc(&g("kind").unwrap_or_default()),
                format!("<a href=\"/audit/trace?msg_id={0}\"><code>{0}</code></a>", esc(&id)),
                esc(&g("sender").unwrap_or_default()),
                esc(&recips.unwrap_or_default()),
                esc(&g("peer").unwrap_or_default()),
                esc(&g("handling").unwrap_or_default()),
                g("hop").unwrap_or_default(),
                esc(&g("detail").unwrap_or_default()),
            ]
        })
        .collect();
    let caption = format!("{} ({} {} {})", s.entries, shown.len(), s.shown_of, all.len());
    let head = ["#", s.time, s.kind, s.msg_id, s.from, s.to, s.peer, s.handling, s.hop, s.detail];
    body.push_str(&table(&caption, &head, &rows));
    Ok(html::frame(Some(&st), s.audit, &body, None).into_response())
}

fn filter_form(q: &HashMap<String, String>) -> String {
    let s = strings();
    let v = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    let input = |id: &str, label: &str, kind: &str| {
        format!(
            "<div><label for=\"f-{id}\">{}</label><input type=\"{kind}\" id=\"f-{id}\" name=\"{id}\" value=\"{}\"></div>",
            esc(label),
            v(id)
        )
    };
    format!(
        "<form method=\"get\" action=\"/audit\" class=\"row\" aria-label=\"{}\">{}{}{}{}{}{}<div><button type=\"submit\">{}</button></div></form>",
        esc(s.filter),
        input("since", s.since, "date"),
        input("until", s.until, "date"),
        input("kind", s.kind, "text"),
        input("sender", s.from, "text"),
        input("peer", s.peer, "text"),
        input("msg_id", s.msg_id, "text"),
        esc(s.filter)
    )
}

/// `GET /audit/trace?msg_id=…`: the message's route through this log.
pub(crate) async fn trace(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Page {
    let s = strings();
    let raw = q.get("msg_id").map(String::as_str).unwrap_or("");
    let id = audit::parse_msg_id(raw)?;
    let events = audit::trace(std::slice::from_ref(&st.audit_dir), &id)?;
    let mut stops = Vec::new();
    if let Some(first) = events.iter().find(|e| !e.record.sender.is_empty()) {
        stops.push(Stop { place: first.record.sender.clone(), what: s.sender.into(), when: String::new() });
    }
    for e in &events {
        let r = &e.record;
        // Log origins are `focal/<network>/<relay>`.
        let network = e.log.split('/').nth(1).unwrap_or(&e.log).to_owned();
        let what = if r.peer.is_empty() {
            focal_proto::audit::kind_name(r.kind).to_owned()
        } else {
            format!("{} · {}", focal_proto::audit::kind_name(r.kind), r.peer)
        };
        stops.push(Stop { place: format!("{network} (hop {})", r.hop), what, when: time(r.time_ms) });
    }
    if let Some(last) = events.iter().rev().find(|e| !e.record.recipients.is_empty()) {
        stops.push(Stop {
            place: last.record.recipients.join(", "),
            what: s.recipients.into(),
            when: String::new(),
        });
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let r = &e.record;
            vec![
                esc(&time(r.time_ms)),
                esc(&e.log),
                e.index.to_string(),
                esc(focal_proto::audit::kind_name(r.kind)),
                r.hop.to_string(),
                esc(&r.peer),
                esc(&r.detail),
            ]
        })
        .collect();
    let title = format!("{} {raw}", s.trace);
    let body = format!(
        "<h1>{}</h1><p><a href=\"/audit?msg_id={}\">{}</a></p><figure id=\"route\">{}</figure>{}",
        esc(&title),
        url(raw),
        esc(s.entries),
        svg::route(&title, &stops),
        table(&title, &[s.time, s.log, "#", s.kind, s.hop, s.peer, s.detail], &rows)
    );
    Ok(html::frame(Some(&st), s.trace, &body, None).into_response())
}

/// `GET /audit/export?format=jsonl|csv`.
pub(crate) async fn export(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Page {
    let (format, ext, mime) = match q.get("format").map(String::as_str) {
        Some("csv") => (ExportFormat::Csv, "csv", "text/csv; charset=utf-8"),
        _ => (ExportFormat::Jsonl, "jsonl", "application/x-ndjson"),
    };
    let mut buf = Vec::new();
    audit::export(&st.audit_dir, format, &mut buf)?;
    let disposition = format!("attachment; filename=\"audit-log.{ext}\"");
    Ok(([(header::CONTENT_TYPE, mime.to_owned()), (header::CONTENT_DISPOSITION, disposition)], buf)
        .into_response())
}
