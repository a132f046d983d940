//! The federation driver ([`Relaying`]) as the Admin service's peer seams:
//! peer status from its outboxes and links, retry/pause/resume through its
//! admin hooks. Listing and purging peer-outbox items is not offered by the
//! driver yet: `outbox` lists nothing and `purge` answers UNIMPLEMENTED.

use focal_proto::{Address, pb};
use tonic::Status;

use super::{PeerControl, PeerStatusSource};
use crate::relaying::Relaying;
use crate::rpc::now_ms;

impl PeerStatusSource for Relaying {
    fn peers(&self) -> Vec<pb::PeerStatus> {
        let now = now_ms();
        self.peer_status()
            .into_iter()
            .map(|p| pb::PeerStatus {
                name: p.peer,
                networks: p.serves,
                state: p.outbox.state.to_owned(),
                queue_depth: p.outbox.queue_depth as u64,
                oldest_age_ms: p.outbox.oldest_queued_at_ms.map(|t| (now - t).max(0)).unwrap_or(0),
                retries: p.outbox.retries,
                next_attempt_in_ms: p.outbox.next_attempt_at_ms.map(|t| (t - now).max(0)).unwrap_or(0),
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

    async fn purge(
        &self,
        peer: &str,
        _sender: &Address,
        _msg_id: [u8; 16],
        _by: &str,
    ) -> Result<String, Status> {
        Err(Status::unimplemented(format!(
            "purging items of peer {peer}'s outbox is not supported yet (expired outbox items are dropped and audited by the relay itself)"
        )))
    }
}
