//! One message: opened with [`Client::read`](crate::Client::read) (fetched,
//! every signature and digest verified, decrypted here), its attachments
//! saved into the console's temporary directory and served for download
//! with their SHA-256 shown; acknowledge ([`Client::ack_ref`](crate::Client::ack_ref))
//! and reply ([`crate::case::reply_draft`] then [`Client::send`](crate::Client::send)).

use std::sync::Arc;

use axum::Form;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use focal_proto::Address;
use serde::Deserialize;

use super::html::{self, action, esc, fields, table, time, url};
use super::inbox::case_link;
use super::strings::strings;
use super::{Failure, Page, Shared};
use crate::client::MessageRef;
use crate::progress::NoProgress;
use crate::read::{OpenedMessage, ReadOptions};
use crate::util::{handling_name, msg_id_hex, priority_name};

fn parse_ref(sender: &str, id: &str) -> Result<MessageRef, Failure> {
    let sender =
        Address::parse_member(sender).map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))?;
    let msg_id = crate::util::parse_msg_id(id)?;
    Ok(MessageRef { msg_id, sender })
}

/// Opens the message, saving its attachments under the console's work dir.
async fn open(st: &Shared, r: &MessageRef) -> Result<OpenedMessage, crate::ClientError> {
    let id = msg_id_hex(&r.msg_id);
    let dir = st.work.path().join(format!("{id}-{}", r.sender));
    let opts = ReadOptions { out_dir: Some(dir), overwrite: true };
    let opened = st.client.read(r, &opts, Arc::new(NoProgress)).await?;
    st.opened.lock().expect("opened map").insert((r.sender.to_string(), id), opened.attachments.clone());
    Ok(opened)
}

/// `GET /message/{sender}/{id}`.
pub(crate) async fn view(State(st): State<Shared>, Path((sender, id)): Path<(String, String)>) -> Page {
    let s = strings();
    let r = parse_ref(&sender, &id)?;
    let opened = match open(&st, &r).await {
        Ok(o) => o,
        Err(e) => {
            let body = format!(
                "<h1>{}</h1>{}<p class=\"bad\" role=\"alert\">{}</p>",
                esc(s.open_failed),
                fields(&[(s.from, esc(&sender)), (s.msg_id, esc(&id))]),
                esc(&e.to_string())
            );
            return Ok(
                (StatusCode::BAD_GATEWAY, html::frame(Some(&st), s.open_failed, &body, None)).into_response()
            );
        }
    };
    let c = &opened.content;
    let info = &opened.info;
    let base = format!("/message/{}/{}", url(&sender), url(&id));
    let mut items = vec![
        (s.from, esc(&info.sender.to_string())),
        (s.to, esc(&info.recipients.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))),
        (s.kind, esc(crate::case::kind_label(c.kind()))),
        (s.case_ref, case_link(&c.case_ref)),
        (s.priority, esc(priority_name(info.priority))),
        (
            s.handling,
            esc(&crate::cli::casework::handling_note(info.handling, &c.handling_restrictions)
                .unwrap_or_else(|| handling_name(info.handling).to_owned())),
        ),
        (s.created, esc(&time(info.created_at_ms))),
        (s.deadline, esc(&time(c.response_deadline_ms))),
        (s.msg_id, format!("<code>{}</code>", esc(&id))),
        (s.signature, format!("<span class=\"ok\">{}</span>", esc(s.signature_ok))),
    ];
    if !c.reply_to_msg_id.is_empty() {
        items.push((s.in_reply_to, format!("<code>{}</code>", esc(&hex::encode(&c.reply_to_msg_id)))));
    }
    if let Some(q) = &c.request {
        items.push((s.authority, esc(&q.requesting_authority)));
        items.push((s.legal_basis, esc(&q.legal_basis)));
        let subjects: Vec<String> = q
            .subjects
            .iter()
            .map(|x| {
                if x.identifiers.is_empty() {
                    x.name.clone()
                } else {
                    format!("{} ({})", x.name, x.identifiers.join(", "))
                }
            })
            .collect();
        items.push((s.subjects_of_request, esc(&subjects.join("; "))));
        items.push((s.assets, esc(&q.assets_sought.join("; "))));
        items.push((s.jurisdictions, esc(&q.jurisdictions.join(", "))));
    }
    let rows: Vec<Vec<String>> = opened
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            vec![
                format!("<a href=\"{base}/attachment/{i}\" download>{}</a>", esc(&a.name)),
                a.size.to_string(),
                esc(&a.media_type),
                format!("<code class=\"sha256\">{}</code>", esc(&a.sha256)),
            ]
        })
        .collect();
    let body = format!(
        "<h1>{subject}</h1>{fields}<h2>{body_h}</h2><pre class=\"body\">{text}</pre><h2>{att_h}</h2>{att}\
         <form method=\"post\" action=\"{ack}\"><button type=\"submit\" id=\"ack\">{ack_l}</button></form>\
         <h2 id=\"reply-h\">{reply}</h2><form class=\"stack\" method=\"post\" action=\"{reply_a}\" aria-labelledby=\"reply-h\">\
         <div><label for=\"reply-body\">{body_h}</label><textarea id=\"reply-body\" name=\"body\" required></textarea></div>\
         <div><button type=\"submit\" id=\"reply-send\">{send}</button></div></form>",
        subject = esc(&c.subject),
        fields = fields(&items),
        body_h = esc(s.body),
        text = esc(&c.body),
        att_h = esc(s.attachments),
        att = table(s.attachments, &[s.name, s.size, s.media_type, s.sha256], &rows),
        ack = action(&st, &format!("{base}/ack")),
        ack_l = esc(s.acknowledge),
        reply = esc(s.reply),
        reply_a = action(&st, &format!("{base}/reply")),
        send = esc(s.send),
    );
    Ok(html::frame(Some(&st), &c.subject, &body, None).into_response())
}

