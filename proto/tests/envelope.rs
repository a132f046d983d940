//! Envelope round trips through real crypto: 1, 2 and 50 recipients, payload
//! sizes around the 64 KiB chunk boundary, 10 MiB streamed in odd pieces with
//! bounded buffering, key rotation, signatures, signed blobs, refusal of
//! low-order keys, and the committed golden fixture.

mod common;

use common::*;
use focal_proto::envelope::{
    self, CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, Opener, RecipientPublicKey, RecipientSecretKey, Sealer,
};
use focal_proto::{ProtoError, pb, signed};
use prost::Message;

#[test]
fn round_trip_to_1_2_and_50_recipients() {
    let alice = Party::new("nl-fiod@carin");
    for n in [1usize, 2, 50] {
        let rcpts: Vec<Party> = (0..n).map(|i| Party::new(&format!("fp{i:02}@arinsa"))).collect();
        let addrs: Vec<_> = rcpts.iter().map(|p| &p.addr).collect();
        let ctx = context_for(&alice.addr, &addrs);
        let keys: Vec<RecipientPublicKey> = rcpts.iter().map(Party::public).collect();
        let msg = format!("case 2025/17: trace accounts, {n} recipients").into_bytes();
        let env = envelope::seal_envelope(&ctx, &keys, &msg, &alice.signing, &alice.cert_der).unwrap();
        let header = env.header.as_ref().unwrap();
        envelope::verify_signature(header).unwrap();
        assert_eq!(header.payload_size, env.payload.len() as u64);
        for r in &rcpts {
            assert_eq!(envelope::open_envelope(&env, &[&r.secret]).unwrap(), msg, "recipient {}", r.addr);
        }
        let outsider = Party::new("eve@gfp");
        assert_eq!(
            envelope::open_envelope(&env, &[&outsider.secret]).unwrap_err(),
            ProtoError::NoMatchingRecipient
        );
    }
}

#[test]
fn payload_sizes_around_the_chunk_boundary() {
    let (a, b) = (Party::new("a@carin"), Party::new("b@carin"));
    let ctx = context_for(&a.addr, &[&b.addr]);
    // The sealed plaintext is 32 bytes of context hash + the caller's bytes.
    let sizes = [
        0,
        1,
        CHUNK_SIZE - 33,
        CHUNK_SIZE - 32,
        CHUNK_SIZE - 31,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE - 32,
    ];
    for size in sizes {
        let msg = pattern(size, size as u64);
        let ct = seal(&ctx, &[b.public()], &msg);
        let total = size + 32;
        let n_chunks = total.div_ceil(CHUNK_SIZE).max(1);
        assert_eq!(ct.len(), payload_start(&ct) + total + 16 * n_chunks, "size {size}");
        // Full chunks everywhere but the last; the last is full when the
        // plaintext is a multiple of 64 KiB (never an empty trailing chunk).
        let cs = chunks(&ct);
        assert_eq!(cs.len(), n_chunks, "size {size}");
        assert!(cs[..n_chunks - 1].iter().all(|c| c.len() == ENCRYPTED_CHUNK_SIZE));
        assert!(cs[n_chunks - 1].len() > 16);
        assert_eq!(open(&ctx, &[&b.secret], &ct).unwrap(), msg, "size {size}");
    }
    // 64 KiB exactly of caller data and 64 KiB + 1 through the whole envelope.
    for size in [CHUNK_SIZE, CHUNK_SIZE + 1] {
        let msg = pattern(size, 9);
        let env = envelope::seal_envelope(&ctx, &[b.public()], &msg, &a.signing, &a.cert_der).unwrap();
        assert_eq!(envelope::open_envelope(&env, &[&b.secret]).unwrap(), msg);
    }
}

