//! Tests of [`super::Witness`] and the requester side on real sled in
//! temporary directories: growth with proofs is cosigned, rollbacks,
//! forks, unproven growth and key substitution are refused, the state
//! survives a reopen, a forgotten log is pinned afresh (also after a
//! reopen), a peer claiming another relay's origin is refused, and our own
//! log stores a verified cosignature.

use focal_proto::audit::{LogKey, MemoryLog, NoteSigner, TreeHead, WitnessKey, verify_cosignatures};
use focal_proto::{NetworkId, Role, pb};

use super::*;
use crate::audit::testing::{append, record};
use crate::audit::{AuditLog, LogSigner};

fn log_of(n: u64, salt: &str) -> MemoryLog {
    let mut log = MemoryLog::new();
    for i in 0..n {
        let mut r = record(i);
        r.detail = salt.into();
        log.append_record(&r).unwrap();
    }
    log
}

/// A peer's log: key, signer, and signed checkpoints of a memory log.
struct Peer {
    signer: NoteSigner,
    key: LogKey,
}

impl Peer {
    fn new(origin: &str) -> Self {
        let signer = NoteSigner::from_pkcs8(origin, &NoteSigner::generate_pkcs8().unwrap()).unwrap();
        let key = LogKey::parse(&signer.verifier_key()).unwrap();
        Peer { signer, key }
    }

    fn request(&self, log: &MemoryLog, size: u64, old: u64) -> pb::CosignRequest {
        let head = TreeHead { size, root: log.root_at(size).unwrap() };
        let proof = if old == 0 { Vec::new() } else { log.consistency_proof(old, size).unwrap() };
        pb::CosignRequest {
            checkpoint_note: self.signer.sign_checkpoint(&head).unwrap(),
            consistency_proof: proof.iter().flat_map(|h| h.0).collect(),
            old_size: old,
        }
    }
}

/// The certificate identity of relay `name` of `network`.
fn relay_id(network: &str, name: &str) -> Identity {
    Identity::new(NetworkId::new(network).unwrap(), Role::Relay, name).unwrap()
}

/// The Hello of the relay with log `peer`, announcing `origin`.
fn hello_of(peer: &Peer, origin: &str) -> pb::Hello {
    pb::Hello {
        log_origin: origin.into(),
        log_key: hello_log_key(peer.key.as_str()).unwrap(),
        ..Default::default()
    }
}

fn open(dir: &std::path::Path) -> (sled::Db, Witness) {
    let db = sled::open(dir.join("sled")).unwrap();
    let tree = db.open_tree("focal").unwrap();
    let signer =
        Witness::load_or_create_key(&dir.join("witness.key"), "focal/arinsa/relay.arinsa/witness").unwrap();
    (db, Witness::open(tree, signer).unwrap())
}

fn ok(resp: &pb::CosignResponse) -> &str {
    assert!(resp.error.is_empty(), "refused: {}", resp.error);
    &resp.cosignature_line
}

fn refused<'a>(resp: &'a pb::CosignResponse, needle: &str) -> &'a str {
    assert!(resp.cosignature_line.is_empty(), "cosigned: {resp:?}");
    assert!(resp.error.contains(needle), "{:?} should mention {needle:?}", resp.error);
    &resp.error
}

#[tokio::test]
async fn cosigns_growth_and_refuses_rollback_fork_and_unproven_growth() {
    let tmp = tempfile::tempdir().unwrap();
    let (_db, w) = open(tmp.path());
    let peer = Peer::new("focal/carin/relay.carin");
    let log = log_of(40, "");
    let wkey = WitnessKey::parse(&w.verifier_key()).unwrap();

    // First contact (trust on first use), then growth with a proof.
    let r = w.cosign(&peer.key, &peer.request(&log, 10, 0), 1000).await;
    let line = ok(&r).to_owned();
    let note = add_cosignature(&peer.request(&log, 10, 0).checkpoint_note, &line).unwrap();
    assert_eq!(verify_cosignatures(&note, std::slice::from_ref(&wkey), 1).unwrap()[0].timestamp, 1000);
    ok(&w.cosign(&peer.key, &peer.request(&log, 25, 10), 1001).await);
    // The same head again is fine.
    ok(&w.cosign(&peer.key, &peer.request(&log, 25, 25), 1002).await);
    assert_eq!(w.head("focal/carin/relay.carin").unwrap().size, 25);

    // Rollback.
    refused(&w.cosign(&peer.key, &peer.request(&log, 20, 0), 1003).await, "rollback");
    // Fork at the same size.
    let other = log_of(40, "forked");
    refused(&w.cosign(&peer.key, &peer.request(&other, 25, 25), 1004).await, "different roots");
    // Fork at a larger size: the proof from 25 cannot link the roots.
    let mut forged = peer.request(&other, 30, 25);
    forged.consistency_proof = peer.request(&log, 30, 25).consistency_proof;
    refused(&w.cosign(&peer.key, &forged, 1005).await, "not an extension");
    // Growth without a proof.
    let mut unproven = peer.request(&log, 30, 25);
    unproven.consistency_proof.clear();
    refused(&w.cosign(&peer.key, &unproven, 1006).await, "not an extension");
    // A proof from another size: conflict, naming the size to use.
    let resp = w.cosign(&peer.key, &peer.request(&log, 30, 10), 1007).await;
    refused(&resp, CONFLICT_PREFIX);
    assert_eq!(conflict_size(&resp), Some(25));
    // A checkpoint not signed by the origin's key.
    let impostor = Peer::new("focal/carin/relay.carin");
    refused(&w.cosign(&peer.key, &impostor.request(&log, 30, 25), 1008).await, "signature");
    // The same origin under another key: refused (pinned).
    refused(&w.cosign(&impostor.key, &impostor.request(&log, 30, 25), 1009).await, "was witnessed with key");
    // Nothing refused moved the state.
    assert_eq!(w.head("focal/carin/relay.carin").unwrap().size, 25);
    // Other origins are independent.
    let arin = Peer::new("focal/arin-wa/relay.arin-wa");
    ok(&w.cosign(&arin.key, &arin.request(&other, 5, 0), 1010).await);
}

