//! `focal admin …`: a network secretariat's commands against its own relay
//! (`focal.v1.Admin`). The profile's certificate must be an `admin` of the
//! relay's network; the relay refuses anyone else.
//!
//! Output is one line per fact, or one JSON object per line with `--json`.

use clap::Subcommand;
use focal_proto::pb::{self, admin_client::AdminClient};
use serde_json::json;
use tonic::transport::Channel;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::util::fmt_time_ms;

/// `focal admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Version, uptime, peers with queue depths, store size, certificates.
    Status,
    /// Queued messages by clear header only (never content).
    Queue {
        /// `mailbox:<address>`, `peer:<name>`, or empty for every queue.
        #[arg(long, default_value = "")]
        queue: String,
        /// At most this many items (relay default 100, at most 10000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Remove an EXPIRED queue item (audited); a live item is refused.
    Purge {
        /// `mailbox:<address>` or `peer:<name>`.
        #[arg(long)]
        queue: String,
        /// The message's sender address.
        #[arg(long)]
        sender: String,
        /// Message id (32 hex characters).
        #[arg(long)]
        msg_id: String,
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
}

fn rpc(op: &str) -> impl FnOnce(tonic::Status) -> ClientError + '_ {
    move |s| ClientError::rpc(op, s)
}

/// Runs an admin command over `client`'s connection.
pub(super) async fn run(cmd: &AdminCommand, client: &Client, json_out: bool) -> Result<()> {
    let mut admin = AdminClient::new(client.channel());
    match cmd {
        AdminCommand::Status => status(&mut admin, json_out).await,
        AdminCommand::Queue { queue, limit } => {
            let req = pb::ListQueueRequest { peer: queue.clone(), limit: *limit };
            let items = admin.list_queue(req).await.map_err(rpc("admin queue"))?.into_inner().items;
            for i in &items {
                print_item(i, json_out);
            }
            if !json_out {
                println!("{} item(s)", items.len());
            }
            Ok(())
        }
        AdminCommand::Purge { queue, sender, msg_id } => {
            let id = hex::decode(msg_id).ok().filter(|b| b.len() == 16).ok_or_else(|| {
                ClientError::invalid("--msg-id", format!("expected 32 hex characters, got {msg_id:?}"))
            })?;
            let req = pb::PurgeRequest { queue: queue.clone(), msg_id: id, sender: sender.clone() };
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
                       "oldest_age_ms": p.oldest_age_ms, "retries": p.retries, "next_attempt_in_ms": p.next_attempt_in_ms})
            })
            .collect();
        let certs: Vec<_> =
            s.certificates.iter().map(|c| json!({"what": c.what, "not_after_ms": c.not_after_ms})).collect();
        println!(
            "{}",
            json!({"type": "status", "version": s.version, "relay": s.relay, "network": s.network,
                   "uptime_ms": s.uptime_ms, "networks_served": s.networks_served, "peers": peers,
                   "store_bytes": s.store_bytes, "mailbox_messages": s.mailbox_messages,
                   "audit_log_size": s.audit_log_size, "certificates": certs})
        );
        return Ok(());
    }
    println!("relay      {} (focal-relay {})", s.relay, s.version);
    println!("uptime     {} s", s.uptime_ms / 1000);
    println!("networks   {}", s.networks_served.join(", "));
    println!("store      {} bytes, {} message(s) in mailboxes", s.store_bytes, s.mailbox_messages);
    println!("audit log  {} record(s)", s.audit_log_size);
    if s.peers.is_empty() {
        println!("peers      none reported");
    }
    for p in &s.peers {
        println!(
            "peer       {} ({}): {}, {} queued, oldest {} s, {} retries",
            p.name,
            p.networks.join(", "),
            p.state,
            p.queue_depth,
            p.oldest_age_ms / 1000,
            p.retries
        );
    }
    for c in &s.certificates {
        println!("valid      {} until {}", c.what, fmt_time_ms(c.not_after_ms));
    }
    Ok(())
}

fn print_item(i: &pb::QueueItem, json_out: bool) {
    let ctx = i.header.as_ref().and_then(|h| focal_proto::envelope::parse_context(&h.context).ok());
    let (id, from, to, expires) = match &ctx {
        Some(c) => (
            hex::encode(c.msg_id),
            c.sender.to_string(),
            c.recipients.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            c.ctx.expires_at_ms,
        ),
        None => (String::new(), String::new(), Vec::new(), 0),
    };
    let size = i.header.as_ref().map(|h| h.payload_size).unwrap_or(0);
    if json_out {
        println!(
            "{}",
            json!({"type": "queue_item", "queue": i.queue, "msg_id": id, "from": from, "to": to,
                   "size": size, "queued_at_ms": i.queued_at_ms, "expires_at_ms": expires, "attempts": i.attempts})
        );
    } else {
        println!(
            "{}  {id}  from {from} to {}  {size} bytes  queued {}  expires {}  attempts {}",
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
        println!("{what}: {}", ack.detail);
    }
}