#[test]
fn ten_mib_streamed_in_odd_pieces_with_bounded_buffers() {
    let (a, b) = (Party::new("a@carin"), Party::new("b@gfp"));
    let ctx = context_for(&a.addr, &[&b.addr]);
    let msg = pattern(10 * 1024 * 1024, 42);

    let (mut sealer, mut ct) = Sealer::new(&ctx, &[b.public()]).unwrap();
    for piece in msg.chunks(1000) {
        sealer.update(piece, &mut ct).unwrap();
        assert!(sealer.buffered() <= CHUNK_SIZE);
    }
    sealer.finish(&mut ct).unwrap();

    let mut opener = Opener::new(&ctx, &[&b.secret]);
    let mut out = Vec::new();
    let half = ct.len() / 2;
    for (i, piece) in ct.chunks(999).enumerate() {
        opener.push(piece, &mut out).unwrap();
        assert!(opener.buffered() <= ENCRYPTED_CHUNK_SIZE, "piece {i}: {} buffered", opener.buffered());
        if (i + 1) * 999 >= half && (i * 999) < half {
            // Plaintext comes out while the ciphertext is still streaming in.
            assert!(out.len() >= half - 2 * ENCRYPTED_CHUNK_SIZE, "only {} bytes out at half way", out.len());
            assert_eq!(out[..], msg[..out.len()]);
        }
    }
    opener.finish(&mut out).unwrap();
    assert_eq!(out.len(), msg.len());
    assert!(out == msg);
}

#[test]
fn byte_at_a_time_and_split_header() {
    let (a, b, c) = (Party::new("a@carin"), Party::new("b@carin"), Party::new("c@carin"));
    let ctx = context_for(&a.addr, &[&b.addr, &c.addr]);
    let msg = pattern(CHUNK_SIZE + 100, 3);
    let ct = seal(&ctx, &[b.public(), c.public()], &msg);
    let mut opener = Opener::new(&ctx, &[&c.secret]);
    let mut out = Vec::new();
    for byte in ct.chunks(1) {
        opener.push(byte, &mut out).unwrap();
    }
    opener.finish(&mut out).unwrap();
    assert_eq!(out, msg);
}

#[test]
fn key_rotation_overlap_opens_with_either_key() {
    let (a, b) = (Party::new("a@carin"), Party::new("b@carin"));
    let old = RecipientSecretKey::generate();
    let ctx = context_for(&a.addr, &[&b.addr]);
    let ct = seal(&ctx, &[b.public()], b"rotated");
    assert_eq!(open(&ctx, &[&old, &b.secret], &ct).unwrap(), b"rotated");
    assert_eq!(open(&ctx, &[&old], &ct).unwrap_err(), ProtoError::NoMatchingRecipient);
    assert_eq!(open(&ctx, &[], &ct).unwrap_err(), ProtoError::NoMatchingRecipient);
    // Secret keys survive a round trip through their bytes.
    let again = RecipientSecretKey::from_bytes(*b.secret.to_bytes());
    assert_eq!(again.public_key(), b.public());
    assert_eq!(open(&ctx, &[&again], &ct).unwrap(), b"rotated");
}

#[test]
fn sealer_refuses_low_order_recipient_keys() {
    let a = Party::new("a@carin");
    let ctx = context_for(&a.addr, &[&addr("b@carin")]);
    for p in low_order_points() {
        let err = Sealer::new(&ctx, &[a.public(), RecipientPublicKey(p)]).unwrap_err();
        assert_eq!(err, ProtoError::ZeroSharedSecret, "{}", hex::encode(p));
    }
}

#[test]
fn opener_refuses_low_order_ephemeral_shares() {
    let (a, b) = (Party::new("a@carin"), Party::new("b@carin"));
    let ctx = context_for(&a.addr, &[&b.addr]);
    let ct = seal(&ctx, &[b.public()], b"hello");
    let file_key = recover_file_key(&ct, &b.secret);
    for p in low_order_points() {
        let mut forged = header_with(&file_key, &[low_order_stanza(&p)]);
        forged.extend_from_slice(&ct[header_len(&ct)..]);
        assert_eq!(open(&ctx, &[&b.secret], &forged).unwrap_err(), ProtoError::ZeroSharedSecret);
    }
}

