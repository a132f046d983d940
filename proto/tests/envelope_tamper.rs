//! Every tamper with an envelope fails with a typed error: header line,
//! stanza tag/argument/body, MAC, nonce, any chunk, dropped / reordered /
//! duplicated / truncated chunks, final-flag games, trailing data, signature,
//! context, edited recipient lists, surreptitious forwarding, wrong keys.

mod common;

use common::*;
use focal_proto::envelope::{self, CHUNK_SIZE, Opener, RecipientSecretKey};
use focal_proto::{ProtoError, pb};
use prost::Message;

/// A (sender) to B and C; payload of three chunks (full, full, short).
struct Fixture {
    a: Party,
    b: Party,
    c: Party,
    ctx: Vec<u8>,
    msg: Vec<u8>,
    ct: Vec<u8>,
}

fn fixture(user_len: usize) -> Fixture {
    let (a, b, c) = (Party::new("nl-fiod@carin"), Party::new("za-afu@arinsa"), Party::new("ke-ara@arin-ea"));
    let ctx = context_for(&a.addr, &[&b.addr, &c.addr]);
    let msg = pattern(user_len, 5);
    let ct = seal(&ctx, &[b.public(), c.public()], &msg);
    Fixture { a, b, c, ctx, msg, ct }
}

fn three_chunks() -> Fixture {
    let f = fixture(2 * CHUNK_SIZE + 500);
    assert_eq!(chunks(&f.ct).len(), 3);
    f
}

impl Fixture {
    fn open_b(&self, ct: &[u8]) -> Result<Vec<u8>, ProtoError> {
        open(&self.ctx, &[&self.b.secret], ct)
    }
    fn open_c(&self, ct: &[u8]) -> Result<Vec<u8>, ProtoError> {
        open(&self.ctx, &[&self.c.secret], ct)
    }
    /// Byte range of line `n` (0-based) of the header, without its newline.
    fn line(&self, n: usize) -> std::ops::Range<usize> {
        let mut start = 0;
        for _ in 0..n {
            start += self.ct[start..].iter().position(|b| *b == b'\n').unwrap() + 1;
        }
        let len = self.ct[start..].iter().position(|b| *b == b'\n').unwrap();
        start..start + len
    }
    fn with(&self, at: usize, byte: u8) -> Vec<u8> {
        let mut t = self.ct.clone();
        t[at] = byte;
        t
    }
}

/// Replaces the base64 character at `at` with another valid one that keeps
/// the encoding canonical (only the middle characters of a share or body).
fn other_b64(c: u8) -> u8 {
    if c == b'A' { b'B' } else { b'A' }
}

#[test]
fn header_line_flips() {
    let f = three_chunks();
    assert_eq!(&f.ct[f.line(0)], b"age-encryption.org/v1");
    for i in f.line(0) {
        let t = f.with(i, f.ct[i] ^ 0x01);
        assert!(matches!(f.open_b(&t).unwrap_err(), ProtoError::MalformedHeader(_)), "byte {i}");
    }
}

#[test]
fn stanza_tag_argument_and_body_flips() {
    let f = three_chunks();
    // Lines: 0 version, 1 B's stanza, 2 B's body, 3 C's stanza, 4 C's body, 5 MAC.
    let b_stanza = f.line(1);
    assert!(f.ct[b_stanza.clone()].starts_with(b"-> X25519 "));
    // Tag: B's stanza becomes an unknown type, skipped; C's does not match B.
    let t = f.with(b_stanza.start + 3, b'Y');
    assert_eq!(f.open_b(&t).unwrap_err(), ProtoError::NoMatchingRecipient);
    // ...and C, whose stanza still unwraps, catches the edit with the MAC.
    assert_eq!(f.open_c(&t).unwrap_err(), ProtoError::HeaderMac);
    // Argument (ephemeral share), a middle character.
    let at = b_stanza.start + 10 + 20;
    let t = f.with(at, other_b64(f.ct[at]));
    assert_eq!(f.open_b(&t).unwrap_err(), ProtoError::NoMatchingRecipient);
    assert_eq!(f.open_c(&t).unwrap_err(), ProtoError::HeaderMac);
    // Body (wrapped file key).
    let at = f.line(2).start + 20;
    let t = f.with(at, other_b64(f.ct[at]));
    assert_eq!(f.open_b(&t).unwrap_err(), ProtoError::NoMatchingRecipient);
    assert_eq!(f.open_c(&t).unwrap_err(), ProtoError::HeaderMac);
    // Extra argument on an X25519 stanza.
    let mut t = f.ct[..b_stanza.end].to_vec();
    t.extend_from_slice(b" extra");
    t.extend_from_slice(&f.ct[b_stanza.end..]);
    assert!(matches!(f.open_b(&t).unwrap_err(), ProtoError::MalformedHeader(_)));
}