#[tokio::test]
async fn a_forgotten_log_is_pinned_afresh_and_stays_forgotten_after_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = "focal/carin/relay.carin";
    let (old_peer, new_peer) = (Peer::new(origin), Peer::new(origin));
    let other = Peer::new("focal/gfp/relay.gfp");
    let (old_log, new_log) = (log_of(30, ""), log_of(5, "a new log"));
    {
        let (_db, w) = open(tmp.path());
        ok(&w.cosign(&old_peer.key, &old_peer.request(&old_log, 30, 0), 1000).await);
        ok(&w.cosign(&other.key, &other.request(&old_log, 7, 0), 1000).await);
        // The relay starts a new log under a new key: refused while pinned.
        refused(
            &w.cosign(&new_peer.key, &new_peer.request(&new_log, 5, 0), 1001).await,
            "was witnessed with key",
        );
        assert_eq!(w.forget("focal/arin-wa/relay.arin-wa").await.unwrap(), None, "nothing pinned");
        let (key, head) = w.forget(origin).await.unwrap().expect("pinned");
        assert_eq!((key.as_str(), head.size), (old_peer.key.as_str(), 30));
        assert_eq!(w.head(origin), None);
        let pinned: Vec<String> = w.pinned().into_iter().map(|(o, _, _)| o).collect();
        assert_eq!(pinned, ["focal/gfp/relay.gfp"], "other logs stay pinned");
    }
    // Durable: after a reopen the new log's first checkpoint is pinned.
    let (_db, w) = open(tmp.path());
    assert_eq!(w.head(origin), None);
    ok(&w.cosign(&new_peer.key, &new_peer.request(&new_log, 5, 0), 1002).await);
    refused(
        &w.cosign(&old_peer.key, &old_peer.request(&old_log, 30, 0), 1003).await,
        "was witnessed with key",
    );
    assert_eq!(w.head("focal/gfp/relay.gfp").unwrap().size, 7);
}

/// A peer re-sending the checkpoint this witness already cosigned gets the
/// cosignature without another fsync (each cost a full store sync); a
/// request that moves the state still waits for one.
#[tokio::test]
async fn a_repeated_checkpoint_costs_no_fsync_but_growth_does() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("sled")).unwrap();
    let files = crate::store::durable::SledFiles::open(&tmp.path().join("sled")).unwrap();
    let signer =
        Witness::load_or_create_key(&tmp.path().join("witness.key"), "focal/arinsa/relay.arinsa/witness")
            .unwrap();
    let w = Witness::open(db.open_tree("focal").unwrap(), signer).unwrap().with_durable_files(files.clone());
    let peer = Peer::new("focal/carin/relay.carin");
    let log = log_of(20, "");
    ok(&w.cosign(&peer.key, &peer.request(&log, 10, 0), 1000).await);
    // The next fsync would fail: the repeat must not need one.
    files.fail_next_sync();
    ok(&w.cosign(&peer.key, &peer.request(&log, 10, 10), 1001).await);
    refused(&w.cosign(&peer.key, &peer.request(&log, 15, 10), 1002).await, "not persisted");
    // The head moved in the tree and memory but was not made durable: the
    // same request again still owes the fsync, which now succeeds.
    ok(&w.cosign(&peer.key, &peer.request(&log, 15, 15), 1003).await);
}