#[test]
fn the_largest_header_fits_the_opener_limit() {
    // MAX_RECIPIENTS stanzas stay under MAX_HEADER_SIZE, so whatever a sealer
    // writes an opener reads.
    let a = Party::new("a@carin");
    let ctx = context_for(&a.addr, &[&addr("b@carin")]);
    let secrets: Vec<RecipientSecretKey> =
        (0..envelope::MAX_RECIPIENTS).map(|_| RecipientSecretKey::generate()).collect();
    let keys: Vec<RecipientPublicKey> = secrets.iter().map(RecipientSecretKey::public_key).collect();
    let ct = seal(&ctx, &keys, b"to everyone");
    assert!(header_len(&ct) < envelope::MAX_HEADER_SIZE, "{}", header_len(&ct));
    assert_eq!(open(&ctx, &[secrets.last().unwrap()], &ct).unwrap(), b"to everyone");
}

#[test]
fn sealer_refuses_bad_inputs() {
    let a = Party::new("a@carin");
    let ctx = context_for(&a.addr, &[&addr("b@carin")]);
    assert!(matches!(Sealer::new(&ctx, &[]).unwrap_err(), ProtoError::InvalidRecipients(_)));
    let too_many = vec![a.public(); envelope::MAX_RECIPIENTS + 1];
    assert!(matches!(Sealer::new(&ctx, &too_many).unwrap_err(), ProtoError::InvalidRecipients(_)));
    assert!(matches!(
        Sealer::new(b"not a context", &[a.public()]).unwrap_err(),
        ProtoError::Malformed { .. }
    ));
    // seal_envelope checks that the signing key is the certificate's key.
    let other = Party::new("x@carin");
    let err = envelope::seal_envelope(&ctx, &[a.public()], b"x", &other.signing, &a.cert_der).unwrap_err();
    assert!(matches!(err, ProtoError::BadKey(_)), "{err:?}");
}

#[test]
fn signature_is_verified_without_decryption_keys() {
    let (a, b) = (Party::new("a@carin"), Party::new("b@arinsa"));
    let ctx = context_for(&a.addr, &[&b.addr]);
    let env = envelope::seal_envelope(&ctx, &[b.public()], b"x", &a.signing, &a.cert_der).unwrap();
    let h = env.header.clone().unwrap();
    envelope::verify_signature(&h).unwrap();
    // The signed message is exactly domain || SHA-256(context) || SHA-256(payload).
    let digest: [u8; 32] = h.payload_sha256.clone().try_into().unwrap();
    let m = envelope::signed_message(&ctx, &digest);
    assert_eq!(&m[..13], b"focal/v1/sig\0");
    assert_eq!(m[13..45], envelope::sha256(&ctx));
    assert_eq!(m[45..], digest);
    assert_eq!(m.len(), 77);

    let bad = |edit: &dyn Fn(&mut pb::EnvelopeHeader)| {
        let mut h2 = h.clone();
        edit(&mut h2);
        envelope::verify_signature(&h2).unwrap_err()
    };
    assert_eq!(bad(&|h| h.signature[10] ^= 1), ProtoError::BadSignature("sender signature does not verify"));
    assert_eq!(bad(&|h| h.signature.truncate(63)), ProtoError::BadSignature("signature is not 64 bytes"));
    assert_eq!(
        bad(&|h| h.payload_sha256[0] ^= 1),
        ProtoError::BadSignature("sender signature does not verify")
    );
    assert!(matches!(bad(&|h| h.payload_sha256.truncate(31)), ProtoError::PayloadMismatch(_)));
    assert_eq!(bad(&|h| h.context[3] ^= 1), ProtoError::BadSignature("sender signature does not verify"));
    assert_eq!(
        bad(&|h| h.sender_cert = b.cert_der.clone()),
        ProtoError::BadSignature("sender signature does not verify")
    );
    assert!(matches!(bad(&|h| h.sender_cert = vec![0x30, 0x03, 1, 2, 3]), ProtoError::BadKey(_)));
    assert!(matches!(bad(&|h| h.sender_cert.push(0)), ProtoError::BadKey(_)));
    // Hops and deliver_to are written by relays and are not signed.
    envelope::verify_signature(&pb::EnvelopeHeader {
        hops: vec![pb::Hop { relay: "relay.carin".into(), network: "carin".into(), at_ms: 1 }],
        deliver_to: vec!["b@arinsa".into()],
        ..h.clone()
    })
    .unwrap();
}

