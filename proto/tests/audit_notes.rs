//! Audit records, signed checkpoints and witness cosignatures: encoding
//! rules, signing with ring checked by signed_note (ed25519-dalek), and
//! every flipped byte of a checkpoint or signature refused.

use focal_proto::ProtoError;
use focal_proto::audit::{
    CheckpointBody, Hash, LogKey, MAX_LEAF_BYTES, MemoryLog, NoteSigner, TreeHead, WitnessKey, WitnessSigner,
    WitnessState, add_cosignature, decode_record, encode_record, note_signatures, verify_cosignatures,
};
use focal_proto::pb;
use prost::Message;

const ORIGIN: &str = "focal/carin/relay.carin";

fn record(i: u8) -> pb::AuditRecord {
    pb::AuditRecord {
        version: 1,
        kind: pb::AuditKind::Accepted as i32,
        time_ms: 1_700_000_000_000 + i64::from(i),
        msg_id: vec![i; 16],
        sender: "alice@carin".into(),
        recipients: vec!["bob@arinsa".into()],
        peer: "relay.arinsa".into(),
        payload_sha256: vec![7; 32],
        size: 1234,
        handling: pb::HandlingCode::H2 as i32,
        hop: 1,
        reason: 0,
        detail: String::new(),
        priority: pb::Priority::Normal as i32,
    }
}

fn signer(name: &str) -> NoteSigner {
    NoteSigner::from_pkcs8(name, &NoteSigner::generate_pkcs8().unwrap()).unwrap()
}

fn witness(name: &str) -> WitnessSigner {
    WitnessSigner::from_pkcs8(name, &NoteSigner::generate_pkcs8().unwrap()).unwrap()
}

#[test]
fn records_round_trip_and_must_be_canonical() {
    let r = record(1);
    let leaf = encode_record(&r).unwrap();
    assert_eq!(decode_record(&leaf).unwrap(), r);

    // an unknown field appended: decodes with prost, but is not canonical
    let mut extra = leaf.clone();
    extra.extend_from_slice(&[0xf8, 0x01, 0x01]); // field 31, varint 1
    assert!(matches!(decode_record(&extra), Err(ProtoError::AuditRecord(m)) if m.contains("canonical")));
    // the same field twice (last one wins in protobuf): not canonical
    let mut twice = leaf.clone();
    twice.extend_from_slice(&pb::AuditRecord { size: 1234, ..Default::default() }.encode_to_vec());
    assert!(decode_record(&twice).is_err());
    // a default value written explicitly: not canonical
    let mut explicit = vec![0x60, 0x00]; // field 12 (reason) = 0
    explicit.extend_from_slice(&leaf);
    assert!(decode_record(&explicit).is_err());

    let bad = |f: fn(&mut pb::AuditRecord), what: &str| {
        let mut r = record(2);
        f(&mut r);
        let e = encode_record(&r).unwrap_err().to_string();
        assert!(e.contains(what), "{e} should mention {what}");
        assert!(decode_record(&r.encode_to_vec()).is_err());
    };
    bad(|r| r.version = 2, "version 2");
    bad(|r| r.kind = 0, "unspecified");
    bad(|r| r.kind = 99, "unknown kind");
    bad(|r| r.msg_id = vec![1; 15], "msg id");
    bad(|r| r.payload_sha256 = vec![1; 31], "digest");
    bad(|r| r.handling = 42, "handling");
    bad(|r| r.detail = "x".repeat(MAX_LEAF_BYTES + 1), "exceeds");
    assert!(decode_record(b"\xff\xff").is_err());
}

