//! `focal.v1.Admin`: status, queue listing (clear headers only, never
//! payload) of mailboxes, peer outboxes and escalation copies held for an
//! alternate (`held:<address>`), purge of expired items
//! (audited; a peer outbox item by (peer, seq), also before expiry with
//! `force`), reload, peer control, and making the relay's witness forget
//! a peer log it pinned (audited).
//! Only a caller with role `admin` of this relay's own network gets in;
//! anyone else gets PERMISSION_DENIED naming who they are and what is
//! required (the TLS layer already refuses other networks' certificates;
//! this check stands on its own).

use std::sync::Arc;

use focal_proto::pb::{self, admin_server::Admin};
use focal_proto::{Address, Identity, Role};
use tonic::{Request, Response, Status};

use super::OpsState;
use crate::rpc::{now_ms, parse_member, parse_msg_id};
use crate::store::admin::PurgeRequest;
use crate::store::admin_outbox::OutboxPurgeRequest;

/// Items a ListQueue returns when the request sets no limit.
const DEFAULT_LIMIT: usize = 100;
/// Most items one ListQueue returns.
const MAX_LIMIT: usize = 10_000;

/// `focal.v1.Admin` over the shared operator state.
#[derive(Clone)]
pub struct AdminService {
    ops: Arc<OpsState>,
}

