//! The `focal.v1.Audit` gRPC service: checkpoints, entries, inclusion and
//! consistency proofs, open only to auditors and admins of this relay's
//! own network.
//!
//! Entries and proofs are served only up to the log's durable size
//! ([`AuditReader::durable_size`]), never up to the committed one: a batch
//! applied but not yet fsynced may be lost in a crash and its indexes
//! reused by other records, so an auditor holding such a leaf or proof
//! would later see a "fork" the relay never signed. An explicit `end`,
//! `tree_size` or `new_size` above it is refused with OUT_OF_RANGE naming
//! the durable size; 0 (the latest checkpoint) is always durable.

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

    /// Refuses an explicit tree size beyond the durable size with
    /// OUT_OF_RANGE, before a lookup could answer otherwise (NOT_FOUND for
    /// a msg id). The reader's proofs make the same check.
    fn check_durable(&self, size: u64) -> Result<(), Status> {
        self.reader.check_durable(size).map_err(status(tonic::Code::OutOfRange))
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
        let size = self.reader.durable_size();
        if start > end || end > size {
            return Err(Status::out_of_range(format!(
                "entries {start}..{end} are not within the log of durable size {size}"
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
        self.check_durable(req.tree_size)?;
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
        self.check_durable(new_size)?;
        let proof =
            self.reader.consistency_proof(old_size, new_size).map_err(status(tonic::Code::OutOfRange))?;
        Ok(Response::new(proof))
    }
}

#[cfg(test)]
mod tests {
    use focal_proto::Identity;
    use pb::audit_server::Audit;
    use tokio_stream::StreamExt;

    use super::*;
    use crate::audit::testing::append;
    use crate::audit::{AuditLog, LogSigner};
    use crate::peer::PeerInfo;

    fn as_auditor<T>(msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        let identity = Identity::from_uri("focal://carin/auditor/aud1").unwrap();
        req.extensions_mut().insert(PeerInfo { identity, remote: ([127, 0, 0, 1], 0).into(), refused: None });
        req
    }

    async fn entries(svc: &AuditService, start: u64, end: u64) -> Result<u64, Status> {
        let mut stream = svc.get_entries(as_auditor(pb::EntriesRequest { start, end })).await?.into_inner();
        let mut n = 0;
        while let Some(e) = stream.next().await {
            e?;
            n += 1;
        }
        Ok(n)
    }

    fn by_index(index: u64, tree_size: u64) -> Request<pb::InclusionProofRequest> {
        as_auditor(pb::InclusionProofRequest { leaf: Some(Leaf::Index(index)), tree_size })
    }

    fn out_of_range(r: Result<impl std::fmt::Debug, Status>, durable: u64) {
        let e = r.expect_err("beyond the durable size");
        assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
        assert!(e.message().contains(&format!("durable size {durable}")), "{e:?}");
    }

    /// Leaves of a batch applied but not yet flushed are committed, not
    /// durable: a crash could replace them, so no entry or proof covers them.
    #[tokio::test]
    async fn entries_and_proofs_stop_at_the_durable_size() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::open(tmp.path().join("db")).unwrap();
        let tree = db.open_tree("relay").unwrap();
        let signer = LogSigner::load_or_create(&tmp.path().join("log.key"), "focal/carin/relay").unwrap();
        let mut log = AuditLog::open(tree.clone(), signer).unwrap();
        let reader = log.reader();
        let svc = AuditService::new(reader.clone(), NetworkId::new("carin").unwrap());
        append(&mut log, &tree, 0..10);
        log.flushed();
        append(&mut log, &tree, 10..25); // applied, its fsync still running
        assert_eq!((reader.size(), reader.durable_size()), (25, 10));

        out_of_range(entries(&svc, 0, 25).await, 10);
        out_of_range(entries(&svc, 10, 11).await, 10);
        assert_eq!(entries(&svc, 0, 10).await.unwrap(), 10);
        out_of_range(svc.get_inclusion_proof(by_index(3, 25)).await, 10);
        out_of_range(svc.get_inclusion_proof(by_index(3, 11)).await, 10);
        let by_msg = pb::InclusionProofRequest {
            leaf: Some(Leaf::MsgId((12u128).to_be_bytes().to_vec())),
            tree_size: 25,
        };
        out_of_range(svc.get_inclusion_proof(as_auditor(by_msg.clone())).await, 10);
        let consistency = |old_size, new_size| as_auditor(pb::ConsistencyProofRequest { old_size, new_size });
        out_of_range(svc.get_consistency_proof(consistency(5, 25)).await, 10);
        assert!(svc.get_inclusion_proof(by_index(3, 10)).await.is_ok());
        assert!(svc.get_consistency_proof(consistency(5, 10)).await.is_ok());
        // The reader's proofs refuse them too (the witness requester uses them).
        let e = reader.inclusion_proof(3, 25).unwrap_err().to_string();
        assert!(e.contains("durable size 10"), "{e}");
        assert!(reader.consistency_proof(5, 25).is_err());

        // An auditor's fresh checkpoint flushes first: then everything is served.
        let info = svc.get_log_info(as_auditor(pb::GetCheckpointRequest { fresh: true })).await.unwrap();
        assert_eq!(info.into_inner().checkpoint.unwrap().size, 25);
        assert_eq!(reader.durable_size(), 25);
        assert_eq!(entries(&svc, 0, 25).await.unwrap(), 25);
        assert!(svc.get_inclusion_proof(as_auditor(by_msg)).await.is_ok());
        assert!(svc.get_consistency_proof(consistency(5, 25)).await.is_ok());

        // So is what the store's flush made durable, checkpointed or not.
        append(&mut log, &tree, 25..30);
        out_of_range(entries(&svc, 0, 30).await, 25);
        log.flushed();
        assert_eq!(entries(&svc, 25, 30).await.unwrap(), 5);
        assert!(svc.get_inclusion_proof(by_index(27, 30)).await.is_ok());

        // Opened again (a restart), what the store holds counts as durable.
        drop(log);
        let signer = LogSigner::load_or_create(&tmp.path().join("log.key"), "focal/carin/relay").unwrap();
        let log = AuditLog::open(tree, signer).unwrap();
        assert_eq!(log.reader().durable_size(), 30);
    }
}