#[test]
fn checkpoints_sign_with_ring_and_verify_with_signed_note() {
    let s = signer(ORIGIN);
    let key = LogKey::parse(&s.verifier_key()).unwrap();
    assert_eq!(key.name(), ORIGIN);
    let mut log = MemoryLog::new();
    for i in 0..5 {
        log.append_record(&record(i)).unwrap();
    }
    let note = s.sign_checkpoint(&log.head()).unwrap();
    let text = format!("{ORIGIN}\n5\n{}\n\n", log.head().root);
    assert!(note.starts_with(&text), "{note}");
    let cp = key.verify_checkpoint(&note).unwrap();
    assert_eq!(cp.head(), log.head());
    assert_eq!(cp.text(), &text[..text.len() - 1]);

    // other key of the same name; other name
    let other = LogKey::parse(&signer(ORIGIN).verifier_key()).unwrap();
    let e = other.verify_checkpoint(&note).unwrap_err();
    assert!(
        matches!(e, ProtoError::CheckpointSignature(ref m) if m.contains("no signature by the log key")),
        "{e}"
    );
    let s2 = signer("focal/arinsa/relay");
    let e = key.verify_checkpoint(&s2.sign_checkpoint(&log.head()).unwrap()).unwrap_err();
    assert!(e.to_string().contains("is not the log key's name"), "{e}");
    // empty tree
    let empty = s.sign_checkpoint(&MemoryLog::new().head()).unwrap();
    assert_eq!(key.verify_checkpoint(&empty).unwrap().head().size, 0);
    assert!(LogKey::parse("nonsense").is_err());
    assert!(NoteSigner::from_pkcs8("has space", &NoteSigner::generate_pkcs8().unwrap()).is_err());
    assert!(NoteSigner::from_pkcs8(ORIGIN, b"not a key").is_err());
}

#[test]
fn every_flipped_byte_of_a_checkpoint_fails() {
    let s = signer(ORIGIN);
    let key = LogKey::parse(&s.verifier_key()).unwrap();
    let log = MemoryLog::from_leaves((0..9u8).map(|i| encode_record(&record(i)).unwrap()));
    let note = s.sign_checkpoint(&log.head()).unwrap();
    key.verify_checkpoint(&note).unwrap();
    let bytes = note.as_bytes();
    for pos in 0..bytes.len() {
        for mask in [0x01u8, 0x02, 0x20, 0x80] {
            let mut b = bytes.to_vec();
            b[pos] ^= mask;
            let Ok(text) = String::from_utf8(b) else { continue };
            assert!(key.verify_checkpoint(&text).is_err(), "flip {mask:#x} at {pos} accepted:\n{text}");
        }
    }
    // truncated or extended
    for cut in 0..bytes.len() {
        if note.is_char_boundary(cut) {
            assert!(key.verify_checkpoint(&note[..cut]).is_err(), "cut at {cut}");
        }
    }
}

#[test]
fn checkpoint_body_parse_rules() {
    let root = Hash([9; 32]);
    let body = CheckpointBody { origin: ORIGIN.into(), size: 42, root };
    let text = body.to_text().unwrap();
    assert_eq!(CheckpointBody::parse(text.as_bytes()).unwrap(), body);
    assert!(CheckpointBody::parse(format!("{ORIGIN}\n042\n{root}\n").as_bytes()).is_err());
    assert!(CheckpointBody::parse(format!("{ORIGIN}\n-1\n{root}\n").as_bytes()).is_err());
    assert!(CheckpointBody::parse(format!("{ORIGIN}\n42\n{root}").as_bytes()).is_err());
    assert!(CheckpointBody::parse(b"\n42\nAAAA\n").is_err());
}