#[tokio::test]
async fn state_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = Peer::new("focal/carin/relay.carin");
    let log = log_of(30, "");
    let vkey;
    {
        let (db, w) = open(tmp.path());
        vkey = w.verifier_key();
        ok(&w.cosign(&peer.key, &peer.request(&log, 12, 0), 1).await);
        ok(&w.cosign(&peer.key, &peer.request(&log, 20, 12), 2).await);
        drop(w);
        drop(db);
    }
    let (_db, w) = open(tmp.path());
    assert_eq!(w.verifier_key(), vkey, "the witness key is kept");
    assert_eq!(
        w.head("focal/carin/relay.carin"),
        Some(TreeHead { size: 20, root: log.root_at(20).unwrap() })
    );
    refused(&w.cosign(&peer.key, &peer.request(&log, 12, 0), 3).await, "rollback");
    let other = log_of(30, "forked");
    refused(&w.cosign(&peer.key, &peer.request(&other, 20, 20), 4).await, "different roots");
    let impostor = Peer::new("focal/carin/relay.carin");
    refused(&w.cosign(&impostor.key, &impostor.request(&log, 25, 20), 5).await, "was witnessed with key");
    ok(&w.cosign(&peer.key, &peer.request(&log, 30, 20), 6).await);
}

#[tokio::test]
async fn hello_keys_round_trip() {
    let peer = Peer::new("focal/carin/relay.carin");
    let raw = hello_log_key(peer.key.as_str()).unwrap();
    let hello =
        pb::Hello { log_origin: "focal/carin/relay.carin".into(), log_key: raw, ..Default::default() };
    assert_eq!(peer_log_key(&hello).unwrap().as_str(), peer.key.as_str());
    let bad = pb::Hello { log_key: vec![1, 2, 3], ..hello.clone() };
    assert!(peer_log_key(&bad).unwrap_err().to_string().contains("3 bytes"));

    let tmp = tempfile::tempdir().unwrap();
    let (_db, w) = open(tmp.path());
    let log = log_of(3, "");
    let carin = relay_id("carin", "relay.carin");
    ok(&w.cosign_for_peer(&carin, &hello, &peer.request(&log, 3, 0)).await);
    // A Hello whose key is not the one that signed: refused.
    let other = Peer::new("focal/carin/relay.carin");
    let hello2 = pb::Hello { log_key: hello_log_key(other.key.as_str()).unwrap(), ..hello };
    refused(&w.cosign_for_peer(&carin, &hello2, &peer.request(&log, 3, 0)).await, "signature");
}

/// Trust on first use pins the first key seen for an origin, so the origin
/// must come from the peer's certificate, not from what its Hello claims:
/// otherwise a relay of another network that connects first takes over the
/// GFP relay's origin and the witness refuses the real GFP from then on.
#[tokio::test]
async fn a_peer_cannot_claim_another_relays_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let (_db, w) = open(tmp.path());
    let gfp_origin = "focal/gfp/relay-gfp";
    let log = log_of(8, "");
    let rogue = Peer::new(gfp_origin); // its own key, under the GFP relay's origin
    let rogue_hello = hello_of(&rogue, gfp_origin);
    for rogue_id in [relay_id("carin", "relay-carin"), relay_id("gfp", "relay-gfp-2")] {
        let resp = w.cosign_for_peer(&rogue_id, &rogue_hello, &rogue.request(&log, 5, 0)).await;
        let e = refused(&resp, "may not speak for another log");
        let own = format!("focal/{}/{}", rogue_id.network, rogue_id.name);
        assert!(e.contains(&rogue_id.uri()) && e.contains(gfp_origin) && e.contains(&own), "{e}");
        // Its witness key is not taken under that name either.
        let with_wkey = pb::Hello { witness_key: vec![7; 32], ..rogue_hello.clone() };
        assert!(peer_witness_key(&rogue_id, &with_wkey).unwrap_err().to_string().contains(gfp_origin));
    }
    assert_eq!(w.head(gfp_origin), None, "nothing was pinned for the GFP relay's origin");

    // The genuine GFP relay is then cosigned, under the origin its certificate gives.
    let gfp = Peer::new(gfp_origin);
    let gfp_id = relay_id("gfp", "relay-gfp");
    ok(&w.cosign_for_peer(&gfp_id, &hello_of(&gfp, gfp_origin), &gfp.request(&log, 5, 0)).await);
    ok(&w.cosign_for_peer(&gfp_id, &hello_of(&gfp, gfp_origin), &gfp.request(&log, 8, 5)).await);
    assert_eq!(w.head(gfp_origin).unwrap().size, 8);
    let with_wkey = pb::Hello { witness_key: vec![7; 32], ..hello_of(&gfp, gfp_origin) };
    let wkey = peer_witness_key(&gfp_id, &with_wkey).unwrap().unwrap();
    assert_eq!(wkey.witness_name(), "focal/gfp/relay-gfp/witness");
    // And the rogue's own origin is its own to use.
    let carin = Peer::new("focal/carin/relay-carin");
    let carin_id = relay_id("carin", "relay-carin");
    let carin_hello = hello_of(&carin, "focal/carin/relay-carin");
    ok(&w.cosign_for_peer(&carin_id, &carin_hello, &carin.request(&log, 3, 0)).await);
}

