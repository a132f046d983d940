//! `focal admin …`: a network secretariat's commands against its own relay
//! (`focal.v1.Admin`). The profile's certificate must be an `admin` of the
//! relay's network; the relay refuses anyone else.
//!
//! Output is one line per fact, or one JSON object per line with `--json`.

use clap::Subcommand;
use focal_proto::pb::{self, admin_client::AdminClient};
use serde_json::json;
use tonic::transport::Channel;

use super::term::say;
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::util::fmt_time_ms;

/// `focal admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Version, uptime, peers with queue depths, store size, certificates,
    /// and the links between other relays as linked peers report them.
    Status,
    /// Queued messages by clear header only (never content).
    Queue {
        /// `mailbox:<address>`, `peer:<name>`, or empty for every queue.
        #[arg(long, default_value = "", conflicts_with = "peer")]
        queue: String,
        /// Only the outbox of this configured peer (same as `--queue peer:<name>`).
        #[arg(long)]
        peer: Option<String>,
        /// At most this many items (relay default 100, at most 10000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Remove a queue item (audited): an EXPIRED mailbox item by sender and
    /// msg id, or a peer outbox item by `--peer P --seq N` (expired, or any
    /// with `--force`).
    Purge {
        /// `mailbox:<address>` or `peer:<name>`.
        #[arg(long, required_unless_present = "peer", conflicts_with = "peer")]
        queue: Option<String>,
        /// A configured peer: purge from its outbox (same as `--queue peer:<name>`).
        #[arg(long)]
        peer: Option<String>,
        /// The outbox item's number (`seq` in `focal admin queue --peer P`).
        #[arg(long, default_value_t = 0)]
        seq: u64,
        /// The message's sender address (required for a mailbox item).
        #[arg(long, default_value = "")]
        sender: String,
        /// Message id (32 hex characters; required for a mailbox item).
        #[arg(long, default_value = "")]
        msg_id: String,
        /// Purge a peer outbox item even though it has not expired (audited as forced).
        #[arg(long)]
        force: bool,
    },
    /// Reload the relay's certificate, key, trust bundle and CRLs (like SIGHUP).
    Reload,
    /// Retry a peer link now, skipping its backoff.
    RetryPeer {
        /// Configured peer name.
        peer: String,
    },
    /// Stop sending to a peer until resumed.
    PausePeer {
        /// Configured peer name.
        peer: String,
    },
    /// Resume sending to a paused peer.
    ResumePeer {
        /// Configured peer name.
        peer: String,
    },
    /// Make this relay's witness forget the key and head it pinned for a
    /// peer's audit log (after that relay started a new log; audited).
    WitnessForget {
        /// The log's origin, e.g. focal/carin/relay-carin.
        origin: String,
    },
}

fn rpc(op: &str) -> impl FnOnce(tonic::Status) -> ClientError + '_ {
    move |s| ClientError::rpc(op, s)
}