#[test]
fn cosignatures_verify_count_and_refuse_flips() {
    let s = signer(ORIGIN);
    let key = LogKey::parse(&s.verifier_key()).unwrap();
    let log = MemoryLog::from_leaves((0..3u8).map(|i| encode_record(&record(i)).unwrap()));
    let note = s.sign_checkpoint(&log.head()).unwrap();
    let cp = key.verify_checkpoint(&note).unwrap();
    let (w1, w2, w3) = (witness("focal/arinsa/relay"), witness("focal/gfp/hub"), witness("focal/x/y"));
    let keys: Vec<WitnessKey> =
        [&w1, &w2, &w3].iter().map(|w| WitnessKey::parse(&w.verifier_key()).unwrap()).collect();

    let mut cosigned = note.clone();
    for (w, ts) in [(&w1, 1_700_000_001u64), (&w2, 1_700_000_002)] {
        cosigned = add_cosignature(&cosigned, &w.cosign(cp.text(), ts).unwrap()).unwrap();
    }
    key.verify_checkpoint(&cosigned).unwrap();
    let got = verify_cosignatures(&cosigned, &keys, 2).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].timestamp, 1_700_000_001);
    let e = verify_cosignatures(&cosigned, &keys, 3).unwrap_err();
    assert!(matches!(e, ProtoError::Witness(ref m) if m.contains("3 required, 2 valid")), "{e}");
    assert_eq!(note_signatures(&cosigned).unwrap().len(), 3);
    // re-cosigning replaces the witness's earlier line
    let again = add_cosignature(&cosigned, &w1.cosign(cp.text(), 1_700_000_009).unwrap()).unwrap();
    assert_eq!(note_signatures(&again).unwrap().len(), 3);

    // a cosignature is bound to the checkpoint body
    let other = s.sign_checkpoint(&TreeHead { size: 2, root: log.root_at(2).unwrap() }).unwrap();
    let misplaced = add_cosignature(&other, &w3.cosign(cp.text(), 5).unwrap()).unwrap();
    assert!(verify_cosignatures(&misplaced, &keys, 1).is_err());

    let bytes = cosigned.as_bytes();
    for pos in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[pos] ^= 0x01;
        let Ok(text) = String::from_utf8(b) else { continue };
        let ok = key.verify_checkpoint(&text).is_ok() && verify_cosignatures(&text, &keys, 2).is_ok();
        assert!(!ok, "flip at {pos} accepted");
    }
}

