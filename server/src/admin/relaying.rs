//! The federation driver ([`Relaying`]) as the Admin service's peer seams:
//! peer status from its outboxes and links, retry/pause/resume through its
//! admin hooks, listing of outbox items (clear header fields only) from the
//! core's outbox and the store's `o/` records, and the audited purge of one
//! item (`Store::purge_outbox`, applied by the writer under the core lock).

use focal_proto::pb;
use tonic::Status;

use super::{PeerControl, PeerStatusSource};
use crate::core::outbox::{ItemId, OutboxItem};
use crate::relaying::Relaying;
use crate::rpc::now_ms;
use crate::store::admin_outbox::OutboxPurgeRequest;

impl PeerStatusSource for Relaying {
    fn outbox(&self, peer: &str, limit: usize) -> Vec<pb::QueueItem> {
        let items: Vec<(u64, OutboxItem, u32)> = {
            let c = self.core();
            let Some(o) = c.outbox(peer) else { return Vec::new() };
            o.items().take(limit).map(|(s, i, a)| (s, i.clone(), a)).collect()
        };
        self.store.outbox_queue_items(peer, &items)
    }

    fn peers(&self) -> Vec<pb::PeerStatus> {
        let now = now_ms();
        self.peer_status()
            .into_iter()
            .map(|p| {
                let link = self.link(&p.peer).map(|l| l.status()).unwrap_or_default();
                pb::PeerStatus {
                    last_error: link.last_error.unwrap_or_default(),
                    last_disconnect: link.last_disconnect.unwrap_or_default(),
                    name: p.peer,
                    networks: p.serves,
                    state: p.outbox.state.to_owned(),
                    queue_depth: p.outbox.queue_depth as u64,
                    oldest_age_ms: p.outbox.oldest_queued_at_ms.map(|t| (now - t).max(0)).unwrap_or(0),
                    retries: p.outbox.retries,
                    next_attempt_in_ms: p.outbox.next_attempt_at_ms.map(|t| (t - now).max(0)).unwrap_or(0),
                }
            })
            .collect()
    }
}

fn unknown(peer: &str) -> Status {
    Status::not_found(format!("peer {peer:?} has no outbox on this relay"))
}

#[tonic::async_trait]
impl PeerControl for Relaying {
    async fn retry(&self, peer: &str) -> Result<String, Status> {
        if !self.retry_peer(peer) {
            return Err(unknown(peer));
        }
        Ok(format!("{peer}: backoff reset, sending resumes now"))
    }

    async fn pause(&self, peer: &str) -> Result<String, Status> {
        if !self.pause_peer(peer, true) {
            return Err(unknown(peer));
        }
        Ok(format!("{peer}: paused; its outbox keeps filling until resumed"))
    }

    async fn resume(&self, peer: &str) -> Result<String, Status> {
        if !self.pause_peer(peer, false) {
            return Err(unknown(peer));
        }
        Ok(format!("{peer}: resumed"))
    }

    async fn purge(&self, mut req: OutboxPurgeRequest) -> Result<String, Status> {
        let peer = req.peer.clone();
        if req.seq == 0 {
            // No number given: the first copy of that message in the outbox.
            let (Some(sender), Some(msg_id)) = (&req.sender, &req.msg_id) else {
                return Err(Status::invalid_argument(
                    "seq: name the outbox item by its number (or give sender and msg_id)",
                ));
            };
            let want = ItemId::Envelope { sender: sender.clone(), msg_id: *msg_id };
            let c = self.core();
            let o = c.outbox(&peer).ok_or_else(|| unknown(&peer))?;
            req.seq = o.items().find(|(_, i, _)| i.id == want).map(|(s, _, _)| s).ok_or_else(|| {
                Status::not_found(format!(
                    "peer:{peer} holds no copy of message {} from {sender}",
                    hex::encode(msg_id)
                ))
            })?;
        }
        let seq = req.seq;
        let purged = self.store.purge_outbox(req).await?;
        self.kick();
        let mut detail = format!("purged item {seq} of peer:{peer}; audit leaf {}", purged.leaf);
        if purged.was_in_flight {
            detail.push_str(
                "; it was in flight: its transfer was cancelled (the peer keeps a copy only if it had already received all of it)",
            );
        }
        Ok(detail)
    }
}
