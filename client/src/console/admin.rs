//! Secretariat view (certificate role `admin`): the relay's status from the
//! `focal.v1.Admin` service, the same RPCs as `focal admin status` and
//! `focal admin retry-peer|pause-peer|resume-peer`. The federation is drawn
//! as seen from this relay (its links, their states, queue depths and
//! oldest ages), beside the same facts in a table; the page updates itself
//! when a link's state or queue depth changes ([`super::live`]), or every
//! 10 seconds with a meta refresh in a browser without script. Members come
//! from the network's directory, each entry verified, with its expiry.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use focal_proto::pb::{self, admin_client::AdminClient};

use super::html::{self, action, age, esc, table, time, url};
use super::strings::strings;
use super::svg::{self, Link};
use super::{Failure, Page, Shared};
use crate::error::ClientError;

fn rpc(op: &'static str) -> impl FnOnce(tonic::Status) -> Failure {
    move |s| Failure::from(ClientError::rpc(op, s))
}

/// `GET /admin`.
pub(crate) async fn view(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Page {
    let s = strings();
    let mut admin = AdminClient::new(st.client.channel());
    let status = admin.status(pb::StatusRequest {}).await.map_err(rpc("admin status"))?.into_inner();
    let links: Vec<Link<'_>> = status
        .peers
        .iter()
        .map(|p| Link {
            name: &p.name,
            networks: p.networks.join(", "),
            state: &p.state,
            depth: p.queue_depth,
            oldest: if p.queue_depth == 0 { "-".into() } else { age(p.oldest_age_ms) },
        })
        .collect();
    let centre = format!("{} ({})", status.network, status.networks_served.join(", "));
    let picture = svg::federation(s.links, &centre, &links);
    let rows: Vec<Vec<String>> = status
        .peers
        .iter()
        .map(|p| {
            let buttons: String = [("retry", s.retry_now), ("pause", s.pause), ("resume", s.resume)]
                .iter()
                .map(|(a, label)| {
                    format!(
                        "<form class=\"inline\" method=\"post\" action=\"{}\"><button type=\"submit\" \
                         aria-label=\"{} {}\">{}</button></form> ",
                        action(&st, &format!("/admin/peer/{}/{a}", url(&p.name))),
                        esc(label),
                        esc(&p.name),
                        esc(label)
                    )
                })
                .collect();
            vec![
                esc(&p.name),
                esc(&p.networks.join(", ")),
                format!("<span class=\"state-{0}\">{0}</span>", esc(&p.state)),
                p.queue_depth.to_string(),
                if p.queue_depth == 0 { "-".into() } else { esc(&age(p.oldest_age_ms)) },
                p.retries.to_string(),
                buttons,
            ]
        })
        .collect();
    let mut body = format!("<h1>{}</h1>", esc(s.federation));
    if let Some(done) = q.get("done") {
        body.push_str(&html::notice(done));
    }
    body.push_str(&html::fields(&[
        (s.relay, esc(&status.relay)),
        (s.networks, esc(&status.networks_served.join(", "))),
        (s.uptime, esc(&age(status.uptime_ms))),
        (s.mailboxes, status.mailbox_messages.to_string()),
        (s.audit_log_size, status.audit_log_size.to_string()),
    ]));
    body.push_str(&format!(
        "<h2>{}</h2><figure>{picture}<figcaption>{}</figcaption></figure>",
        esc(s.links),
        esc(s.refreshes)
    ));
    let head = [s.peer, s.networks, s.state, s.queue_depth, s.oldest, s.retries, s.actions];
    body.push_str(&table(s.links, &head, &rows));
    body.push_str(&format!("<h2>{}</h2>", esc(s.members)));
    body.push_str(&members(&st).await);
    let certs: Vec<Vec<String>> =
        status.certificates.iter().map(|c| vec![esc(&c.what), esc(&time(c.not_after_ms))]).collect();
    body.push_str(&format!("<h2>{}</h2>", esc(s.certificates)));
    body.push_str(&table(s.certificates, &[s.name, s.valid_until], &certs));
    Ok(html::frame(Some(&st), s.federation, &body, Some(10)).into_response())
}

/// The network's members with verified directory entries (or why not).
async fn members(st: &Shared) -> String {
    let s = strings();
    let network = st.client.address().network().to_string();
    let req = pb::ListMembersRequest { network: network.clone() };
    let entries = match st.client.directory().list_members(req).await {
        Ok(r) => r.into_inner().entries,
        Err(e) => {
            let e = ClientError::rpc(format!("directory list of {network}"), e);
            return format!("<p class=\"bad\">{}</p>", esc(&e.to_string()));
        }
    };
    let trust = st.client.trust().current();
    let mut rows: Vec<(String, Vec<String>)> = entries
        .iter()
        .map(|e| match focal_certs::verify_directory_entry(&trust, e, SystemTime::now()) {
            Ok(v) => (
                v.address.to_string(),
                vec![
                    esc(&v.address.to_string()),
                    esc(&v.body.display_name),
                    esc(if v.body.law_enforcement { s.yes } else { s.no }),
                    esc(&time(v.body.not_after_ms)),
                ],
            ),
            Err(err) => (
                String::new(),
                vec![
                    format!("<span class=\"bad\">{}</span>", esc(&err.to_string())),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            ),
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.1).collect();
    table(s.members, &[s.address, s.name, s.law_enforcement, s.valid_until], &rows)
}

/// `POST /admin/peer/{peer}/{retry|pause|resume}`.
pub(crate) async fn peer_action(State(st): State<Shared>, Path((peer, act)): Path<(String, String)>) -> Page {
    let mut admin = AdminClient::new(st.client.channel());
    let req = pb::PeerRequest { peer };
    let ack = match act.as_str() {
        "retry" => admin.retry_peer(req).await.map_err(rpc("admin retry-peer"))?,
        "pause" => admin.pause_peer(req).await.map_err(rpc("admin pause-peer"))?,
        "resume" => admin.resume_peer(req).await.map_err(rpc("admin resume-peer"))?,
        _ => return Err(Failure(StatusCode::NOT_FOUND, format!("unknown peer action {act:?}"))),
    }
    .into_inner();
    Ok(Redirect::to(&format!("/admin?done={}", url(&format!("{act}: {}", ack.detail)))).into_response())
}