#[test]
fn cosignature_wire_format() {
    // From the C2SP tlog-cosignature example: key id || u64 BE timestamp || sig.
    let line = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
    let b64 = line.rsplit(' ').next().unwrap();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(raw.len(), 4 + 8 + 64);
    assert_eq!(u64::from_be_bytes(raw[4..12].try_into().unwrap()), 1_679_315_147);

    let w = witness("witness.example.com/w1");
    let vkey = w.verifier_key();
    let (_, rest) = vkey.split_once('+').unwrap();
    let (_, material) = rest.split_once('+').unwrap();
    let material = base64::engine::general_purpose::STANDARD.decode(material).unwrap();
    assert_eq!(material[0], 0x04);
    let ours = w
        .cosign(
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            1_679_315_147,
        )
        .unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(ours.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    assert_eq!(raw.len(), 76);
    assert_eq!(&raw[4..12], &1_679_315_147u64.to_be_bytes());
    assert!(WitnessKey::parse(&vkey).is_ok());
    assert!(WitnessKey::parse(&signer("x").verifier_key()).is_err(), "a 0x01 key is not a cosignature key");
}

#[test]
fn witness_state_refuses_rollback_fork_and_unproven_growth() {
    let s = signer(ORIGIN);
    let key = LogKey::parse(&s.verifier_key()).unwrap();
    let w = witness("focal/arinsa/relay");
    let wk = WitnessKey::parse(&w.verifier_key()).unwrap();
    let mut log = MemoryLog::new();
    for i in 0..10 {
        log.append_record(&record(i)).unwrap();
    }
    let mut st = WitnessState::new();
    let n10 = s.sign_checkpoint(&log.head()).unwrap();
    let line = st.cosign(&w, &key, &n10, 0, &[], 100).unwrap();
    verify_cosignatures(&add_cosignature(&n10, &line).unwrap(), &[wk], 1).unwrap();
    assert_eq!(st.head(ORIGIN).unwrap().size, 10);

    for i in 10..15 {
        log.append_record(&record(i)).unwrap();
    }
    let n15 = s.sign_checkpoint(&log.head()).unwrap();
    let e = st.cosign(&w, &key, &n15, 0, &[], 101).unwrap_err();
    assert!(e.to_string().contains("last cosigned focal/carin/relay.carin at size 10"), "{e}");
    let proof = log.consistency_proof(10, 15).unwrap();
    let mut bad = proof.clone();
    bad[0].0[0] ^= 1;
    assert!(matches!(st.cosign(&w, &key, &n15, 10, &bad, 101), Err(ProtoError::Fork(_))));
    st.cosign(&w, &key, &n15, 10, &proof, 101).unwrap();

    // rollback to 10
    assert!(matches!(
        st.cosign(&w, &key, &n10, 15, &[], 102),
        Err(ProtoError::Rollback { seen_size: 15, new_size: 10 })
    ));
    // fork: another history of size 15 signed by the same key
    let mut forked = MemoryLog::new();
    for i in 0..15 {
        forked.append_record(&record(if i == 3 { 200 } else { i })).unwrap();
    }
    let f15 = s.sign_checkpoint(&forked.head()).unwrap();
    let e = st.cosign(&w, &key, &f15, 15, &[], 103).unwrap_err();
    assert!(matches!(e, ProtoError::Fork(ref m) if m.contains("two different roots for size 15")), "{e}");
    forked.append_record(&record(99)).unwrap();
    let f16 = s.sign_checkpoint(&forked.head()).unwrap();
    let p = forked.consistency_proof(15, 16).unwrap();
    assert!(matches!(st.cosign(&w, &key, &f16, 15, &p, 104), Err(ProtoError::Fork(_))));
    // a checkpoint not signed by the log key
    assert!(
        st.cosign(&w, &key, &signer(ORIGIN).sign_checkpoint(&log.head()).unwrap(), 15, &[], 105).is_err()
    );
    assert_eq!(st.head(ORIGIN).unwrap().size, 15);
}

/// A cosigned checkpoint: (log signer, log key, note, checkpoint text).
fn checkpoint_note() -> (NoteSigner, LogKey, String, String) {
    let s = signer(ORIGIN);
    let key = LogKey::parse(&s.verifier_key()).unwrap();
    let log = MemoryLog::from_leaves((0..3u8).map(|i| encode_record(&record(i)).unwrap()));
    let note = s.sign_checkpoint(&log.head()).unwrap();
    let text = key.verify_checkpoint(&note).unwrap().text().to_owned();
    (s, key, note, text)
}

#[test]
fn add_cosignature_refuses_malformed_lines_and_the_log_keys_name() {
    let (s, key, note, text) = checkpoint_note();
    let w = witness("focal/arinsa/relay");
    let good = w.cosign(&text, 7).unwrap();
    add_cosignature(&note, &good).unwrap();
    let b64 = good.trim_end().rsplit(' ').next().unwrap().to_owned();
    for bad in [
        String::new(),
        "\n".into(),
        format!("focal/arinsa/relay {b64}"),              // no em dash
        format!("- focal/arinsa/relay {b64}"),            // ASCII dash
        format!("—  focal/arinsa/relay {b64}"),           // two spaces
        format!("— focal/arinsa/relay {b64} "),           // trailing space
        format!("— focal/arinsa/relay {b64}\r"),          // CR
        format!("— focal/arinsa/relay {b64}\n\n"),        // two newlines
        format!("— focal/arinsa/relay {b64}\n— x {b64}"), // two lines
        format!("— focal/arinsa/relay {}", &b64[..b64.len() - 2]), // base64 cut
        format!("— focal/ar\u{1}insa/relay {b64}"),       // control character in the name
        "— focal/arinsa/relay AAAA".into(),               // shorter than a key id and a signature
        format!("— focal+arinsa {b64}"),                  // '+' in the name
    ] {
        let e = add_cosignature(&note, &bad).expect_err(&format!("{bad:?} accepted"));
        assert!(e.to_string().contains("malformed cosignature line"), "{bad:?}: {e}");
    }

    // A line under the log key's name: with its key id (a second log
    // signature, here over other text) or another id.
    let own = s.sign_note("other text\n").unwrap();
    let own_line = own.split("\n\n").nth(1).unwrap();
    assert!(own_line.starts_with(&format!("— {ORIGIN} ")), "{own_line}");
    let e = add_cosignature(&note, own_line).unwrap_err();
    assert!(matches!(e, ProtoError::Witness(ref m) if m.contains("log key's own name")), "{e}");
    let other = signer(ORIGIN).sign_checkpoint(&key.verify_checkpoint(&note).unwrap().head()).unwrap();
    let e = add_cosignature(&note, other.split("\n\n").nth(1).unwrap()).unwrap_err();
    assert!(e.to_string().contains("log key's own name"), "{e}");
    let w_as_log = witness(ORIGIN).cosign(&text, 7).unwrap();
    assert!(add_cosignature(&note, &w_as_log).unwrap_err().to_string().contains("log key's own name"));
}

#[test]
fn a_second_log_key_line_must_verify_too() {
    let (s, key, note, _) = checkpoint_note();
    let own = s.sign_note("other text\n").unwrap();
    let smuggled = format!("{note}{}", own.split("\n\n").nth(1).unwrap());
    let e = key.verify_checkpoint(&smuggled).unwrap_err();
    assert!(e.to_string().contains("a second signature line by the log key"), "{e}");
    // the same good line twice is harmless
    let twice = format!("{note}{}", note.split("\n\n").nth(1).unwrap());
    key.verify_checkpoint(&twice).unwrap();
}

#[test]
fn notes_beyond_the_limits_are_refused_naming_the_limit() {
    let (_, key, note, text) = checkpoint_note();
    let ws: Vec<WitnessSigner> = (0..100).map(|i| witness(&format!("focal/w{i}/relay"))).collect();
    let keys: Vec<WitnessKey> = ws.iter().map(|w| WitnessKey::parse(&w.verifier_key()).unwrap()).collect();
    let mut cosigned = note.clone();
    for w in &ws[..99] {
        cosigned = add_cosignature(&cosigned, &w.cosign(&text, 1).unwrap()).unwrap();
    }
    // 100 lines: the log's and 99 cosignatures.
    key.verify_checkpoint(&cosigned).unwrap();
    assert_eq!(verify_cosignatures(&cosigned, &keys, 99).unwrap().len(), 99);
    let e = add_cosignature(&cosigned, &ws[99].cosign(&text, 1).unwrap()).unwrap_err();
    assert!(e.to_string().contains("101 signature lines exceeds the limit of 100"), "{e}");
    let over = format!("{cosigned}{}", ws[99].cosign(&text, 1).unwrap());
    for e in [key.verify_checkpoint(&over).unwrap_err(), verify_cosignatures(&over, &keys, 1).unwrap_err()] {
        assert!(e.to_string().contains("101 signature lines exceeds the limit of 100"), "{e}");
    }
    assert!(note_signatures(&over).unwrap_err().to_string().contains("limit of 100"));
    // More than 1 MB: an extension line in the body.
    let (body, sigs) = note.split_once("\n\n").unwrap();
    let big = format!("{body}\n{}\n\n{sigs}", "x".repeat(1_000_000));
    let e = key.verify_checkpoint(&big).unwrap_err();
    assert!(e.to_string().contains("bytes exceeds the limit of 1000000 bytes"), "{e}");
}

#[test]
fn every_line_of_a_configured_witness_is_checked_and_counts_once() {
    let (_, key, note, text) = checkpoint_note();
    let (w1, w2) = (witness("focal/arinsa/relay"), witness("focal/gfp/hub"));
    let k1 = WitnessKey::parse(&w1.verifier_key()).unwrap();
    let k2 = WitnessKey::parse(&w2.verifier_key()).unwrap();
    let good = w1.cosign(&text, 10).unwrap();
    // Well-formed, by w1's key, over another checkpoint: does not verify.
    let bad =
        w1.cosign("focal/carin/relay.carin\n9\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 11).unwrap();
    for (first, second) in [(&good, &bad), (&bad, &good)] {
        let n = format!("{note}{first}{second}");
        key.verify_checkpoint(&n).unwrap();
        let e = verify_cosignatures(&n, std::slice::from_ref(&k1), 1).unwrap_err();
        assert!(e.to_string().contains("cosignature by witness focal/arinsa/relay+"), "{e}");
        assert!(e.to_string().contains("does not verify"), "{e}");
        // a witness not configured is not checked
        verify_cosignatures(&n, std::slice::from_ref(&k2), 0).unwrap();
    }
    // Two valid lines of one witness, and one witness configured twice: one vote.
    let again = w1.cosign(&text, 12).unwrap();
    let n = format!("{note}{good}{again}");
    let got = verify_cosignatures(&n, &[k1.clone(), k1.clone()], 1).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].timestamp, 10);
    let e = verify_cosignatures(&n, &[k1.clone(), k1.clone()], 2).unwrap_err();
    assert!(e.to_string().contains("2 required, 1 valid from the 1 configured witnesses"), "{e}");
    let n = add_cosignature(&n, &w2.cosign(&text, 13).unwrap()).unwrap();
    assert_eq!(verify_cosignatures(&n, &[k1, k2], 2).unwrap().len(), 2);
}