#[tokio::test]
async fn our_log_stores_verified_cosignatures() {
    let tmp = tempfile::tempdir().unwrap();
    // Our relay (carin) with a real audit log in sled.
    let db = sled::open(tmp.path().join("carin")).unwrap();
    let tree = db.open_tree("focal").unwrap();
    let signer =
        LogSigner::load_or_create(&tmp.path().join("audit-log.key"), "focal/carin/relay.carin").unwrap();
    let mut log = AuditLog::open(tree.clone(), signer).unwrap();
    let reader = log.reader();
    append(&mut log, &tree, 0..7);
    let cp1 = log.checkpoint(1_000, true).unwrap();

    // The peer (arinsa) witnesses it.
    let wdir = tmp.path().join("arinsa");
    std::fs::create_dir_all(&wdir).unwrap();
    let (_wdb, w) = open(&wdir);
    let wkey = WitnessKey::parse(&w.verifier_key()).unwrap();
    let carin = relay_id("carin", "relay.carin");
    let hello = pb::Hello {
        log_origin: reader.origin().into(),
        log_key: hello_log_key(&reader.verifier_key()).unwrap(),
        ..Default::default()
    };

    let old = reader.last_cosigned(wkey.witness_name()).unwrap().unwrap_or(0);
    assert_eq!(old, 0);
    let resp = w.cosign_for_peer(&carin, &hello, &cosign_request(&reader, &cp1, old).unwrap()).await;
    let c = accept_cosignature(&reader, &cp1.note, &resp, &wkey).unwrap();
    assert_eq!(c.witness, wkey.witness_name());
    assert_eq!(reader.last_cosigned(wkey.witness_name()).unwrap(), Some(7));
    let info = reader.info().unwrap();
    assert_eq!(info.cosignatures.len(), 1);

    // Growth: the request carries a proof from the size last cosigned.
    append(&mut log, &tree, 7..19);
    let cp2 = log.checkpoint(5_000, true).unwrap();
    // A stale old_size gets a conflict naming the right one; the retry works.
    let resp = w.cosign_for_peer(&carin, &hello, &cosign_request(&reader, &cp2, 3).unwrap()).await;
    let size = conflict_size(&resp).expect("conflict");
    assert_eq!(size, 7);
    let resp = w.cosign_for_peer(&carin, &hello, &cosign_request(&reader, &cp2, size).unwrap()).await;
    accept_cosignature(&reader, &cp2.note, &resp, &wkey).unwrap();
    assert_eq!(reader.last_cosigned(wkey.witness_name()).unwrap(), Some(19));
    // The index keeps the largest size whatever the order lines are stored
    // in, and is per witness.
    reader.add_cosignature(11, wkey.witness_name(), "— late line").unwrap();
    assert_eq!(reader.last_cosigned(wkey.witness_name()).unwrap(), Some(19));
    assert_eq!(reader.last_cosigned("focal/gfp/relay.gfp/witness").unwrap(), None);
    let info = reader.info().unwrap();
    let mut note = info.checkpoint.unwrap().note;
    for l in &info.cosignatures {
        note = add_cosignature(&note, l).unwrap();
    }
    verify_cosignatures(&note, std::slice::from_ref(&wkey), 1).unwrap();

    // Refused: a cosignature of another note, a bad line, a refusal, another witness's key.
    let mut bad = ok(&resp).trim_end().to_owned();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let flipped = pb::CosignResponse { cosignature_line: bad, error: String::new() };
    assert!(accept_cosignature(&reader, &cp2.note, &flipped, &wkey).is_err());
    let stale = w.cosign_for_peer(&carin, &hello, &cosign_request(&reader, &cp1, 0).unwrap()).await;
    let e = accept_cosignature(&reader, &cp1.note, &stale, &wkey).unwrap_err().to_string();
    assert!(e.contains("refused to cosign") && e.contains("rollback"), "{e}");
    let stranger = WitnessKey::parse(
        &Witness::load_or_create_key(&tmp.path().join("other.key"), wkey.witness_name())
            .unwrap()
            .verifier_key(),
    )
    .unwrap();
    let e = accept_cosignature(&reader, &cp2.note, &resp, &stranger).unwrap_err().to_string();
    assert!(e.contains("witness"), "{e}");
    let foreign = Peer::new("focal/carin/relay.carin");
    let e = accept_cosignature(&reader, &foreign.request(&log_of(3, ""), 3, 0).checkpoint_note, &resp, &wkey)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a checkpoint of this log"), "{e}");
}
