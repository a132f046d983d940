//! The relay's gRPC services: `focal.v1.Relay` (send, inbox, fetch, ack,
//! receipts, proofs) and `focal.v1.Directory`. Handlers are thin: they check
//! the caller (identity from the TLS layer, never from a field), validate
//! the request, and hand state changes to the store's writer. Every refusal
//! is a status with a precise code and a message naming what was wrong.

mod directory;
mod fetch;
mod inbox;
pub(crate) mod send;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use focal_certs::SharedTrust;
use focal_proto::pb::{self, directory_server::Directory, relay_server::Relay};
use focal_proto::{Address, Identity, Role};
use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::config::RelayConfig;
use crate::hub::Hub;
use crate::route::Routes;
use crate::store::Store;

/// What every handler shares.
pub struct Shared {
    /// The validated config.
    pub config: RelayConfig,
    /// The store.
    pub store: Store,
    /// Live inbox events.
    pub hub: Arc<Hub>,
    /// Trust bundle and CRLs (reloadable).
    pub trust: SharedTrust,
    /// The federation routing seam.
    pub routes: Routes,
    /// Turns true when shutdown begins (live streams end).
    pub shutdown: watch::Receiver<bool>,
    rate: Mutex<RateWindow>,
}

impl Shared {
    /// Bundles the handlers' state.
    pub fn new(
        config: RelayConfig,
        store: Store,
        hub: Arc<Hub>,
        trust: SharedTrust,
        routes: Routes,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Shared { config, store, hub, trust, routes, shutdown, rate: Mutex::new(RateWindow::default()) }
    }

    /// Counts one send of `sender` at `now_ms`; false if over `limits.sends_per_minute`.
    fn allow_send(&self, sender: &str, now_ms: i64) -> bool {
        let mut w = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        w.allow(sender, now_ms, self.config.limits.sends_per_minute)
    }
}

/// Fixed one-minute windows per sender.
#[derive(Default)]
struct RateWindow {
    counts: HashMap<String, (i64, u32)>,
}

impl RateWindow {
    fn allow(&mut self, sender: &str, now_ms: i64, per_minute: u32) -> bool {
        const WINDOW: i64 = 60_000;
        if self.counts.len() > 100_000 {
            self.counts.retain(|_, (start, _)| now_ms - *start < WINDOW);
        }
        let e = self.counts.entry(sender.to_owned()).or_insert((now_ms, 0));
        if now_ms - e.0 >= WINDOW || now_ms < e.0 {
            *e = (now_ms, 0);
        }
        if e.1 >= per_minute {
            return false;
        }
        e.1 += 1;
        true
    }
}

/// The span of one message's handling at one stage (`send`, `transfer_in`,
/// `transfer_out`, `fetch`, `ack`): its msg id in hex, never content, so an
/// operator can follow one message through the logs (`--log-format json`
/// puts the span on every line logged inside it).
pub(crate) fn message_span(stage: &'static str, msg_id: &[u8]) -> tracing::Span {
    tracing::info_span!("message", msg_id = %hex::encode(msg_id), stage)
}

/// Unix milliseconds of the relay clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The caller's identity, required to be a focal point for `what`.
pub(crate) fn require_fp<T>(req: &Request<T>, what: &str) -> Result<Identity, Status> {
    let id = crate::peer::caller(req)?.clone();
    if id.role != Role::Fp {
        return Err(Status::permission_denied(format!(
            "only focal points (role fp) may {what}; caller is {id}"
        )));
    }
    Ok(id)
}

pub(crate) fn parse_msg_id(field: &str, bytes: &[u8]) -> Result<[u8; 16], Status> {
    bytes
        .try_into()
        .map_err(|_| Status::invalid_argument(format!("{field}: must be 16 bytes, got {}", bytes.len())))
}