impl AdminService {
    /// The service over `ops`.
    pub fn new(ops: Arc<OpsState>) -> Self {
        AdminService { ops }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::admin_server::AdminServer<Self> {
        pb::admin_server::AdminServer::new(self)
    }

    fn require_admin<T>(&self, req: &Request<T>, what: &str) -> Result<Identity, Status> {
        let id = crate::peer::caller(req)?.clone();
        let own = &self.ops.config.network;
        if id.role != Role::Admin || &id.network != own {
            return Err(Status::permission_denied(format!(
                "only an admin of network {own} (focal://{own}/admin/…) may {what}; caller is {id}"
            )));
        }
        Ok(id)
    }

    /// The peer control for `peer`: INVALID_ARGUMENT without a name,
    /// UNAVAILABLE while federation does not run, NOT_FOUND for a peer the
    /// config does not name.
    fn control_for(&self, peer: &str) -> Result<Arc<dyn super::PeerControl>, Status> {
        if peer.is_empty() {
            return Err(Status::invalid_argument("peer: must name a configured peer"));
        }
        let control = self
            .ops
            .peer_control()
            .ok_or_else(|| Status::unavailable("federation not running on this relay"))?;
        self.known_peer(peer)?;
        Ok(control)
    }

    fn known_peer(&self, peer: &str) -> Result<(), Status> {
        if !self.ops.config.peers.iter().any(|p| p.name == peer) {
            let names: Vec<&str> = self.ops.config.peers.iter().map(|p| p.name.as_str()).collect();
            return Err(Status::not_found(format!(
                "peer {peer:?} is not configured (configured: {})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            )));
        }
        Ok(())
    }
}

/// `mailbox:<address>` -> the address; `held:<address>` -> the copies held
/// for that alternate (`held:` alone: all held copies, listing only);
/// `peer:<name>` or a bare name -> the peer.
enum Queue {
    All,
    Mailbox(Address),
    Held(Option<Address>),
    Peer(String),
}

fn parse_queue(field: &str, q: &str) -> Result<Queue, Status> {
    if q.is_empty() {
        return Ok(Queue::All);
    }
    if let Some(a) = q.strip_prefix("mailbox:") {
        return parse_member(field, a).map(Queue::Mailbox);
    }
    if let Some(a) = q.strip_prefix("held:") {
        return match a {
            "" => Ok(Queue::Held(None)),
            a => parse_member(field, a).map(|a| Queue::Held(Some(a))),
        };
    }
    Ok(Queue::Peer(q.strip_prefix("peer:").unwrap_or(q).to_owned()))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        self.require_admin(&req, "read the relay status")?;
        let ops = self.ops.clone();
        let g = tokio::task::spawn_blocking(move || ops.gauges())
            .await
            .map_err(|e| Status::internal(format!("status: {e}")))?;
        let config = &self.ops.config;
        Ok(Response::new(pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            relay: config.relay_identity().uri(),
            network: config.network.to_string(),
            uptime_ms: self.ops.started.elapsed().as_millis() as i64,
            networks_served: vec![config.network.to_string()],
            peers: g.peers,
            store_bytes: g.store_bytes,
            mailbox_messages: g.mailbox_messages,
            audit_log_size: g.audit_log_size,
            certificates: g
                .certificates
                .iter()
                .map(|c| pb::CertificateStatus {
                    what: c.what.clone(),
                    not_after_ms: c.not_after_unix.saturating_mul(1000),
                })
                .collect(),
            remote_reports: self.ops.remote_reports(now_ms()),
        }))
    }

    async fn list_queue(
        &self,
        req: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        self.require_admin(&req, "list queues")?;
        let r = req.into_inner();
        let limit = match r.limit as usize {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let mut items = Vec::new();
        let queue = parse_queue("peer", &r.peer)?;
        if let Queue::Peer(name) = &queue {
            self.known_peer(name)?;
        }
        if matches!(queue, Queue::All | Queue::Peer(_))
            && let Some(source) = self.ops.peer_status()
        {
            for p in &self.ops.config.peers {
                if let Queue::Peer(name) = &queue
                    && name != &p.name
                {
                    continue;
                }
                items.extend(source.outbox(&p.name, limit - items.len()));
            }
        }
        let owner = match &queue {
            Queue::Mailbox(a) => Some(a),
            Queue::All => None,
            Queue::Peer(_) | Queue::Held(_) => None,
        };
        let left = limit.saturating_sub(items.len());
        if left > 0 && matches!(queue, Queue::All | Queue::Mailbox(_)) {
            items.extend(self.ops.store.mailbox_items(owner, left)?);
        }
        let left = limit.saturating_sub(items.len());
        if left > 0 {
            match &queue {
                Queue::All => items.extend(self.ops.store.held_items(None, left)?),
                Queue::Held(alternate) => items.extend(self.ops.store.held_items(alternate.as_ref(), left)?),
                Queue::Mailbox(_) | Queue::Peer(_) => {}
            }
        }
        Ok(Response::new(pb::ListQueueResponse { items }))
    }

    async fn retry_peer(&self, req: Request<pb::PeerRequest>) -> Result<Response<pb::AdminAck>, Status> {
        let by = self.require_admin(&req, "retry a peer")?;
        let peer = &req.get_ref().peer;
        let detail = self.control_for(peer)?.retry(peer).await?;
        tracing::info!(%by, peer, "admin: retry peer");
        Ok(Response::new(pb::AdminAck { detail }))
    }

    async fn pause_peer(&self, req: Request<pb::PeerRequest>) -> Result<Response<pb::AdminAck>, Status> {
        let by = self.require_admin(&req, "pause a peer")?;
        let peer = &req.get_ref().peer;
        let detail = self.control_for(peer)?.pause(peer).await?;
        tracing::info!(%by, peer, "admin: pause peer");
        Ok(Response::new(pb::AdminAck { detail }))
    }

    async fn resume_peer(&self, req: Request<pb::PeerRequest>) -> Result<Response<pb::AdminAck>, Status> {
        let by = self.require_admin(&req, "resume a peer")?;
        let peer = &req.get_ref().peer;
        let detail = self.control_for(peer)?.resume(peer).await?;
        tracing::info!(%by, peer, "admin: resume peer");
        Ok(Response::new(pb::AdminAck { detail }))
    }

    async fn purge(&self, req: Request<pb::PurgeRequest>) -> Result<Response<pb::AdminAck>, Status> {
        let by = self.require_admin(&req, "purge queue items")?;
        let r = req.into_inner();
        match parse_queue("queue", &r.queue)? {
            Queue::All | Queue::Held(None) => Err(Status::invalid_argument(
                "queue: must be mailbox:<address>, held:<address> or peer:<name>",
            )),
            // A held escalation copy is purged by naming its alternate as
            // the owner (the store finds the held copy).
            Queue::Mailbox(owner) | Queue::Held(Some(owner)) => {
                let msg_id = parse_msg_id("msg_id", &r.msg_id)?;
                let sender = Address::parse(&r.sender)
                    .map_err(|e| Status::invalid_argument(format!("sender: {e}")))?;
                if r.force {
                    return Err(Status::invalid_argument(
                        "force: only peer outbox items can be purged before they expire",
                    ));
                }
                let leaf = self
                    .ops
                    .store
                    .purge(PurgeRequest { owner, sender, msg_id, by: by.uri(), now_ms: now_ms() })
                    .await?;
                Ok(Response::new(pb::AdminAck { detail: format!("purged; audit leaf {leaf}") }))
            }
            Queue::Peer(peer) => {
                let msg_id = match r.msg_id.is_empty() {
                    true => None,
                    false => Some(parse_msg_id("msg_id", &r.msg_id)?),
                };
                let sender = match r.sender.is_empty() {
                    true => None,
                    false => Some(
                        Address::parse(&r.sender)
                            .map_err(|e| Status::invalid_argument(format!("sender: {e}")))?,
                    ),
                };
                let control = self.control_for(&peer)?;
                let req = OutboxPurgeRequest {
                    peer: peer.clone(),
                    seq: r.seq,
                    sender,
                    msg_id,
                    force: r.force,
                    by: by.uri(),
                    now_ms: now_ms(),
                };
                let detail = control.purge(req).await?;
                tracing::info!(%by, peer, seq = r.seq, force = r.force, "admin: purge peer outbox item");
                Ok(Response::new(pb::AdminAck { detail }))
            }
        }
    }

    async fn forget_witnessed_log(
        &self,
        req: Request<pb::ForgetWitnessedLogRequest>,
    ) -> Result<Response<pb::AdminAck>, Status> {
        let by = self.require_admin(&req, "make the witness forget a peer's log")?;
        let origin = req.into_inner().origin;
        if origin.trim().is_empty() || origin.contains(char::is_whitespace) {
            return Err(Status::invalid_argument(format!(
                "origin: must be a log origin such as focal/carin/relay-carin, got {origin:?}"
            )));
        }
        let witness = self.ops.witness().ok_or_else(|| Status::unavailable("the witness is not running"))?;
        let pinned = witness.pinned();
        let Some((_, key, head)) = pinned.iter().find(|(o, _, _)| *o == origin) else {
            let known: Vec<&str> = pinned.iter().map(|(o, _, _)| o.as_str()).collect();
            return Err(Status::not_found(format!(
                "this relay's witness has pinned nothing for {origin:?} (pinned: {})",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )));
        };
        // Audited first: a crash in between leaves a record of an intent
        // that can be carried out again, never an unrecorded change of trust.
        let detail = format!(
            "witness forgets log {origin}: pinned key {key}, last cosigned size {} root {}, by {by}",
            head.size, head.root
        );
        let record = pb::AuditRecord {
            version: focal_proto::audit::RECORD_VERSION,
            kind: pb::AuditKind::WitnessForgotten as i32,
            time_ms: now_ms(),
            peer: by.uri(),
            detail: detail.clone(),
            ..Default::default()
        };
        let leaf = self.ops.store.audit(record).await?;
        witness.forget(&origin).await?;
        tracing::warn!(%by, origin, "admin: the witness forgot a peer's log; its next checkpoint is pinned afresh");
        Ok(Response::new(pb::AdminAck {
            detail: format!("{detail}; audit leaf {leaf}; its next checkpoint will be pinned afresh"),
        }))
    }

    async fn reload(&self, req: Request<pb::ReloadRequest>) -> Result<Response<pb::AdminAck>, Status> {
        let by = self.require_admin(&req, "reload certificates and CRLs")?;
        tracing::info!(%by, "reload requested (Admin.Reload)");
        match self.ops.reloader.reload().await {
            Ok(report) => Ok(Response::new(pb::AdminAck { detail: report.to_string() })),
            Err(e) => Err(Status::failed_precondition(format!("reload failed, nothing changed: {e}"))),
        }
    }
}
