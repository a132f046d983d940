//! The `focal.v1.Audit` gRPC service: checkpoints, entries, inclusion and
//! consistency proofs, open only to auditors and admins of this relay's
//! own network.

use std::pin::Pin;

use focal_proto::pb::inclusion_proof_request::Leaf;
use focal_proto::{NetworkId, Role, pb};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::AuditReader;
use crate::RelayError;

/// Entries read from the store per step of a `GetEntries` stream.
const ENTRIES_CHUNK: u64 = 256;
/// Entries buffered between the store reader and the gRPC stream.
const ENTRIES_BUFFER: usize = 512;

/// The Audit service over a read view of the log.
#[derive(Clone)]
pub struct AuditService {
    reader: AuditReader,
    network: NetworkId,
}

impl AuditService {
    /// Serves `reader` to auditors and admins of `network` (the relay's own).
    pub fn new(reader: AuditReader, network: NetworkId) -> Self {
        AuditService { reader, network }
    }

    /// The tonic server wrapper, to add to a router.
    pub fn into_server(self) -> pb::audit_server::AuditServer<Self> {
        pb::audit_server::AuditServer::new(self)
    }

    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let who = crate::peer::caller(req)?;
        if who.network != self.network {
            return Err(Status::permission_denied(format!(
                "the audit log of network {} is open only to its own auditors and admins; {who} belongs to network {}",
                self.network, who.network
            )));
        }
        if !matches!(who.role, Role::Auditor | Role::Admin) {
            return Err(Status::permission_denied(format!(
                "the audit log is open only to auditor and admin certificates; {who} has role {}",
                who.role
            )));
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn status(code: tonic::Code) -> impl Fn(RelayError) -> Status {
    move |e| Status::new(code, e.to_string())
}

type EntryStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AuditEntry, Status>> + Send>>;

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn get_log_info(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::LogInfo>, Status> {
        self.authorize(&req)?;
        if req.get_ref().fresh || self.reader.latest_checkpoint().is_none() {
            self.reader.fresh_checkpoint(now_ms()).await.map_err(status(tonic::Code::Internal))?;
        }
        Ok(Response::new(self.reader.info().map_err(status(tonic::Code::Internal))?))
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(&self, req: Request<pb::EntriesRequest>) -> Result<Response<EntryStream>, Status> {
        self.authorize(&req)?;
        let pb::EntriesRequest { start, end } = *req.get_ref();
        let end = if end == 0 { self.reader.latest_checkpoint().map_or(0, |c| c.size) } else { end };
        let size = self.reader.size();
        if start > end || end > size {
            return Err(Status::out_of_range(format!(
                "entries {start}..{end} are not within the log of size {size}"
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(ENTRIES_BUFFER);
        let reader = self.reader.clone();
        tokio::spawn(async move {
            let mut at = start;
            while at < end {
                let to = (at + ENTRIES_CHUNK).min(end);
                let r = reader.clone();
                let chunk = tokio::task::spawn_blocking(move || r.entries(at, to)).await;
                let chunk = match chunk {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(format!("entry reader failed: {e}")))).await;
                        return;
                    }
                };
                for entry in chunk {
                    if tx.send(Ok(entry)).await.is_err() {
                        return; // the client went away
                    }
                }
                at = to;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        self.authorize(&req)?;
        let req = req.into_inner();
        let proof = match req.leaf {
            Some(Leaf::Index(i)) => {
                self.reader.inclusion_proof(i, req.tree_size).map_err(status(tonic::Code::OutOfRange))
            }
            Some(Leaf::MsgId(id)) => self
                .reader
                .inclusion_proof_by_msg_id(&id, req.tree_size)
                .map_err(status(tonic::Code::NotFound)),
            None => Err(Status::invalid_argument("give a leaf index or a msg id")),
        }?;
        Ok(Response::new(proof))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        self.authorize(&req)?;
        let pb::ConsistencyProofRequest { old_size, new_size } = *req.get_ref();
        let proof =
            self.reader.consistency_proof(old_size, new_size).map_err(status(tonic::Code::OutOfRange))?;
        Ok(Response::new(proof))
    }
}
