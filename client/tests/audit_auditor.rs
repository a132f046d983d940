//! The auditor library end to end against a fake relay (a tonic Audit
//! server over `focal_proto::audit::MemoryLog` that can be made to lie,
//! fork, roll back or fail): incremental and resumable fetch, and offline
//! verify refusing any changed byte, deleted, reordered or truncated entry,
//! rollback and fork, naming what is wrong; then trace, export and stats.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use focal_client::audit::{self, AuditError, ExportFormat};
use focal_proto::ProtoError;
use focal_proto::audit::{MemoryLog, NoteSigner, TreeHead, WitnessSigner};
use focal_proto::pb;
use focal_proto::pb::audit_client::AuditClient;
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------- fake relay

struct Fake {
    log: MemoryLog,
    signer: Arc<NoteSigner>,
    witness: Option<Arc<WitnessSigner>>,
    /// Serve a checkpoint of this size instead of the whole log (rollback).
    checkpoint_size: Option<u64>,
    /// Fail the entry stream after this many entries.
    fail_after: Option<u64>,
    /// Serve this leaf instead of the logged one at index .0.
    lie: Option<(u64, Vec<u8>)>,
    /// Extra lines served as cosignatures.
    extra_cosignatures: Vec<String>,
}

#[derive(Clone)]
struct FakeRelay(Arc<Mutex<Fake>>);

type EntryStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AuditEntry, Status>> + Send>>;

