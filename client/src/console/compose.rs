//! Compose: recipients picked from the federation directory
//! ([`Client::list_members`](crate::Client::list_members) for each network
//! of the trust bundle) or typed, kind, case reference, handling code,
//! priority, lifetime, the request fields of request kinds, and attachments
//! (a multipart upload streamed to the console's temporary directory). The
//! draft is built with the CLI's own parsers and sent with
//! [`Client::send`](crate::Client::send). With script, the page shows the
//! upload's progress, then the sealing and the send to the relay
//! ([`super::upload`]); without, it is a plain form post.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use focal_proto::{Address, pb};
use tokio::io::AsyncWriteExt;

use super::html::{self, action, esc};
use super::strings::strings;
use super::{Failure, Page, Shared};
use crate::cli::args::RequestArgs;
use crate::progress::{NoProgress, Progress};
use crate::send::Draft;
use crate::util::msg_id_hex;

const KINDS: [&str; 6] = ["general", "asset-tracing", "freezing", "disclosure", "pre-mla", "coordination"];

fn text(id: &str, label: &str, value: &str, hint: Option<&str>) -> String {
    let hint_html =
        hint.map(|h| format!("<p class=\"hint\" id=\"{id}-hint\">{}</p>", esc(h))).unwrap_or_default();
    let described = if hint.is_some() { format!(" aria-describedby=\"{id}-hint\"") } else { String::new() };
    format!(
        "<div><label for=\"{id}\">{}</label>{hint_html}<input type=\"text\" id=\"{id}\" name=\"{id}\" value=\"{}\"{described}></div>",
        esc(label),
        esc(value)
    )
}

fn area(id: &str, label: &str, hint: Option<&str>) -> String {
    let hint_html = hint.map(|h| format!("<p class=\"hint\">{}</p>", esc(h))).unwrap_or_default();
    format!(
        "<div><label for=\"{id}\">{}</label>{hint_html}<textarea id=\"{id}\" name=\"{id}\"></textarea></div>",
        esc(label)
    )
}

fn select(id: &str, label: &str, options: &[(&str, &str)], selected: &str) -> String {
    let mut s = format!("<div><label for=\"{id}\">{}</label><select id=\"{id}\" name=\"{id}\">", esc(label));
    for (v, l) in options {
        let sel = if *v == selected { " selected" } else { "" };
        let _ = write!(s, "<option value=\"{}\"{sel}>{}</option>", esc(v), esc(l));
    }
    s.push_str("</select></div>");
    s
}

/// `GET /compose`.
pub(crate) async fn form(State(st): State<Shared>) -> Page {
    let s = strings();
    let networks: Vec<_> = st.client.trust().current().bundle().networks.keys().cloned().collect();
    let mut options = String::new();
    for net in &networks {
        // A network whose directory cannot be listed is skipped: its members
        // can still be typed in the field below.
        let Ok(members) = st.client.list_members(net).await else { continue };
        for (a, _) in members {
            let _ = write!(options, "<option value=\"{0}\">{0}</option>", esc(&a.to_string()));
        }
    }
    let kinds: Vec<(&str, &str)> = KINDS
        .iter()
        .map(|k| (*k, crate::case::kind_label(crate::case::parse_kind(k).expect("known"))))
        .collect();
    let handling = [("H0", "H0"), ("H1", "H1"), ("H2", "H2"), ("H3", "H3")];
    let body = format!(
        "<h1>{title}</h1><form id=\"compose\" class=\"stack\" method=\"post\" enctype=\"multipart/form-data\" action=\"{act}\">\
         <input type=\"hidden\" name=\"progress\" value=\"{token}\">\
         <div><label for=\"to\">{dir}</label><select id=\"to\" name=\"to\" multiple size=\"8\">{options}</select></div>\
         {other}{subject}{kind}{case}{handling}\
         <div><input type=\"checkbox\" id=\"urgent\" name=\"urgent\" value=\"1\"> <label for=\"urgent\">{urgent}</label></div>\
         {restr}{expires}\
         <fieldset><legend>{req}</legend><p class=\"hint\">{req_hint}</p>{auth}{legal}{subjects}{assets}{juris}\
         <div><label for=\"deadline\">{deadline}</label><input type=\"date\" id=\"deadline\" name=\"deadline\"></div></fieldset>\
         <div><label for=\"body\">{body_l}</label><textarea id=\"body\" name=\"body\" required></textarea></div>\
         <div><label for=\"attachment\">{att}</label><input type=\"file\" id=\"attachment\" name=\"attachment\" multiple></div>\
         <div><button type=\"submit\" id=\"send\">{send}</button></div>\
         <div id=\"progress-box\" hidden data-uploading=\"{uploading}\" data-sealing=\"{sealing}\" \
         data-sending=\"{sending}\" data-storing=\"{storing}\" data-failed=\"{failed}\"><label for=\"progress-bar\">{progress}</label>\
         <progress id=\"progress-bar\" max=\"100\" value=\"0\"></progress>\
         <p id=\"progress-text\" role=\"status\" aria-live=\"polite\"></p></div></form>\
         <script src=\"/static/compose.js\" defer></script>",
        title = esc(s.compose),
        act = action(&st, "/compose"),
        dir = esc(s.recipients_directory),
        other = text("to_other", s.recipients_other, "", Some(s.recipients_other_hint)),
        subject = text("subject", s.subject, "", None),
        kind = select("kind", s.kind, &kinds, "general"),
        case = text("case_ref", s.case_ref, "", None),
        handling = select("handling", s.handling, &handling, "H1"),
        urgent = esc(s.urgent),
        restr = text("restrictions", s.restrictions, "", None),
        expires = text("expires_in", s.expires_in, "7d", None),
        req = esc(s.request_fields),
        req_hint = esc(s.request_fields_hint),
        auth = text("authority", s.authority, "", None),
        legal = text("legal_basis", s.legal_basis, "", None),
        subjects = area("subjects", s.subjects_of_request, Some(s.subjects_hint)),
        assets = area("assets", s.assets, Some(s.one_per_line)),
        juris = area("jurisdictions", s.jurisdictions, Some(s.one_per_line)),
        deadline = esc(s.deadline),
        body_l = esc(s.body),
        att = esc(s.attachments),
        send = esc(s.send),
        token = super::security::random_token()?,
        uploading = esc(s.uploading_to_console),
        sealing = esc(s.sealing),
        sending = esc(s.sending_to_relay),
        storing = esc(s.relay_storing),
        failed = esc(s.upload_failed),
        progress = esc(s.progress),
    );
    Ok(html::frame(Some(&st), s.compose, &body, None).into_response())
}