#[test]
fn open_envelope_checks_size_and_digest_first() {
    let (a, b) = (Party::new("a@carin"), Party::new("b@carin"));
    let ctx = context_for(&a.addr, &[&b.addr]);
    let env = envelope::seal_envelope(&ctx, &[b.public()], b"x", &a.signing, &a.cert_der).unwrap();
    let mut e = env.clone();
    e.payload.push(0);
    assert!(matches!(envelope::open_envelope(&e, &[&b.secret]).unwrap_err(), ProtoError::PayloadMismatch(_)));
    let mut e = env.clone();
    let last = e.payload.len() - 1;
    e.payload[last] ^= 1;
    assert!(matches!(envelope::open_envelope(&e, &[&b.secret]).unwrap_err(), ProtoError::PayloadMismatch(_)));
    let mut e = env.clone();
    e.header = None;
    assert!(matches!(envelope::open_envelope(&e, &[&b.secret]).unwrap_err(), ProtoError::Malformed { .. }));
}

#[test]
fn certificate_key_extraction() {
    let (kp, der) = ed25519_identity("focal://carin/fp/x");
    use ring::signature::KeyPair as _;
    assert_eq!(signed::ed25519_key_from_cert(&der).unwrap(), kp.public_key().as_ref());
    // A P-256 certificate is refused by name.
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["x.example".to_string()]).unwrap().self_signed(&p256).unwrap();
    let err = signed::ed25519_key_from_cert(cert.der()).unwrap_err();
    assert!(err.to_string().contains("not Ed25519"), "{err}");
    assert!(matches!(signed::ed25519_key_from_cert(b"").unwrap_err(), ProtoError::BadKey(_)));
}

#[test]
fn signed_blobs() {
    let relay = Party::new("relay@carin");
    let body = pb::ReceiptBody { version: 1, msg_id: vec![1; 16], ..Default::default() }.encode_to_vec();
    let blob = signed::sign_blob(signed::TAG_RECEIPT, body.clone(), &relay.signing, &relay.cert_der);
    assert_eq!(blob.body, body);
    signed::verify_blob(signed::TAG_RECEIPT, &blob).unwrap();

    let reason = |tag: &[u8], b: &pb::SignedBlob| match signed::verify_blob(tag, b).unwrap_err() {
        ProtoError::InvalidSigned { what, reason } => format!("{what}: {reason}"),
        other => panic!("unexpected {other:?}"),
    };
    // Tags separate the kinds of statement.
    assert_eq!(reason(signed::TAG_DIRECTORY, &blob), "directory entry: signature does not verify");
    assert_eq!(reason(signed::TAG_RELEASE, &blob), "release: signature does not verify");
    let mut b = blob.clone();
    b.body.push(0);
    assert_eq!(reason(signed::TAG_RECEIPT, &b), "receipt: signature does not verify");
    let mut b = blob.clone();
    b.signature[0] ^= 1;
    assert_eq!(reason(signed::TAG_RECEIPT, &b), "receipt: signature does not verify");
    let mut b = blob.clone();
    b.signature.clear();
    assert_eq!(reason(signed::TAG_RECEIPT, &b), "receipt: signature is 0 bytes, expected 64");
    let mut b = blob.clone();
    b.signer_cert = Party::new("other@carin").cert_der;
    assert_eq!(reason(signed::TAG_RECEIPT, &b), "receipt: signature does not verify");
    let mut b = blob.clone();
    b.signer_cert.truncate(10);
    assert!(reason(signed::TAG_RECEIPT, &b).starts_with("receipt: signer certificate: bad key"));
    // An envelope signature is never a valid blob signature and vice versa.
    let ctx = context_for(&relay.addr, &[&addr("b@carin")]);
    let env =
        envelope::seal_envelope(&ctx, &[relay.public()], b"x", &relay.signing, &relay.cert_der).unwrap();
    let h = env.header.unwrap();
    let digest: [u8; 32] = h.payload_sha256.clone().try_into().unwrap();
    let as_blob = pb::SignedBlob {
        body: envelope::signed_message(&ctx, &digest)[13..].to_vec(),
        signature: h.signature.clone(),
        signer_cert: h.sender_cert.clone(),
    };
    for tag in [signed::TAG_RECEIPT, signed::TAG_DIRECTORY, signed::TAG_RELEASE] {
        assert!(signed::verify_blob(tag, &as_blob).is_err());
    }
}