#[tonic::async_trait]
impl pb::audit_server::Audit for FakeRelay {
    async fn get_log_info(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::LogInfo>, Status> {
        let f = self.0.lock().unwrap();
        let size = f.checkpoint_size.unwrap_or(f.log.size());
        let head = TreeHead { size, root: f.log.root_at(size).unwrap() };
        let note = f.signer.sign_checkpoint(&head).unwrap();
        let text = format!("{}\n", note.split_once("\n\n").unwrap().0);
        let mut cosignatures = match &f.witness {
            Some(w) => vec![w.cosign(&text, 1_700_000_000).unwrap().trim_end().to_owned()],
            None => vec![],
        };
        cosignatures.extend(f.extra_cosignatures.iter().cloned());
        Ok(Response::new(pb::LogInfo {
            origin: f.signer.name().into(),
            verifier_key: f.signer.verifier_key(),
            checkpoint: Some(pb::Checkpoint { note, size, root_hash: head.root.0.to_vec() }),
            cosignatures,
        }))
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(&self, req: Request<pb::EntriesRequest>) -> Result<Response<EntryStream>, Status> {
        let f = self.0.lock().unwrap();
        let pb::EntriesRequest { start, end } = *req.get_ref();
        let mut items: Vec<Result<pb::AuditEntry, Status>> = (start..end)
            .map(|i| {
                let leaf = match &f.lie {
                    Some((at, l)) if *at == i => l.clone(),
                    _ => f.log.leaf(i).unwrap().to_vec(),
                };
                Ok(pb::AuditEntry { index: i, leaf })
            })
            .collect();
        if let Some(k) = f.fail_after {
            items.truncate(k as usize);
            items.push(Err(Status::unavailable("connection lost")));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        Err(Status::unimplemented("not needed"))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let f = self.0.lock().unwrap();
        let pb::ConsistencyProofRequest { old_size, new_size } = *req.get_ref();
        let p =
            f.log.consistency_proof(old_size, new_size).map_err(|e| Status::out_of_range(e.to_string()))?;
        Ok(Response::new(pb::ConsistencyProof {
            old_size,
            new_size,
            hashes: p.iter().map(|h| h.0.to_vec()).collect(),
        }))
    }
}

async fn serve(fake: FakeRelay) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::audit_server::AuditServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn msg(i: u64) -> Vec<u8> {
    (u128::from(i) + 0x1000).to_be_bytes().to_vec()
}

/// Records of a message's life at one relay.
fn record(i: u64, kind: pb::AuditKind, peer: &str, hop: u32) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: kind as i32,
        time_ms: 1_700_000_000_000 + (i as i64) * 3_600_000 + i64::from(hop) * 10,
        msg_id: msg(i / 2),
        sender: "alice@carin".into(),
        recipients: vec!["bob@arinsa".into()],
        peer: peer.into(),
        payload_sha256: vec![3; 32],
        size: 1000 + i,
        handling: pb::HandlingCode::H1 as i32,
        hop,
        reason: if kind == pb::AuditKind::Refused { pb::RefusalReason::Policy as i32 } else { 0 },
        detail: if i == 3 { "comma, and \"quotes\"".into() } else { String::new() },
        priority: pb::Priority::Normal as i32,
    }
}

fn carin_record(i: u64) -> pb::AuditRecord {
    use pb::AuditKind as K;
    let kind = [K::Accepted, K::Forwarded, K::Refused][(i % 3) as usize];
    record(i, kind, if kind == K::Accepted { "alice@carin" } else { "relay.arinsa" }, 0)
}

struct Setup {
    fake: FakeRelay,
    addr: SocketAddr,
    key: String,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

async fn setup(n: u64) -> Setup {
    setup_named(n, "focal/carin/relay").await
}

async fn setup_named(n: u64, origin: &str) -> Setup {
    let signer = Arc::new(NoteSigner::from_pkcs8(origin, &NoteSigner::generate_pkcs8().unwrap()).unwrap());
    let mut log = MemoryLog::new();
    for i in 0..n {
        log.append_record(&carin_record(i)).unwrap();
    }
    let key = signer.verifier_key();
    let fake = FakeRelay(Arc::new(Mutex::new(Fake {
        log,
        signer,
        witness: None,
        checkpoint_size: None,
        fail_after: None,
        lie: None,
        extra_cosignatures: Vec::new(),
    })));
    let addr = serve(fake.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("carin");
    Setup { fake, addr, key, _tmp: tmp, dir }
}

impl Setup {
    async fn fetch(&self) -> Result<audit::FetchReport, AuditError> {
        self.fetch_into(&self.dir).await
    }
    async fn fetch_into(&self, dir: &Path) -> Result<audit::FetchReport, AuditError> {
        let mut c = AuditClient::connect(format!("http://{}", self.addr)).await.unwrap();
        audit::fetch(&mut c, dir, &self.key).await
    }
    fn verify(&self) -> Result<audit::VerifyReport, AuditError> {
        audit::verify(&self.dir, &self.key, &[], 0)
    }
    fn set(&self, f: impl FnOnce(&mut Fake)) {
        f(&mut self.fake.0.lock().unwrap());
    }
}

fn entries_path(dir: &Path) -> PathBuf {
    dir.join("entries.bin")
}

/// Byte ranges of the entries in entries.bin.
fn entry_spans(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        spans.push(at..at + 12 + len);
        at += 12 + len;
    }
    spans
}

/// Copies the files of directory `from` into `to`.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn fetch_is_incremental_and_verify_passes_untouched() {
    let s = setup(30).await;
    let r = s.fetch().await.unwrap();
    assert_eq!((r.old_size, r.new_size, r.downloaded), (0, 30, 30));
    let v = s.verify().unwrap();
    assert_eq!((v.size, v.checkpoints, v.previous_size), (30, 1, Some(30)));
    // nothing new
    assert_eq!(s.fetch().await.unwrap().downloaded, 0);
    // more entries: only those are downloaded
    s.set(|f| {
        for i in 30..45 {
            f.log.append_record(&carin_record(i)).unwrap();
        }
    });
    let r = s.fetch().await.unwrap();
    assert_eq!((r.old_size, r.new_size, r.downloaded), (30, 45, 15));
    let v = s.verify().unwrap();
    assert_eq!((v.size, v.checkpoints), (45, 2));
    assert_eq!(v.origin, "focal/carin/relay");
    // a wrong key is refused up front
    let other = NoteSigner::from_pkcs8("focal/carin/relay", &NoteSigner::generate_pkcs8().unwrap()).unwrap();
    let e = audit::verify(&s.dir, &other.verifier_key(), &[], 0).unwrap_err();
    assert!(matches!(e, AuditError::At { source: ProtoError::CheckpointSignature(_), .. }), "{e}");
}

#[tokio::test]
async fn an_interrupted_fetch_resumes() {
    let s = setup(50).await;
    s.set(|f| f.fail_after = Some(20));
    let e = s.fetch().await.unwrap_err();
    assert!(matches!(e, AuditError::Rpc(_)), "{e}");
    assert!(matches!(s.verify(), Err(AuditError::NoCheckpoint(_))));
    // a torn write at the end of the file is dropped too
    let mut f = std::fs::OpenOptions::new().append(true).open(entries_path(&s.dir)).unwrap();
    std::io::Write::write_all(&mut f, &[0, 0, 0, 0, 0, 0, 0, 20, 0, 0]).unwrap();
    drop(f);
    s.set(|f| f.fail_after = None);
    let r = s.fetch().await.unwrap();
    assert_eq!((r.new_size, r.downloaded), (50, 30));
    s.verify().unwrap();
}

#[tokio::test]
async fn a_relay_serving_other_entries_than_it_signed_is_caught() {
    let s = setup(10).await;
    s.fetch().await.unwrap();
    s.set(|f| {
        for i in 10..20 {
            f.log.append_record(&carin_record(i)).unwrap();
        }
        f.lie = Some((15, focal_proto::audit::encode_record(&carin_record(99)).unwrap()));
    });
    let e = s.fetch().await.unwrap_err();
    assert!(e.to_string().contains("root mismatch at size 20"), "{e}");
    // nothing unverified was kept, the earlier log still verifies
    assert_eq!(s.verify().unwrap().size, 10);
    s.set(|f| f.lie = None);
    assert_eq!(s.fetch().await.unwrap().downloaded, 10);
}

#[tokio::test]
async fn any_changed_byte_of_any_entry_fails() {
    let s = setup(12).await;
    s.fetch().await.unwrap();
    let path = entries_path(&s.dir);
    let good = std::fs::read(&path).unwrap();
    for pos in 0..good.len() {
        let mut b = good.clone();
        b[pos] ^= 0x01;
        std::fs::write(&path, &b).unwrap();
        let e = s.verify().expect_err(&format!("byte {pos} changed but the log verified"));
        let m = e.to_string();
        assert!(
            m.contains("root mismatch")
                || m.contains("malformed")
                || m.contains("carries index")
                || m.contains("ends inside")
                || m.contains("announces a leaf"),
            "byte {pos}: {m}"
        );
    }
    std::fs::write(&path, &good).unwrap();
    s.verify().unwrap();
}

#[tokio::test]
async fn deleted_reordered_or_truncated_entries_are_named() {
    let s = setup(20).await;
    s.fetch().await.unwrap();
    let path = entries_path(&s.dir);
    let good = std::fs::read(&path).unwrap();
    let spans = entry_spans(&good);
    let check = |bytes: Vec<u8>, expect: &str| {
        std::fs::write(&path, bytes).unwrap();
        let m = s.verify().unwrap_err().to_string();
        assert!(m.contains(expect), "expected {expect:?} in: {m}");
    };
    // delete entry 7
    let mut b = good[..spans[7].start].to_vec();
    b.extend_from_slice(&good[spans[7].end..]);
    check(b, "entry at position 7 carries index 8: entries were deleted, inserted or reordered");
    // swap entries 3 and 11
    let mut b = Vec::new();
    for (i, _) in spans.iter().enumerate() {
        let j = match i {
            3 => 11,
            11 => 3,
            _ => i,
        };
        b.extend_from_slice(&good[spans[j].clone()]);
    }
    check(b, "entry at position 3 carries index 11");
    // swap two leaves but keep the index fields in order: the root betrays it
    let mut b = Vec::new();
    for (i, sp) in spans.iter().enumerate() {
        let j = match i {
            3 => 11,
            11 => 3,
            _ => i,
        };
        let leaf = &good[spans[j].start + 12..spans[j].end];
        b.extend_from_slice(&good[sp.start..sp.start + 8]);
        b.extend_from_slice(&(leaf.len() as u32).to_be_bytes());
        b.extend_from_slice(leaf);
    }
    check(b, "root mismatch at size 20");
    // truncate at an entry boundary, and inside an entry
    check(
        good[..spans[15].start].to_vec(),
        "log truncated: the checkpoint covers 20 entries but only 15 are present",
    );
    check(good[..spans[15].start + 20].to_vec(), "ends inside entry 15");
    // an entry appended beyond the checkpoint: not verified, not read, reported
    let mut b = good.clone();
    b.extend_from_slice(&good[spans[19].clone()]);
    b[spans[19].end + 7] = 20;
    std::fs::write(&path, &b).unwrap();
    let v = s.verify().unwrap();
    assert_eq!((v.size, v.left_over_bytes), (20, spans[19].len() as u64));
    std::fs::write(&path, &good).unwrap();
    assert_eq!(s.verify().unwrap().left_over_bytes, 0);
}

#[tokio::test]
async fn tampering_is_located_between_checkpoints() {
    let s = setup(10).await;
    s.fetch().await.unwrap();
    s.set(|f| {
        for i in 10..25 {
            f.log.append_record(&carin_record(i)).unwrap();
        }
    });
    s.fetch().await.unwrap();
    let path = entries_path(&s.dir);
    let mut b = std::fs::read(&path).unwrap();
    let spans = entry_spans(&b);
    // change the size field (a varint deep inside leaf 13) without breaking the record
    let leaf = &mut b[spans[13].start + 12..spans[13].end];
    let mut rec = focal_proto::audit::decode_record(leaf).unwrap();
    rec.size += 1;
    let new = focal_proto::audit::encode_record(&rec).unwrap();
    assert_eq!(new.len(), leaf.len());
    leaf.copy_from_slice(&new);
    std::fs::write(&path, &b).unwrap();
    let m = s.verify().unwrap_err().to_string();
    assert!(m.starts_with("entries 10..25 (changed, deleted or reordered; entries 0..10 match"), "{m}");
    assert!(m.contains("root mismatch at size 25"), "{m}");
}

#[tokio::test]
async fn flipped_checkpoint_bytes_fail() {
    let s = setup(5).await;
    s.fetch().await.unwrap();
    let cp = s.dir.join("checkpoints").join(format!("{:020}.note", 5));
    let good = std::fs::read(&cp).unwrap();
    for pos in 0..good.len() {
        let mut b = good.clone();
        b[pos] ^= 0x01;
        std::fs::write(&cp, &b).unwrap();
        assert!(s.verify().is_err(), "checkpoint byte {pos} changed but the log verified");
    }
    std::fs::write(&cp, &good).unwrap();
    s.verify().unwrap();
}

#[tokio::test]
async fn rollback_is_refused_by_fetch_and_verify() {
    let s = setup(40).await;
    s.fetch().await.unwrap();
    s.verify().unwrap();
    // the relay now presents a smaller, validly signed checkpoint
    s.set(|f| f.checkpoint_size = Some(30));
    let e = s.fetch().await.unwrap_err();
    assert!(matches!(e, AuditError::Verify(ProtoError::Rollback { seen_size: 40, new_size: 30 })), "{e}");
    // the same, offline: someone replaced the directory with the smaller log
    let tmp = tempfile::tempdir().unwrap();
    s.fetch_into(tmp.path()).await.unwrap();
    std::fs::remove_dir_all(s.dir.join("checkpoints")).unwrap();
    std::fs::copy(tmp.path().join("entries.bin"), entries_path(&s.dir)).unwrap();
    copy_files(&tmp.path().join("checkpoints"), &s.dir.join("checkpoints"));
    let m = s.verify().unwrap_err().to_string();
    assert!(
        m.starts_with(
            "rollback: the log presents a checkpoint of size 30, but a checkpoint of size 40 was seen before"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn a_forked_history_is_refused_and_named() {
    let s = setup(40).await;
    s.fetch().await.unwrap();
    // the relay rewrites entry 17 and re-signs with the same key, same size
    let (signer, forked) = {
        let f = s.fake.0.lock().unwrap();
        let mut leaves = f.log.leaves().to_vec();
        leaves[17] = focal_proto::audit::encode_record(&carin_record(1017)).unwrap();
        (f.signer.clone(), MemoryLog::from_leaves(leaves))
    };
    s.set(|f| f.log = forked.clone());
    let e = s.fetch().await.unwrap_err();
    assert!(
        e.to_string().starts_with("fork: two validly signed checkpoints of size 40 with different roots"),
        "{e}"
    );
    // ...and after growing: the consistency proof from 40 fails
    s.set(|f| {
        for i in 40..44 {
            f.log.append_record(&carin_record(i)).unwrap();
        }
    });
    let e = s.fetch().await.unwrap_err();
    assert!(
        e.to_string().contains("is not an extension of the checkpoint of size 40 accepted before"),
        "{e}"
    );

    // A second auditor fetches the forked history from scratch: on its own it
    // is self-consistent, so it verifies, unless witnesses are required —
    // the witness saw the real history and never cosigned this one.
    let tmp = tempfile::tempdir().unwrap();
    let second = tmp.path().join("second");
    s.fetch_into(&second).await.unwrap();
    audit::verify(&second, &s.key, &[], 0).unwrap();
    let w = WitnessSigner::from_pkcs8("focal/arinsa/relay", &NoteSigner::generate_pkcs8().unwrap()).unwrap();
    let witnesses = vec![("focal/arinsa/relay".to_string(), w.verifier_key())];
    let m = audit::verify(&second, &s.key, &witnesses, 1).unwrap_err().to_string();
    assert!(m.contains("witness cosignatures: 1 required, 0 valid"), "{m}");

    // Offline: the forked directory copied over the first auditor's one.
    std::fs::remove_dir_all(s.dir.join("checkpoints")).unwrap();
    std::fs::copy(second.join("entries.bin"), entries_path(&s.dir)).unwrap();
    copy_files(&second.join("checkpoints"), &s.dir.join("checkpoints"));
    let m = s.verify().unwrap_err().to_string();
    assert!(
        m.contains(
            "fork: the validly signed log of size 44 does not extend the checkpoint of size 40 seen before"
        ),
        "{m}"
    );
    // and with the genuine checkpoint file of size 40 still present, that file is named
    let genuine = {
        let mut log = MemoryLog::new();
        for i in 0..40 {
            log.append_record(&carin_record(i)).unwrap();
        }
        signer.sign_checkpoint(&log.head()).unwrap()
    };
    std::fs::write(s.dir.join("checkpoints").join(format!("{:020}.note", 40)), genuine).unwrap();
    let m = s.verify().unwrap_err().to_string();
    assert!(
        m.contains("00000000000000000040.note: fork: the validly signed log of size 44 does not extend"),
        "{m}"
    );
}

#[tokio::test]
async fn witness_cosignatures_are_kept_and_counted() {
    let s = setup(8).await;
    let w =
        Arc::new(WitnessSigner::from_pkcs8("focal/gfp/hub", &NoteSigner::generate_pkcs8().unwrap()).unwrap());
    s.set(|f| f.witness = Some(w.clone()));
    let r = s.fetch().await.unwrap();
    assert_eq!(r.cosignatures, 1);
    let witnesses = vec![("focal/gfp/hub".to_string(), w.verifier_key())];
    let v = audit::verify(&s.dir, &s.key, &witnesses, 1).unwrap();
    assert_eq!(v.cosignatures[0].witness, "focal/gfp/hub");
    assert_eq!(v.cosignatures[0].timestamp, 1_700_000_000);
    let m = audit::verify(&s.dir, &s.key, &witnesses, 2).unwrap_err().to_string();
    assert!(m.contains("2 required, 1 valid"), "{m}");
    let bad = vec![("someone/else".to_string(), w.verifier_key())];
    assert!(matches!(audit::verify(&s.dir, &s.key, &bad, 1), Err(AuditError::Invalid(_))));
}

#[tokio::test]
async fn trace_export_and_stats() {
    use pb::AuditKind as K;
    let carin = setup(0).await;
    let arinsa = setup_named(0, "focal/arinsa/relay").await;
    // message 0 at carin: accepted, forwarded; at arinsa: received, delivered, acked
    let id = msg(0);
    let at =
        |i: u64, kind, peer: &str, hop| pb::AuditRecord { msg_id: id.clone(), ..record(i, kind, peer, hop) };
    carin.set(|f| {
        f.log.append_record(&at(0, K::Accepted, "alice@carin", 0)).unwrap();
        f.log.append_record(&record(4, K::Accepted, "carol@carin", 0)).unwrap();
        f.log.append_record(&at(0, K::Forwarded, "relay.arinsa", 0)).unwrap();
        f.log.append_record(&record(5, K::Refused, "relay.arinsa", 1)).unwrap();
    });
    arinsa.set(|f| {
        f.log.append_record(&at(0, K::Received, "relay.carin", 1)).unwrap();
        f.log.append_record(&at(1, K::Delivered, "bob@arinsa", 1)).unwrap();
        f.log.append_record(&at(2, K::Acked, "bob@arinsa", 1)).unwrap();
    });
    carin.fetch().await.unwrap();
    arinsa.fetch().await.unwrap();
    let route =
        audit::trace(&[arinsa.dir.clone(), carin.dir.clone()], &id.clone().try_into().unwrap()).unwrap();
    let kinds: Vec<i32> = route.iter().map(|e| e.record.kind).collect();
    assert_eq!(kinds, [K::Accepted, K::Forwarded, K::Received, K::Delivered, K::Acked].map(|k| k as i32));
    assert_eq!(route[0].log, "focal/carin/relay");
    assert_eq!(route[0].index, 0);
    let line = route[1].to_string();
    assert!(line.contains("focal/carin/relay#2  forwarded hop 0  peer relay.arinsa"), "{line}");
    assert!(audit::trace(std::slice::from_ref(&carin.dir), &[0xee; 16]).unwrap().is_empty());

    let mut out = Vec::new();
    assert_eq!(audit::export(&carin.dir, ExportFormat::Jsonl, &mut out).unwrap(), 4);
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[2]["kind"], "forwarded");
    assert_eq!(lines[2]["msg_id"], hex::encode(&id));
    assert_eq!(lines[2]["recipients"][0], "bob@arinsa");
    assert_eq!(lines[3]["reason"], "policy");
    assert_eq!(lines[0]["time"], "2023-11-14T22:13:20.000Z");
    let mut out = Vec::new();
    audit::export(&carin.dir, ExportFormat::Csv, &mut out).unwrap();
    let csv = String::from_utf8(out).unwrap();
    assert!(csv.starts_with("index,time,time_ms,kind,msg_id,sender,recipients,peer,"), "{csv}");
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.lines().nth(2).unwrap().contains(",accepted,"));

    let st = audit::stats(&carin.dir).unwrap();
    assert_eq!(st.records, 4);
    assert_eq!(st.by_kind["accepted"], 2);
    assert_eq!(st.messages_per_peer["relay.arinsa"], 2);
    assert_eq!(st.refusals_by_reason["policy"], 1);
    let day = &st.per_day["2023-11-15"];
    assert_eq!((day.records, day.refusals), (2, 1));
    assert!(st.to_string().contains("messages per peer:"));
}

/// Exports, traces and counts the log in `dir`: (records exported, trace of
/// `id`, records counted).
fn reports(dir: &Path, id: &[u8]) -> (u64, usize, u64) {
    let exported = audit::export(dir, ExportFormat::Jsonl, &mut Vec::new()).unwrap();
    let traced = audit::trace(&[dir.to_owned()], id.try_into().unwrap()).unwrap().len();
    (exported, traced, audit::stats(dir).unwrap().records)
}

#[tokio::test]
async fn entries_not_matched_to_a_signed_root_are_never_reported() {
    let s = setup(10).await;
    s.fetch().await.unwrap();
    let accepted = std::fs::metadata(entries_path(&s.dir)).unwrap().len();
    // The relay grows its log, then lies about entry 12 (a message that never
    // was) and drops the connection after entry 14: entries 10..15 stay on
    // disk for a resume, matched to no signed root.
    let forged_id = [0xf0; 16];
    let forged = pb::AuditRecord { msg_id: forged_id.to_vec(), ..carin_record(12) };
    s.set(|f| {
        for i in 10..20 {
            f.log.append_record(&carin_record(i)).unwrap();
        }
        f.lie = Some((12, focal_proto::audit::encode_record(&forged).unwrap()));
        f.fail_after = Some(5);
    });
    assert!(matches!(s.fetch().await.unwrap_err(), AuditError::Rpc(_)));
    let total = std::fs::metadata(entries_path(&s.dir)).unwrap().len();
    assert!(total > accepted);
    // verify covers the accepted 10 and reports the rest
    let v = s.verify().unwrap();
    assert_eq!((v.size, v.left_over_bytes), (10, total - accepted));
    assert_eq!(audit::left_over_bytes(&s.dir).unwrap(), total - accepted);
    // trace, export and stats read only the accepted entries
    assert_eq!(reports(&s.dir, &forged_id), (10, 0, 10));
    // a torn tail changes nothing
    let mut f = std::fs::OpenOptions::new().append(true).open(entries_path(&s.dir)).unwrap();
    std::io::Write::write_all(&mut f, &[0, 0, 0, 0, 0, 0, 0, 15, 0]).unwrap();
    drop(f);
    assert_eq!(s.verify().unwrap().left_over_bytes, total - accepted + 9);
    assert_eq!(reports(&s.dir, &forged_id), (10, 0, 10));

    // The resume re-hashes the kept entries: the forged one fails the signed
    // root, so the file is cut back to what was accepted...
    s.set(|f| f.fail_after = None);
    let e = s.fetch().await.unwrap_err();
    assert!(e.to_string().contains("root mismatch at size 20"), "{e}");
    assert_eq!(std::fs::metadata(entries_path(&s.dir)).unwrap().len(), accepted);
    assert_eq!(s.verify().unwrap().left_over_bytes, 0);
    // ...and a later honest fetch gets everything.
    s.set(|f| f.lie = None);
    assert_eq!(s.fetch().await.unwrap().downloaded, 10);
    let v = s.verify().unwrap();
    assert_eq!((v.size, v.left_over_bytes), (20, 0));
    assert_eq!(reports(&s.dir, &forged_id), (20, 0, 20));
}

#[tokio::test]
async fn reports_need_an_accepted_checkpoint_and_stop_at_it() {
    let s = setup(6).await;
    // A download that failed before any checkpoint was accepted.
    s.set(|f| f.fail_after = Some(4));
    assert!(s.fetch().await.is_err());
    assert!(std::fs::metadata(entries_path(&s.dir)).unwrap().len() > 0);
    let e = audit::export(&s.dir, ExportFormat::Csv, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, AuditError::NotAccepted(_)), "{e}");
    assert!(e.to_string().contains("no accepted checkpoint"), "{e}");
    assert!(matches!(audit::stats(&s.dir), Err(AuditError::NotAccepted(_))));
    // The state file must match the entries it describes.
    s.set(|f| f.fail_after = None);
    s.fetch().await.unwrap();
    let state = s.dir.join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let mut st: serde_json::Value = serde_json::from_str(&text).unwrap();
    st["entries_bytes"] = serde_json::json!(st["entries_bytes"].as_u64().unwrap() - 1);
    std::fs::write(&state, st.to_string()).unwrap();
    let e = audit::stats(&s.dir).unwrap_err();
    assert!(e.to_string().contains("accepted entries end at byte"), "{e}");
    std::fs::write(&state, text).unwrap();
    assert_eq!(audit::stats(&s.dir).unwrap().records, 6);
}

#[tokio::test]
async fn a_cosignature_line_under_the_log_keys_name_is_refused_by_fetch() {
    let s = setup(5).await;
    s.fetch().await.unwrap();
    // The relay smuggles a line under its log key's name: here a
    // well-formed signature by the log key over other text.
    let line = {
        let f = s.fake.0.lock().unwrap();
        let note = f.signer.sign_note("something else\n").unwrap();
        note.split("\n\n").nth(1).unwrap().trim_end().to_owned()
    };
    s.set(|f| {
        f.log.append_record(&carin_record(5)).unwrap();
        f.extra_cosignatures = vec![line];
    });
    let e = s.fetch().await.unwrap_err();
    assert!(e.to_string().contains("log key's own name"), "{e}");
    // nothing was written: no checkpoint of size 6, no new entry
    assert!(!s.dir.join("checkpoints").join(format!("{:020}.note", 6)).exists());
    let v = s.verify().unwrap();
    assert_eq!((v.size, v.left_over_bytes), (5, 0));
    // a malformed line is refused as well
    s.set(|f| f.extra_cosignatures = vec!["— focal/gfp/hub not-base64".into()]);
    let e = s.fetch().await.unwrap_err();
    assert!(e.to_string().contains("malformed cosignature line"), "{e}");
    s.set(|f| f.extra_cosignatures.clear());
    assert_eq!(s.fetch().await.unwrap().new_size, 6);
}

#[tokio::test]
async fn exports_neutralise_formulas_and_keep_numbers_exact() {
    let s = setup(0).await;
    let hostile = pb::AuditRecord {
        sender: "=HYPERLINK(\"http://evil\",\"x\")@carin".into(),
        recipients: vec!["+1@arinsa".into(), "@SUM(A1)".into()],
        peer: "-2+3".into(),
        detail: "\t=cmd".into(),
        size: u64::MAX,
        time_ms: i64::MAX,
        hop: u32::MAX,
        ..carin_record(0)
    };
    s.set(|f| {
        f.log.append_record(&hostile).unwrap();
    });
    s.fetch().await.unwrap();
    let mut out = Vec::new();
    audit::export(&s.dir, ExportFormat::Csv, &mut out).unwrap();
    let csv = String::from_utf8(out).unwrap();
    let row = csv.lines().nth(1).unwrap();
    assert!(row.contains(",\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")@carin\","), "{row}");
    assert!(row.contains(",'+1@arinsa;@SUM(A1),'-2+3,"), "{row}");
    assert!(row.contains(",'\t=cmd,"), "{row}");
    assert!(row.contains(",18446744073709551615,"), "{row}");
    let mut out = Vec::new();
    audit::export(&s.dir, ExportFormat::Jsonl, &mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    assert!(line.contains("\"size\":18446744073709551615"), "{line}");
    assert!(line.contains("\"time_ms\":9223372036854775807"), "{line}");
    assert!(line.contains("\"hop\":4294967295"), "{line}");
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["size"].as_u64(), Some(u64::MAX));
    assert_eq!(v["sender"], hostile.sender.as_str());
}