fn bad(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::BAD_REQUEST, e.to_string())
}

fn lines(v: Option<&Vec<String>>) -> Vec<String> {
    v.into_iter()
        .flatten()
        .flat_map(|s| s.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// `POST /compose` (multipart).
pub(crate) async fn submit(State(st): State<Shared>, mut mp: Multipart) -> Page {
    let upload = tempfile::Builder::new().prefix("upload-").tempdir_in(st.work.path()).map_err(bad)?;
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut tracker = None;
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        match field.file_name().map(str::to_owned) {
            Some(file_name) if name == "attachment" => {
                if file_name.is_empty() {
                    continue;
                }
                let dir = upload.path().join(files.len().to_string());
                std::fs::create_dir(&dir).map_err(bad)?;
                let path = dir.join(crate::save::safe_file_name(&file_name, files.len()));
                let mut f = tokio::fs::File::create(&path).await.map_err(bad)?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    f.write_all(&chunk).await.map_err(bad)?;
                }
                f.flush().await.map_err(bad)?;
                files.push(path);
            }
            _ if name == "progress" => {
                tracker = st.uploads.register(field.text().await.map_err(bad)?.trim());
            }
            _ => {
                let value = field.text().await.map_err(bad)?;
                fields.entry(name).or_default().push(value);
            }
        }
    }
    let one =
        |k: &str| fields.get(k).and_then(|v| v.first()).map(|s| s.trim().to_owned()).unwrap_or_default();
    let mut to = Vec::new();
    for a in fields.get("to").into_iter().flatten() {
        to.push(Address::parse(a.trim())?);
    }
    for a in one("to_other").split(',').map(str::trim).filter(|a| !a.is_empty()) {
        to.push(Address::parse(a)?);
    }
    if to.is_empty() {
        return Err(bad("no recipient: pick one from the directory or type an address"));
    }
    let mut draft = Draft::new(
        to,
        one("subject"),
        fields.get("body").and_then(|v| v.first()).cloned().unwrap_or_default(),
    );
    let or = |v: String, default: &str| if v.is_empty() { default.to_owned() } else { v };
    draft.kind = crate::case::parse_kind(&or(one("kind"), "general"))?;
    draft.case_ref = one("case_ref");
    draft.handling = crate::util::parse_handling(&or(one("handling"), "H1"))?;
    draft.handling_restrictions = one("restrictions");
    if one("urgent") == "1" {
        draft.priority = pb::Priority::Urgent;
    }
    let expires = one("expires_in");
    if !expires.is_empty() {
        draft.expires_in = crate::util::parse_duration(&expires)?;
    }
    let deadline = one("deadline");
    let req = RequestArgs {
        authority: one("authority"),
        legal_basis: one("legal_basis"),
        subjects: lines(fields.get("subjects"))
            .iter()
            .map(|l| crate::case::parse_subject_of(l))
            .collect::<crate::Result<_>>()?,
        assets: lines(fields.get("assets")),
        jurisdictions: lines(fields.get("jurisdictions")),
        deadline: if deadline.is_empty() { None } else { Some(crate::case::parse_deadline(&deadline)?) },
        respond_within: None,
    };
    (draft.request, draft.response_deadline_ms) = crate::cli::casework::request_fields(&req);
    draft.attachments = files;
    let progress: Arc<dyn Progress> = match &tracker {
        Some(t) => t.clone(),
        None => Arc::new(NoProgress),
    };
    let result = st.client.send(&draft, progress).await;
    if let Some(t) = &tracker {
        t.complete(result.is_ok());
    }
    drop(upload);
    let accepted = result?;
    Ok(Redirect::to(&format!("/sent?accepted={}", msg_id_hex(&accepted.msg_id))).into_response())
}