#[test]
fn mac_flips() {
    let f = three_chunks();
    let mac = f.line(5);
    assert!(f.ct[mac.clone()].starts_with(b"--- "));
    let at = mac.start + 4 + 20;
    let t = f.with(at, other_b64(f.ct[at]));
    assert_eq!(f.open_b(&t).unwrap_err(), ProtoError::HeaderMac);
    assert_eq!(f.open_c(&t).unwrap_err(), ProtoError::HeaderMac);
}

#[test]
fn every_header_bit_flip_is_a_typed_error() {
    let f = fixture(100);
    let end = header_len(&f.ct);
    for i in 0..end {
        for bit in [0x01u8, 0x20, 0x80] {
            let t = f.with(i, f.ct[i] ^ bit);
            for r in [f.open_b(&t), f.open_c(&t)] {
                match r {
                    Err(
                        ProtoError::MalformedHeader(_)
                        | ProtoError::NoMatchingRecipient
                        | ProtoError::HeaderMac
                        | ProtoError::ZeroSharedSecret,
                    ) => {}
                    other => panic!("flip {bit:#x} at {i}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn nonce_and_chunk_flips() {
    let f = three_chunks();
    let nonce_at = header_len(&f.ct) + 3;
    assert_eq!(
        f.open_b(&f.with(nonce_at, f.ct[nonce_at] ^ 1)).unwrap_err(),
        ProtoError::ChunkAuth { index: 0 }
    );
    for (i, c) in chunks(&f.ct).into_iter().enumerate() {
        for at in [c.start, c.start + c.len() / 2, c.end - 1] {
            let err = f.open_b(&f.with(at, f.ct[at] ^ 0x40)).unwrap_err();
            assert_eq!(err, ProtoError::ChunkAuth { index: i as u64 }, "chunk {i} byte {at}");
        }
    }
}

#[test]
fn dropped_reordered_duplicated_chunks() {
    let f = three_chunks();
    let cases: &[(&[usize], ProtoError)] = &[
        (&[0, 2], ProtoError::ChunkAuth { index: 1 }),
        (&[1, 2], ProtoError::ChunkAuth { index: 0 }),
        (&[1, 0, 2], ProtoError::ChunkAuth { index: 0 }),
        (&[0, 2, 1], ProtoError::ChunkAuth { index: 1 }),
        (&[0, 0, 1, 2], ProtoError::ChunkAuth { index: 1 }),
        (&[0, 1, 1, 2], ProtoError::ChunkAuth { index: 2 }),
        (&[0, 1, 2, 2], ProtoError::ChunkAuth { index: 2 }),
        (&[0, 1], ProtoError::Truncated),
        (&[0], ProtoError::Truncated),
        (&[], ProtoError::Truncated),
    ];
    assert_eq!(f.open_b(&reassemble(&f.ct, &[0, 1, 2])).unwrap(), f.msg);
    for (order, want) in cases {
        assert_eq!(&f.open_b(&reassemble(&f.ct, order)).unwrap_err(), want, "order {order:?}");
    }
}

#[test]
fn truncation_anywhere() {
    let f = three_chunks();
    let h = header_len(&f.ct);
    let last = chunks(&f.ct)[2].clone();
    let cases = [
        (0, ProtoError::Truncated),
        (10, ProtoError::Truncated),
        (h - 1, ProtoError::Truncated),
        (h, ProtoError::Truncated),
        (h + 15, ProtoError::Truncated),
        (h + 16 + 100, ProtoError::ChunkAuth { index: 0 }),
        (last.start + 10, ProtoError::Truncated), // less than a tag left of the last chunk
        (f.ct.len() - 1, ProtoError::ChunkAuth { index: 2 }),
    ];
    for (len, want) in cases {
        assert_eq!(f.open_b(&f.ct[..len]).unwrap_err(), want, "cut at {len}");
    }
}

#[test]
fn final_flag_games_and_trailing_data() {
    // Two full chunks: the last one is full and carries the final flag.
    let f = fixture(2 * CHUNK_SIZE - 32);
    let cs = chunks(&f.ct);
    assert_eq!(cs.len(), 2);
    assert_eq!(f.open_b(&f.ct).unwrap(), f.msg);
    // Present the non-final first chunk as if it were the last.
    assert_eq!(f.open_b(&reassemble(&f.ct, &[0])).unwrap_err(), ProtoError::Truncated);
    // Anything after a final chunk: a whole chunk, a single byte.
    assert_eq!(f.open_b(&reassemble(&f.ct, &[0, 1, 1])).unwrap_err(), ProtoError::TrailingData);
    assert_eq!(f.open_b(&reassemble(&f.ct, &[0, 1, 0])).unwrap_err(), ProtoError::TrailingData);
    let mut t = f.ct.clone();
    t.push(0);
    assert_eq!(f.open_b(&t).unwrap_err(), ProtoError::TrailingData);
    // After a short final chunk the chunk boundary moves: the (longer) last
    // chunk no longer authenticates.
    let g = three_chunks();
    let mut t = g.ct.clone();
    t.extend_from_slice(b"more");
    assert_eq!(g.open_b(&t).unwrap_err(), ProtoError::ChunkAuth { index: 2 });
}

#[test]
fn forged_streams_from_a_key_holder() {
    // A sender (or recipient) holding the file key can write chunk sequences
    // our sealer never writes; the opener still refuses them.
    let f = fixture(10);
    let fk = recover_file_key(&f.ct, &f.b.secret);
    let head = &f.ct[..header_len(&f.ct)];
    let hash = envelope::sha256(&f.ctx);
    let mut full = hash.to_vec();
    full.resize(CHUNK_SIZE, 7);
    let forged = |chunks: &[(&[u8], bool)]| {
        let mut t = head.to_vec();
        t.extend_from_slice(&forge_stream(&fk, [9; 16], chunks));
        t
    };
    // Sanity: the forger's STREAM is the real one.
    assert_eq!(f.open_b(&forged(&[(&full, true)])).unwrap(), full[32..]);
    assert_eq!(f.open_b(&forged(&[(&full, false), (b"x", true)])).unwrap().len(), CHUNK_SIZE - 32 + 1);
    // A non-empty payload never ends in an empty chunk.
    assert_eq!(
        f.open_b(&forged(&[(&full, false), (b"", true)])).unwrap_err(),
        ProtoError::InvalidStream("empty final chunk after a full chunk")
    );
    // No final flag at all.
    assert_eq!(f.open_b(&forged(&[(&full, false), (&full, false)])).unwrap_err(), ProtoError::Truncated);
    // Final flag on the first of two chunks.
    assert_eq!(f.open_b(&forged(&[(&full, true), (b"x", true)])).unwrap_err(), ProtoError::TrailingData);
    // A short non-final chunk shifts the boundaries.
    assert_eq!(
        f.open_b(&forged(&[(&hash, false), (b"x", true)])).unwrap_err(),
        ProtoError::ChunkAuth { index: 0 }
    );
    // The empty payload (no context prefix) is not bound to this context.
    assert_eq!(f.open_b(&forged(&[(b"", true)])).unwrap_err(), ProtoError::ContextBinding);
}

#[test]
fn signature_and_context_tampering() {
    let f = three_chunks();
    let env = envelope_of(&f.ctx, f.ct.clone(), &f.a);
    assert_eq!(envelope::open_envelope(&env, &[&f.b.secret]).unwrap(), f.msg);
    let mut e = env.clone();
    e.header.as_mut().unwrap().signature[5] ^= 0x10;
    assert!(matches!(envelope::open_envelope(&e, &[&f.b.secret]).unwrap_err(), ProtoError::BadSignature(_)));
    // Flip a bit of the context: the signature covers it.
    let mut e = env.clone();
    e.header.as_mut().unwrap().context[20] ^= 0x01;
    assert!(matches!(envelope::open_envelope(&e, &[&f.b.secret]).unwrap_err(), ProtoError::BadSignature(_)));
    // Even with the signature out of the way, the payload is bound to the
    // original context.
    let mut other_ctx = f.ctx.clone();
    other_ctx[20] ^= 0x01;
    assert_eq!(open(&other_ctx, &[&f.b.secret], &f.ct).unwrap_err(), ProtoError::ContextBinding);
    // Nothing of the plaintext is released before the binding check.
    let mut opener = Opener::new(&other_ctx, &[&f.b.secret]);
    let mut out = Vec::new();
    assert_eq!(opener.push(&f.ct, &mut out).unwrap_err(), ProtoError::ContextBinding);
    assert!(out.is_empty());
    // The opener stays failed.
    assert_eq!(opener.push(b"", &mut out).unwrap_err(), ProtoError::ContextBinding);
    assert_eq!(opener.finish(&mut out).unwrap_err(), ProtoError::ContextBinding);
}

#[test]
fn recipient_list_edited() {
    let f = three_chunks();
    let env = envelope_of(&f.ctx, f.ct.clone(), &f.a);
    let edit = |change: &dyn Fn(&mut Vec<String>)| {
        let mut ctx = pb::Context::decode(f.ctx.as_slice()).unwrap();
        change(&mut ctx.recipients);
        ctx.encode_to_vec()
    };
    let dropped = edit(&|r| r.retain(|a| a != "za-afu@arinsa"));
    let added = edit(&|r| {
        r.push("eve@gfp".into());
        r.sort();
    });
    let unsorted = edit(&|r| r.reverse());
    for ctx in [&dropped, &added, &unsorted] {
        let mut e = env.clone();
        e.header.as_mut().unwrap().context = ctx.clone();
        let err = envelope::open_envelope(&e, &[&f.c.secret]).unwrap_err();
        assert!(matches!(err, ProtoError::BadSignature(_)), "{err:?}");
    }
    assert!(matches!(envelope::parse_context(&unsorted).unwrap_err(), ProtoError::InvalidContext(_)));
    for ctx in [&dropped, &added] {
        assert_eq!(open(ctx, &[&f.c.secret], &f.ct).unwrap_err(), ProtoError::ContextBinding);
    }
    // Re-signed by the one who edited it (a valid signature of another key):
    // the payload still names the original context.
    let eve = Party::new("eve@gfp");
    let e = envelope_of(&added, f.ct.clone(), &eve);
    assert_eq!(envelope::open_envelope(&e, &[&f.c.secret]).unwrap_err(), ProtoError::ContextBinding);
}

#[test]
fn surreptitious_forwarding_is_caught() {
    let f = three_chunks();
    let original = envelope_of(&f.ctx, f.ct.clone(), &f.a);
    let carol = Party::new("carol@gfp");

    // B re-wraps the file key it legitimately holds to Carol, keeps nonce and
    // chunks, writes a context of its own and signs it with its own key.
    let forwarded_ct = rewrap(&f.ct, &f.b.secret, &carol.public());
    let new_ctx = context_for(&f.b.addr, &[&carol.addr]);
    let forwarded = envelope_of(&new_ctx, forwarded_ct.clone(), &f.b);
    envelope::verify_signature(forwarded.header.as_ref().unwrap()).unwrap();
    assert_eq!(
        envelope::open_envelope(&forwarded, &[&carol.secret]).unwrap_err(),
        ProtoError::ContextBinding
    );

    // The same with A still named as sender: B cannot sign as A, and re-using
    // A's signature (and certificate) over the new context fails.
    let posing_ctx = context_for(&f.a.addr, &[&carol.addr]);
    let mut posing = envelope_of(&posing_ctx, forwarded_ct.clone(), &f.b);
    let h = posing.header.as_mut().unwrap();
    h.signature = original.header.as_ref().unwrap().signature.clone();
    h.sender_cert = f.a.cert_der.clone();
    assert!(matches!(
        envelope::open_envelope(&posing, &[&carol.secret]).unwrap_err(),
        ProtoError::BadSignature(_)
    ));

    // Keeping A's context and signature but the re-wrapped payload changes
    // the payload digest A signed.
    let mut kept = original.clone();
    kept.payload = forwarded_ct.clone();
    let h = kept.header.as_mut().unwrap();
    h.payload_size = forwarded_ct.len() as u64;
    h.payload_sha256 = envelope::sha256(&forwarded_ct).to_vec();
    assert!(matches!(
        envelope::open_envelope(&kept, &[&carol.secret]).unwrap_err(),
        ProtoError::BadSignature(_)
    ));

    // Keeping A's context but signing with B's own key: the crypto opens (the
    // context is the one A sealed), which is why the caller must also check
    // that the certificate is the context's sender (focal-certs) and that it
    // is itself a recipient.
    let relabelled = envelope_of(&f.ctx, forwarded_ct, &f.b);
    assert_eq!(envelope::open_envelope(&relabelled, &[&carol.secret]).unwrap(), f.msg);
    let ctx = envelope::parse_context(&f.ctx).unwrap();
    assert!(!ctx.is_recipient(&carol.addr));
    assert!(ctx.is_recipient(&f.b.addr) && ctx.is_recipient(&f.c.addr));
    assert_ne!(signed_key(&f.b.cert_der), signed_key(&f.a.cert_der));
}

fn signed_key(der: &[u8]) -> [u8; 32] {
    focal_proto::signed::ed25519_key_from_cert(der).unwrap()
}

#[test]
fn wrong_keys_and_garbage() {
    let f = fixture(1000);
    let stranger = RecipientSecretKey::generate();
    assert_eq!(open(&f.ctx, &[&stranger], &f.ct).unwrap_err(), ProtoError::NoMatchingRecipient);
    assert_eq!(open(&f.ctx, &[&f.a.secret], &f.ct).unwrap_err(), ProtoError::NoMatchingRecipient);
    // Garbage is refused on the first line, without buffering it.
    let mut opener = Opener::new(&f.ctx, &[&f.b.secret]);
    let err = opener.push(&pattern(1 << 20, 1), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, ProtoError::MalformedHeader(_)), "{err:?}");
    // A header line of binary after a valid start is refused at once.
    let mut t = b"age-encryption.org/v1\n-> X25519 abc\n".to_vec();
    t.extend_from_slice(&[0xff; 100]);
    t.push(b'\n');
    assert!(matches!(open(&f.ctx, &[&f.b.secret], &t).unwrap_err(), ProtoError::MalformedHeader(_)));
    // An endless but plausible header stops at MAX_HEADER_SIZE.
    let mut opener = Opener::new(&f.ctx, &[&f.b.secret]);
    let mut out = Vec::new();
    opener.push(b"age-encryption.org/v1\n", &mut out).unwrap();
    let line = format!("-> grease {}\n", "a".repeat(50));
    let err = loop {
        if let Err(e) = opener.push(line.as_bytes(), &mut out) {
            break e;
        }
        assert!(opener.buffered() <= envelope::MAX_HEADER_SIZE);
    };
    assert!(err.to_string().contains("header longer than"), "{err}");
}

#[test]
fn an_empty_or_short_final_chunk_after_full_chunks_is_refused() {
    // age: the final chunk may be shorter than 64 KiB but is empty only when
    // it is the only chunk. Our plaintext always starts with the 32-byte
    // context hash, so a valid final chunk is never empty.
    let f = fixture(10);
    let fk = recover_file_key(&f.ct, &f.b.secret);
    let head = &f.ct[..header_len(&f.ct)];
    let mut first = envelope::sha256(&f.ctx).to_vec();
    first.resize(CHUNK_SIZE, 1);
    let full = vec![2u8; CHUNK_SIZE];
    let forged = |chunks: &[(&[u8], bool)]| {
        let mut t = head.to_vec();
        t.extend_from_slice(&forge_stream(&fk, [4; 16], chunks));
        t
    };
    let empty_final = ProtoError::InvalidStream("empty final chunk after a full chunk");
    for n_full in 0..3 {
        let mut body: Vec<(&[u8], bool)> = vec![(&first, false)];
        body.extend(std::iter::repeat_n((&full[..], false), n_full));
        let ct = forged(&[body.clone(), vec![(b"", true)]].concat());
        assert_eq!(f.open_b(&ct).unwrap_err(), empty_final, "{n_full} full chunks after the first");
        // pushed a byte at a time, the opener reaches the same verdict
        let mut o = Opener::new(&f.ctx, &[&f.b.secret]);
        let mut out = Vec::new();
        for b in &ct {
            o.push(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(o.finish(&mut out).unwrap_err(), empty_final);
        // a one-byte final chunk in its place is valid
        let ok = forged(&[body, vec![(b"x", true)]].concat());
        assert_eq!(f.open_b(&ok).unwrap().len(), (n_full + 1) * CHUNK_SIZE - 32 + 1);
    }
    // The real sealer's largest one-chunk-boundary case: a full first chunk
    // and a non-empty last one; cutting the last chunk to fewer bytes than a
    // tag (or dropping it) is truncation.
    let g = fixture(CHUNK_SIZE - 32 + 1);
    let cs = chunks(&g.ct);
    assert_eq!(cs.len(), 2);
    for cut in 1..16 {
        assert_eq!(g.open_b(&g.ct[..cs[1].start + cut]).unwrap_err(), ProtoError::Truncated, "cut {cut}");
    }
    assert_eq!(g.open_b(&g.ct[..cs[1].start]).unwrap_err(), ProtoError::Truncated);
}
