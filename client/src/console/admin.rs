//! Secretariat view (certificate role `admin`): the relay's status from the
//! `focal.v1.Admin` service, the same RPCs as `focal admin status` and
//! `focal admin retry-peer|pause-peer|resume-peer`. The federation is drawn
//! whole: every network of the trust bundle, this relay's own links and
//! the links its peers report (`StatusResponse.remote_reports`: a spoke
//! learns the other spokes' links from the hub's report), each with state,
//! queue depth and oldest age, reported ones with "as reported by GFP, 3 s
//! ago"; a link known only from a stale report is drawn as `unknown`, not
//! as down. The same facts are in tables; the page updates itself when a
//! link's state or queue depth changes ([`super::live`]), or every 10
//! seconds with a meta refresh in a browser without script. Members come
//! from the network's directory, each entry verified, with its expiry.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use focal_proto::pb::{self, admin_client::AdminClient};

use super::html::{self, action, age, esc, table, time, url};
use super::strings::strings;
use super::svg::{self, Edge};
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
    let bundle: Vec<String> =
        st.client.trust().current().bundle().networks.keys().map(|n| n.to_string()).collect();
    let view = FedView::of(&status, bundle, s.reported_by, s.ago);
    let picture = svg::federation(s.links, &status.network, &view.networks, &view.picture);
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
    let remote: Vec<Vec<String>> = view
        .reported
        .iter()
        .map(|e| {
            vec![
                esc(&e.from.to_uppercase()),
                esc(&e.to.to_uppercase()),
                format!("<span class=\"state-{0}\">{0}</span>", esc(&e.state)),
                e.depth.to_string(),
                esc(&e.oldest),
                esc(&e.source),
            ]
        })
        .collect();
    let head = [s.from, s.to, s.state, s.queue_depth, s.oldest, s.source];
    body.push_str(&table(s.reported_links, &head, &remote));
    body.push_str(&format!("<h2>{}</h2>", esc(s.members)));
    body.push_str(&members(&st).await);
    let certs: Vec<Vec<String>> =
        status.certificates.iter().map(|c| vec![esc(&c.what), esc(&time(c.not_after_ms))]).collect();
    body.push_str(&format!("<h2>{}</h2>", esc(s.certificates)));
    body.push_str(&table(s.certificates, &[s.name, s.valid_until], &certs));
    Ok(html::frame(Some(&st), s.federation, &body, Some(10)).into_response())
}

/// What the federation picture and the reported-links table show.
#[derive(Debug, PartialEq)]
struct FedView {
    /// Every known network: this relay's first, then the trust bundle's
    /// and any a report names, sorted.
    networks: Vec<String>,
    /// One edge per pair of networks: this relay's own link if it has one,
    /// else the freshest report of it; a link known only from stale
    /// reports is drawn with state `unknown`.
    picture: Vec<Edge>,
    /// Every link peers reported (one row per reporter and direction).
    reported: Vec<Edge>,
}