/// `GET /message/{sender}/{id}/attachment/{n}`: the decrypted, verified file.
pub(crate) async fn attachment(
    State(st): State<Shared>,
    Path((sender, id, n)): Path<(String, String, usize)>,
) -> Page {
    let r = parse_ref(&sender, &id)?;
    let key = (r.sender.to_string(), msg_id_hex(&r.msg_id));
    let known = st.opened.lock().expect("opened map").get(&key).cloned();
    let list = match known {
        Some(l) => l,
        None => open(&st, &r).await?.attachments,
    };
    let a = list.get(n).ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no attachment {n}")))?;
    let path = a.path.clone().ok_or_else(|| Failure(StatusCode::NOT_FOUND, "attachment not saved".into()))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Failure(StatusCode::NOT_FOUND, format!("{}: {e}", path.display())))?;
    let stream = futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(k) => {
                buf.truncate(k);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let name = crate::save::safe_file_name(&a.name, n);
    let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\'], "_"));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, a.size)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("x-focal-sha256", a.sha256.as_str())
        .body(Body::from_stream(stream))
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `POST /message/{sender}/{id}/ack`.
pub(crate) async fn ack(State(st): State<Shared>, Path((sender, id)): Path<(String, String)>) -> Page {
    let r = parse_ref(&sender, &id)?;
    st.client.ack_ref(&r).await?;
    Ok(Redirect::to("/inbox").into_response())
}

/// The reply form.
#[derive(Debug, Deserialize)]
pub(crate) struct ReplyForm {
    body: String,
}

/// `POST /message/{sender}/{id}/reply`.
pub(crate) async fn reply(
    State(st): State<Shared>,
    Path((sender, id)): Path<(String, String)>,
    Form(f): Form<ReplyForm>,
) -> Page {
    let r = parse_ref(&sender, &id)?;
    let draft = crate::case::reply_draft(st.client.store(), st.client.address(), r, false, f.body)?;
    let accepted = st.client.send(&draft, Arc::new(NoProgress)).await?;
    Ok(Redirect::to(&format!("/sent?accepted={}", msg_id_hex(&accepted.msg_id))).into_response())
}