/// Runs an admin command over `client`'s connection.
pub(super) async fn run(cmd: &AdminCommand, client: &Client, json_out: bool) -> Result<()> {
    let mut admin = AdminClient::new(client.channel());
    match cmd {
        AdminCommand::Status => status(&mut admin, json_out).await,
        AdminCommand::Queue { queue, peer, limit } => {
            let queue = peer.as_ref().map(|p| format!("peer:{p}")).unwrap_or_else(|| queue.clone());
            let req = pb::ListQueueRequest { peer: queue, limit: *limit };
            let items = admin.list_queue(req).await.map_err(rpc("admin queue"))?.into_inner().items;
            for i in &items {
                print_item(i, json_out);
            }
            if !json_out {
                println!("{} item(s)", items.len());
            }
            Ok(())
        }
        AdminCommand::Purge { queue, peer, seq, sender, msg_id, force } => {
            let queue = match (peer, queue) {
                (Some(p), _) => format!("peer:{p}"),
                (None, Some(q)) => q.clone(),
                (None, None) => return Err(ClientError::invalid("--queue", "give --queue or --peer")),
            };
            let id = match msg_id.is_empty() {
                true => Vec::new(),
                false => hex::decode(msg_id).ok().filter(|b| b.len() == 16).ok_or_else(|| {
                    ClientError::invalid("--msg-id", format!("expected 32 hex characters, got {msg_id:?}"))
                })?,
            };
            if queue.starts_with("peer:") && *seq == 0 && id.is_empty() {
                return Err(ClientError::invalid(
                    "--seq",
                    "name the outbox item (see `focal admin queue --peer P`)",
                ));
            }
            let req =
                pb::PurgeRequest { queue, msg_id: id, sender: sender.clone(), seq: *seq, force: *force };
            let ack = admin.purge(req).await.map_err(rpc("admin purge"))?.into_inner();
            ack_line("purged", &ack, json_out);
            Ok(())
        }
        AdminCommand::Reload => {
            let ack = admin.reload(pb::ReloadRequest {}).await.map_err(rpc("admin reload"))?.into_inner();
            ack_line("reloaded", &ack, json_out);
            Ok(())
        }
        AdminCommand::RetryPeer { peer } => {
            let req = pb::PeerRequest { peer: peer.clone() };
            let ack = admin.retry_peer(req).await.map_err(rpc("admin retry-peer"))?.into_inner();
            ack_line("retrying", &ack, json_out);
            Ok(())
        }
        AdminCommand::PausePeer { peer } => {
            let req = pb::PeerRequest { peer: peer.clone() };
            let ack = admin.pause_peer(req).await.map_err(rpc("admin pause-peer"))?.into_inner();
            ack_line("paused", &ack, json_out);
            Ok(())
        }
        AdminCommand::ResumePeer { peer } => {
            let req = pb::PeerRequest { peer: peer.clone() };
            let ack = admin.resume_peer(req).await.map_err(rpc("admin resume-peer"))?.into_inner();
            ack_line("resumed", &ack, json_out);
            Ok(())
        }
        AdminCommand::WitnessForget { origin } => {
            let req = pb::ForgetWitnessedLogRequest { origin: origin.clone() };
            let ack =
                admin.forget_witnessed_log(req).await.map_err(rpc("admin witness-forget"))?.into_inner();
            ack_line("witness_forgot", &ack, json_out);
            Ok(())
        }
    }
}