// ---- golden fixture: future versions must still open it ----

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

const GOLDEN_TEXT: &str = "Focal golden envelope v1. Request under UNCAC art. 56 (spontaneous disclosure): \
synthetic test data only, no real case. ";

#[test]
fn golden_envelope_v1_still_opens() {
    let bin = std::fs::read(fixture("envelope_v1.bin")).unwrap();
    let key_hex = std::fs::read_to_string(fixture("envelope_v1.key")).unwrap();
    let expected = std::fs::read(fixture("envelope_v1.plaintext")).unwrap();
    let key: [u8; 32] = hex::decode(key_hex.trim()).unwrap().try_into().unwrap();
    let secret = RecipientSecretKey::from_bytes(key);
    let env = pb::Envelope::decode(bin.as_slice()).unwrap();
    assert_eq!(envelope::open_envelope(&env, &[&secret]).unwrap(), expected);
    let ctx = envelope::parse_context(&env.header.as_ref().unwrap().context).unwrap();
    assert_eq!(ctx.sender.to_string(), "nl-fiod@carin");
    let rcpts: Vec<String> = ctx.recipients.iter().map(ToString::to_string).collect();
    assert_eq!(rcpts, ["secretariat@arinsa", "za-afu@arinsa"]);
    assert_eq!(ctx.ctx.handling, pb::HandlingCode::H2 as i32);
    assert_eq!(ctx.msg_id, *b"golden-fixture01");
    // Two STREAM chunks: the fixture exercises the chunk counter and last flag.
    assert_eq!(chunks(&env.payload).len(), 2);
    assert!(expected.starts_with(GOLDEN_TEXT.as_bytes()));
}

/// Writes the golden fixture if it is missing (it never overwrites: v1 is
/// frozen; a new format version gets new files). After deleting the files:
/// `cargo test -p focal-proto --test envelope -- --ignored write_golden_fixture`
#[test]
#[ignore = "writes tests/fixtures; run by hand"]
fn write_golden_fixture() {
    if fixture("envelope_v1.bin").exists() {
        eprintln!("tests/fixtures/envelope_v1.* exist; not overwriting the frozen fixture");
        return;
    }
    let sender = Party::new("nl-fiod@carin");
    let recipient = Party::new("za-afu@arinsa");
    let other = RecipientSecretKey::generate();
    let ctx = envelope::build_context(&envelope::ContextParams {
        msg_id: *b"golden-fixture01",
        sender: sender.addr.clone(),
        recipients: vec![addr("za-afu@arinsa"), addr("secretariat@arinsa")],
        created_at_ms: 1_767_225_600_000,
        expires_at_ms: 1_767_225_600_000 + 30 * 24 * 3600 * 1000,
        handling: pb::HandlingCode::H2,
        priority: pb::Priority::Urgent,
        forward_of: None,
        broadcast_network: None,
    })
    .unwrap();
    let mut plaintext = GOLDEN_TEXT.as_bytes().repeat(CHUNK_SIZE / GOLDEN_TEXT.len() + 1);
    plaintext.truncate(CHUNK_SIZE + 1000);
    let env = envelope::seal_envelope(
        &ctx,
        &[other.public_key(), recipient.public()],
        &plaintext,
        &sender.signing,
        &sender.cert_der,
    )
    .unwrap();
    std::fs::create_dir_all(fixture("")).unwrap();
    std::fs::write(fixture("envelope_v1.bin"), env.encode_to_vec()).unwrap();
    std::fs::write(fixture("envelope_v1.key"), format!("{}\n", hex::encode(*recipient.secret.to_bytes())))
        .unwrap();
    std::fs::write(fixture("envelope_v1.plaintext"), &plaintext).unwrap();
}
