//! The Audit gRPC service on a real socket: auditors and admins of the
//! relay's own network read checkpoints, entries and proofs that verify with
//! `focal_proto::audit`; other networks' auditors and focal points are
//! refused with a reason. (The TLS layer that sets the caller identity is
//! the relay's; here a test interceptor sets it from a request header.)

use std::net::SocketAddr;

use focal_proto::audit::{
    LogKey, TreeHead, hash_from_bytes, hashes_from_bytes, leaf_hash, verify_consistency, verify_inclusion,
    verify_log,
};
use focal_proto::pb::audit_client::AuditClient;
use focal_proto::{Identity, NetworkId, pb};
use focal_relay::audit::{AuditLog, AuditService, LogSigner};
use focal_relay::peer::PeerInfo;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn record(i: u64) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: pb::AuditKind::Accepted as i32,
        time_ms: 1_700_000_000_000 + i as i64,
        msg_id: (i as u128).to_be_bytes().to_vec(),
        sender: "fp1@carin".into(),
        recipients: vec!["fp2@carin".into()],
        payload_sha256: vec![1; 32],
        handling: pb::HandlingCode::H0 as i32,
        priority: pb::Priority::Normal as i32,
        ..Default::default()
    }
}

struct Relay {
    _dir: tempfile::TempDir,
    _db: sled::Db,
    tree: sled::Tree,
    log: AuditLog,
    addr: SocketAddr,
}

impl Relay {
    fn append(&mut self, range: std::ops::Range<u64>) {
        let mut batch = sled::Batch::default();
        for i in range {
            self.log.stage(&record(i), &mut batch).unwrap();
        }
        self.log.seal(&mut batch);
        self.tree.apply_batch(batch).unwrap();
        self.log.committed();
    }
}

async fn start(n: u64) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let tree = db.open_tree("relay").unwrap();
    let signer = LogSigner::load_or_create(&dir.path().join("log.key"), "focal/carin/relay").unwrap();
    let log = AuditLog::open(tree.clone(), signer).unwrap();
    let svc = AuditService::new(log.reader(), NetworkId::new("carin").unwrap());
    let server = pb::audit_server::AuditServer::with_interceptor(svc, |mut req: tonic::Request<()>| {
        if let Some(uri) = req.metadata().get("x-test-identity").and_then(|v| v.to_str().ok()) {
            let identity =
                Identity::from_uri(uri).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            let remote = req.remote_addr().unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
            req.extensions_mut().insert(PeerInfo { identity, remote, refused: None });
        }
        Ok(req)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut relay = Relay { _dir: dir, _db: db, tree, log, addr };
    relay.append(0..n);
    relay
}

async fn client(addr: SocketAddr) -> AuditClient<Channel> {
    AuditClient::connect(format!("http://{addr}")).await.unwrap()
}

fn as_who<T>(msg: T, who: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("x-test-identity", who.parse().unwrap());
    req
}

const AUDITOR: &str = "focal://carin/auditor/aud1";

#[tokio::test]
async fn an_auditor_fetches_and_verifies_everything() {
    let mut relay = start(700).await;
    let mut c = client(relay.addr).await;
    let info = c
        .get_log_info(as_who(pb::GetCheckpointRequest { fresh: false }, AUDITOR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.origin, "focal/carin/relay");
    let key = LogKey::parse(&info.verifier_key).unwrap();
    let cp = key.verify_checkpoint(&info.checkpoint.unwrap().note).unwrap();
    assert_eq!(cp.head().size, 700, "the first request issues a checkpoint");

    // the writer keeps appending while the auditor streams
    relay.append(700..900);
    let mut stream =
        c.get_entries(as_who(pb::EntriesRequest { start: 0, end: 0 }, AUDITOR)).await.unwrap().into_inner();
    let mut leaves = Vec::new();
    while let Some(e) = stream.next().await {
        let e = e.unwrap();
        assert_eq!(e.index, leaves.len() as u64);
        leaves.push(e.leaf);
    }
    assert_eq!(leaves.len(), 700, "end 0 means up to the latest checkpoint");
    verify_log(leaves.iter().map(Vec::as_slice), &cp.note, &key, None, None).unwrap();

    // a fresh checkpoint covers the new leaves and is consistent with the old one
    let info =
        c.get_log_info(as_who(pb::GetCheckpointRequest { fresh: true }, AUDITOR)).await.unwrap().into_inner();
    let cp2 = key.verify_checkpoint(&info.checkpoint.unwrap().note).unwrap();
    assert_eq!(cp2.head().size, 900);
    let p = c
        .get_consistency_proof(as_who(pb::ConsistencyProofRequest { old_size: 700, new_size: 0 }, AUDITOR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.new_size, 900);
    verify_consistency(&cp.head(), &cp2.head(), &hashes_from_bytes(&p.hashes).unwrap()).unwrap();

    // inclusion by index and by msg id
    for leaf in [
        pb::inclusion_proof_request::Leaf::Index(123),
        pb::inclusion_proof_request::Leaf::MsgId((850u128).to_be_bytes().to_vec()),
    ] {
        let p = c
            .get_inclusion_proof(as_who(
                pb::InclusionProofRequest { leaf: Some(leaf), tree_size: 0 },
                AUDITOR,
            ))
            .await
            .unwrap()
            .into_inner();
        let head = TreeHead {
            size: p.tree_size,
            root: hash_from_bytes(&p.checkpoint.as_ref().unwrap().root_hash, "root").unwrap(),
        };
        key.verify_checkpoint(&p.checkpoint.unwrap().note).unwrap();
        verify_inclusion(leaf_hash(&p.leaf), p.leaf_index, &head, &hashes_from_bytes(&p.hashes).unwrap())
            .unwrap();
    }

    // errors carry reasons
    let e = c.get_entries(as_who(pb::EntriesRequest { start: 0, end: 5000 }, AUDITOR)).await.err().unwrap();
    assert_eq!(e.code(), tonic::Code::OutOfRange);
    let e = c
        .get_inclusion_proof(as_who(
            pb::InclusionProofRequest {
                leaf: Some(pb::inclusion_proof_request::Leaf::MsgId(vec![9; 16])),
                tree_size: 0,
            },
            AUDITOR,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c
        .get_consistency_proof(as_who(pb::ConsistencyProofRequest { old_size: 901, new_size: 900 }, AUDITOR))
        .await
        .unwrap_err();
    assert!(e.message().contains("larger"), "{e}");
}

#[tokio::test]
async fn only_own_auditors_and_admins_are_served() {
    let relay = start(3).await;
    let mut c = client(relay.addr).await;
    let req = |who: &str| as_who(pb::GetCheckpointRequest { fresh: false }, who);
    c.get_log_info(req("focal://carin/admin/sec1")).await.unwrap();

    let e = c.get_log_info(req("focal://arinsa/auditor/aud1")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("network carin is open only to its own auditors"), "{}", e.message());
    let e = c
        .get_entries(as_who(pb::EntriesRequest { start: 0, end: 1 }, "focal://carin/fp/alice"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("has role fp"), "{}", e.message());
    let e = c.get_log_info(tonic::Request::new(pb::GetCheckpointRequest { fresh: false })).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = c
        .get_consistency_proof(as_who(
            pb::ConsistencyProofRequest { old_size: 1, new_size: 2 },
            "focal://carin/relay/r2",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
}