async fn status(admin: &mut AdminClient<Channel>, json_out: bool) -> Result<()> {
    let s = admin.status(pb::StatusRequest {}).await.map_err(rpc("admin status"))?.into_inner();
    if json_out {
        let peers: Vec<_> = s
            .peers
            .iter()
            .map(|p| {
                json!({"name": p.name, "networks": p.networks, "state": p.state, "queue_depth": p.queue_depth,
                       "oldest_age_ms": p.oldest_age_ms, "retries": p.retries, "next_attempt_in_ms": p.next_attempt_in_ms,
                       "last_error": p.last_error, "last_disconnect": p.last_disconnect})
            })
            .collect();
        let certs: Vec<_> =
            s.certificates.iter().map(|c| json!({"what": c.what, "not_after_ms": c.not_after_ms})).collect();
        let remote: Vec<_> = s
            .remote_reports
            .iter()
            .map(|r| {
                let links: Vec<_> = r
                    .links
                    .iter()
                    .map(|l| {
                        json!({"peer_network": l.peer_network, "peer_relay": l.peer_relay, "state": l.state,
                               "queue_depth": l.queue_depth, "oldest_age_ms": l.oldest_age_ms})
                    })
                    .collect();
                json!({"network": r.network, "relay": r.relay, "reported_at_ms": r.reported_at_ms,
                       "age_ms": r.age_ms, "stale": r.stale, "links": links})
            })
            .collect();
        println!(
            "{}",
            json!({"type": "status", "version": s.version, "relay": s.relay, "network": s.network,
                   "uptime_ms": s.uptime_ms, "networks_served": s.networks_served, "peers": peers,
                   "store_bytes": s.store_bytes, "mailbox_messages": s.mailbox_messages,
                   "audit_log_size": s.audit_log_size, "certificates": certs,
                   "remote_reports": remote})
        );
        return Ok(());
    }
    say!("relay      {} (focal-relay {})", s.relay, s.version);
    say!("uptime     {} s", s.uptime_ms / 1000);
    say!("networks   {}", s.networks_served.join(", "));
    say!("store      {} bytes, {} message(s) in mailboxes", s.store_bytes, s.mailbox_messages);
    say!("audit log  {} record(s)", s.audit_log_size);
    if s.peers.is_empty() {
        say!("peers      none reported");
    }
    for p in &s.peers {
        say!(
            "peer       {} ({}): {}, {} queued, oldest {} s, {} retries",
            p.name,
            p.networks.join(", "),
            p.state,
            p.queue_depth,
            p.oldest_age_ms / 1000,
            p.retries
        );
        if !p.last_disconnect.is_empty() {
            say!("           last disconnect: {}", p.last_disconnect);
        }
        if !p.last_error.is_empty() && p.last_error != p.last_disconnect {
            say!("           last error: {}", p.last_error);
        }
    }
    for c in &s.certificates {
        say!("valid      {} until {}", c.what, fmt_time_ms(c.not_after_ms));
    }
    for r in &s.remote_reports {
        let fresh = if r.stale { ", STALE: link states not current" } else { "" };
        say!("reported   by {} ({}), {} s ago{fresh}", r.network, r.relay, r.age_ms / 1000);
        for l in &r.links {
            say!(
                "link       {} <-> {} ({}): {}, {} queued, oldest {} s",
                r.network,
                l.peer_network,
                l.peer_relay,
                if r.stale { "unknown (stale)" } else { l.state.as_str() },
                l.queue_depth,
                l.oldest_age_ms / 1000
            );
        }
    }
    Ok(())
}

fn print_item(i: &pb::QueueItem, json_out: bool) {
    let ctx = i.header.as_ref().and_then(|h| focal_proto::envelope::parse_context(&h.context).ok());
    // Peer outbox items carry their fields; mailbox items are read from the context.
    let (id, from, to, expires) = match &ctx {
        _ if !i.kind.is_empty() => {
            (hex::encode(&i.msg_id), i.sender.clone(), i.recipients.clone(), i.expires_at_ms)
        }
        Some(c) => (
            hex::encode(c.msg_id),
            c.sender.to_string(),
            c.recipients.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            c.ctx.expires_at_ms,
        ),
        None => (String::new(), String::new(), Vec::new(), 0),
    };
    let size = i.header.as_ref().map(|h| h.payload_size).unwrap_or(i.size);
    let kind = if i.kind.is_empty() { "envelope" } else { i.kind.as_str() };
    let priority = match (&ctx, i.priority.as_str()) {
        (_, p) if !p.is_empty() => p.to_owned(),
        (Some(c), _) => c.ctx.priority().as_str_name().trim_start_matches("PRIORITY_").to_lowercase(),
        (None, _) => String::new(),
    };
    if json_out {
        println!(
            "{}",
            json!({"type": "queue_item", "queue": i.queue, "seq": i.seq, "kind": kind, "msg_id": id,
                   "from": from, "to": to, "priority": priority, "size": size,
                   "queued_at_ms": i.queued_at_ms, "expires_at_ms": expires, "attempts": i.attempts})
        );
    } else {
        let seq = if i.seq > 0 { format!(" seq {}", i.seq) } else { String::new() };
        say!(
            "{}{seq}  {kind} {id}  from {from} to {}  {priority}  {size} bytes  queued {}  expires {}  attempts {}",
            i.queue,
            to.join(","),
            fmt_time_ms(i.queued_at_ms),
            fmt_time_ms(expires),
            i.attempts
        );
    }
}

fn ack_line(what: &str, ack: &pb::AdminAck, json_out: bool) {
    if json_out {
        println!("{}", json!({"type": what, "detail": ack.detail}));
    } else {
        say!("{what}: {}", ack.detail);
    }
}