impl FedView {
    fn of(status: &pb::StatusResponse, bundle: Vec<String>, reported_by: &str, ago: &str) -> FedView {
        let own = status.network.clone();
        let no_age = |depth: u64, ms: i64| if depth == 0 { "-".to_owned() } else { age(ms) };
        let mine = status.peers.iter().map(|p| Edge {
            from: own.clone(),
            to: p.networks.first().cloned().unwrap_or_else(|| p.name.clone()),
            state: p.state.clone(),
            depth: p.queue_depth,
            oldest: no_age(p.queue_depth, p.oldest_age_ms),
            source: String::new(),
        });
        let mut reports: Vec<&pb::RemoteLinkReport> = status.remote_reports.iter().collect();
        reports.sort_by_key(|r| (r.stale, r.age_ms));
        let reported: Vec<(i64, Edge)> = reports
            .iter()
            .flat_map(|r| {
                let source = format!("{reported_by} {}, {} {ago}", r.network.to_uppercase(), age(r.age_ms));
                r.links.iter().map(move |l| {
                    let edge = Edge {
                        from: r.network.clone(),
                        to: l.peer_network.clone(),
                        state: if r.stale { "unknown".to_owned() } else { l.state.clone() },
                        depth: l.queue_depth,
                        oldest: no_age(l.queue_depth, l.oldest_age_ms),
                        source: source.clone(),
                    };
                    (r.age_ms, edge)
                })
            })
            .collect();
        let mut picture: Vec<Edge> = Vec::new();
        let pair = |e: &Edge| {
            if e.from < e.to { (e.from.clone(), e.to.clone()) } else { (e.to.clone(), e.from.clone()) }
        };
        for e in mine.chain(reported.iter().map(|(_, e)| e.clone())) {
            if !picture.iter().any(|p| pair(p) == pair(&e)) {
                picture.push(e);
            }
        }
        let mut networks: Vec<String> = bundle;
        networks.extend(picture.iter().flat_map(|e| [e.from.clone(), e.to.clone()]));
        networks.retain(|n| n != &own);
        networks.sort();
        networks.dedup();
        networks.insert(0, own);
        FedView { networks, picture, reported: reported.into_iter().map(|(_, e)| e).collect() }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn link(net: &str, state: &str, depth: u64) -> pb::LinkState {
        pb::LinkState {
            peer_network: net.into(),
            peer_relay: format!("relay.{net}"),
            state: state.into(),
            queue_depth: depth,
            oldest_age_ms: 65_000,
        }
    }

    fn report(net: &str, age_ms: i64, stale: bool, links: Vec<pb::LinkState>) -> pb::RemoteLinkReport {
        pb::RemoteLinkReport {
            network: net.into(),
            relay: format!("relay.{net}"),
            reported_at_ms: 1,
            age_ms,
            stale,
            links,
        }
    }

    fn status(reports: Vec<pb::RemoteLinkReport>) -> pb::StatusResponse {
        pb::StatusResponse {
            network: "carin".into(),
            peers: vec![pb::PeerStatus {
                name: "relay.gfp".into(),
                networks: vec!["gfp".into()],
                state: "connected".into(),
                ..Default::default()
            }],
            remote_reports: reports,
            ..Default::default()
        }
    }

    fn bundle() -> Vec<String> {
        ["arinsa", "carin", "gfp", "rrag"].map(String::from).to_vec()
    }

    #[test]
    fn own_links_win_and_reported_links_name_their_source() {
        let st = status(vec![report(
            "gfp",
            3_000,
            false,
            vec![link("carin", "connected", 0), link("arinsa", "backoff", 2)],
        )]);
        let v = FedView::of(&st, bundle(), "as reported by", "ago");
        assert_eq!(v.networks, ["carin", "arinsa", "gfp", "rrag"], "own first, every bundle network");
        assert_eq!(v.picture.len(), 2, "carin-gfp once (own), gfp-arinsa: {:?}", v.picture);
        assert_eq!((v.picture[0].from.as_str(), v.picture[0].source.as_str()), ("carin", ""));
        let ga = &v.picture[1];
        assert_eq!((ga.from.as_str(), ga.to.as_str(), ga.state.as_str()), ("gfp", "arinsa", "backoff"));
        assert_eq!(ga.source, "as reported by GFP, 3 s ago");
        assert_eq!((ga.depth, ga.oldest.as_str()), (2, "1 min 5 s"));
        assert_eq!(v.reported.len(), 2, "every reported direction is listed");
    }

    #[test]
    fn a_stale_report_makes_its_links_unknown_not_down() {
        let st = status(vec![report("gfp", 45_000, true, vec![link("arinsa", "connected", 0)])]);
        let v = FedView::of(&st, bundle(), "as reported by", "ago");
        let ga = v.picture.iter().find(|e| e.to == "arinsa").unwrap();
        assert_eq!(ga.state, "unknown");
        assert_eq!(ga.oldest, "-");
        assert_eq!(ga.source, "as reported by GFP, 45 s ago");
    }

    #[test]
    fn the_freshest_report_of_a_link_is_drawn() {
        let st = status(vec![
            report("gfp", 40_000, true, vec![link("arinsa", "connected", 0)]),
            report("arinsa", 2_000, false, vec![link("gfp", "backoff", 1)]),
        ]);
        let v = FedView::of(&st, Vec::new(), "as reported by", "ago");
        let ga: Vec<&Edge> = v.picture.iter().filter(|e| e.from != "carin").collect();
        assert_eq!(ga.len(), 1, "{ga:?}");
        assert_eq!((ga[0].from.as_str(), ga[0].state.as_str()), ("arinsa", "backoff"));
        assert_eq!(
            v.networks,
            ["carin", "arinsa", "gfp"],
            "networks named by reports appear without a bundle"
        );
    }
}