pub(crate) fn parse_member(field: &str, s: &str) -> Result<Address, Status> {
    Address::parse_member(s).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

/// `focal.v1.Relay`.
#[derive(Clone)]
pub struct RelayService {
    shared: Arc<Shared>,
}

impl RelayService {
    /// The service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        RelayService { shared }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Relay for RelayService {
    async fn send(
        &self,
        req: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        send::send(&self.shared, req).await.map(Response::new)
    }

    type InboxStream = BoxStream<pb::InboxEvent>;
    async fn inbox(&self, req: Request<pb::InboxRequest>) -> Result<Response<Self::InboxStream>, Status> {
        inbox::inbox(self.shared.clone(), req).map(Response::new)
    }

    type FetchStream = BoxStream<pb::FetchResponse>;
    async fn fetch(&self, req: Request<pb::FetchRequest>) -> Result<Response<Self::FetchStream>, Status> {
        let span = message_span("fetch", &req.get_ref().msg_id);
        fetch::fetch(self.shared.clone(), req).instrument(span).await.map(Response::new)
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let span = message_span("ack", &req.get_ref().msg_id);
        fetch::ack(&self.shared, req).instrument(span).await.map(Response::new)
    }

    async fn receipts(
        &self,
        req: Request<pb::ReceiptsRequest>,
    ) -> Result<Response<pb::ReceiptsResponse>, Status> {
        let caller = require_fp(&req, "list receipts")?;
        let since = req.get_ref().since_ms;
        let receipts = self.shared.store.receipts(&caller.address(), since, 10_000)?;
        // Shown only once durable (see `Store::durable_barrier`).
        self.shared.store.durable_barrier().await?;
        Ok(Response::new(pb::ReceiptsResponse { receipts }))
    }

    async fn prove_accepted(
        &self,
        req: Request<pb::ProveAcceptedRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let caller = require_fp(&req, "ask for proofs of their messages")?;
        let msg_id = parse_msg_id("msg_id", &req.get_ref().msg_id)?;
        let Some(dedup) = self.shared.store.dedup(&caller.address(), &msg_id)? else {
            return Err(Status::not_found(format!(
                "no message {} sent by {} is held by this relay (unknown, or past its expiry)",
                hex::encode(msg_id),
                caller.address()
            )));
        };
        let log = self.shared.store.audit_log();
        let leaf = dedup.accepted_leaf;
        let mut tree_size = req.get_ref().tree_size;
        if tree_size == 0 {
            // The latest checkpoint, or a fresh one if it predates the record.
            let latest = log.latest_checkpoint().map(|c| c.size).unwrap_or(0);
            tree_size = if latest > leaf {
                latest
            } else {
                log.fresh_checkpoint(now_ms()).await.map_err(|e| Status::internal(e.to_string()))?.size
            };
        } else if tree_size <= leaf || tree_size > log.durable_size() {
            // Only durable leaves are proven (see `audit::service`).
            return Err(Status::out_of_range(format!(
                "tree_size {tree_size}: the ACCEPTED record is leaf {leaf} and the durable size of the log is {}",
                log.durable_size()
            )));
        }
        let proof = log.inclusion_proof(leaf, tree_size).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(proof))
    }
}

/// `focal.v1.Directory`.
#[derive(Clone)]
pub struct DirectoryService {
    shared: Arc<Shared>,
}

impl DirectoryService {
    /// The service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        DirectoryService { shared }
    }
}

#[tonic::async_trait]
impl Directory for DirectoryService {
    async fn publish(
        &self,
        req: Request<pb::DirectoryEntry>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        directory::publish(&self.shared, req).await.map(Response::new)
    }

    async fn lookup(&self, req: Request<pb::LookupRequest>) -> Result<Response<pb::DirectoryEntry>, Status> {
        directory::lookup(&self.shared, req).await.map(Response::new)
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        directory::list_members(&self.shared, req).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::RateWindow;

    #[test]
    fn rate_window_counts_per_sender_per_minute() {
        let mut w = RateWindow::default();
        assert!(w.allow("a@x", 0, 2));
        assert!(w.allow("a@x", 10, 2));
        assert!(!w.allow("a@x", 59_999, 2));
        assert!(w.allow("b@x", 59_999, 2));
        assert!(w.allow("a@x", 60_000, 2));
    }
}
