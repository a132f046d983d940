//! Interoperability with the reference `age` crate (dev-dependency only), in
//! both directions, on the payload: our ciphertext decrypts with
//! `age::Decryptor` to SHA-256(context) || plaintext, and `age::Encryptor`
//! output of SHA-256(context) || plaintext opens with our `Opener`. Keys move
//! between the two as the age Bech32 strings (`age1…`, `AGE-SECRET-KEY-1…`).

mod common;

use std::io::{Read, Write};

use age::secrecy::ExposeSecret;
use bech32::{FromBase32, ToBase32, Variant};
use common::*;
use focal_proto::ProtoError;
use focal_proto::envelope::{self, CHUNK_SIZE, RecipientPublicKey, RecipientSecretKey};

const SIZES: [usize; 7] = [0, 1, 1000, CHUNK_SIZE - 32, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7];

fn age_recipient_string(k: &RecipientPublicKey) -> String {
    bech32::encode("age", k.0.to_base32(), Variant::Bech32).unwrap()
}

fn age_identity_string(k: &RecipientSecretKey) -> String {
    bech32::encode("age-secret-key-", k.to_bytes().to_base32(), Variant::Bech32).unwrap().to_uppercase()
}

fn from_age_identity_string(s: &str) -> RecipientSecretKey {
    let (hrp, data, variant) = bech32::decode(s).unwrap();
    assert_eq!((hrp.as_str(), variant), ("age-secret-key-", Variant::Bech32));
    RecipientSecretKey::from_bytes(Vec::<u8>::from_base32(&data).unwrap().try_into().unwrap())
}

fn from_age_recipient_string(s: &str) -> RecipientPublicKey {
    let (hrp, data, _) = bech32::decode(s).unwrap();
    assert_eq!(hrp, "age");
    RecipientPublicKey(Vec::<u8>::from_base32(&data).unwrap().try_into().unwrap())
}

fn age_decrypt(ct: &[u8], identity: &str) -> Result<Vec<u8>, String> {
    let identity: age::x25519::Identity = identity.parse().map_err(|e: &str| e.to_string())?;
    let dec = age::Decryptor::new(ct).map_err(|e| e.to_string())?;
    let mut r = dec.decrypt(std::iter::once(&identity as &dyn age::Identity)).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn age_encrypt(plaintext: &[u8], recipients: &[String]) -> Vec<u8> {
    let rs: Vec<age::x25519::Recipient> = recipients.iter().map(|s| s.parse().unwrap()).collect();
    let enc = age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    // Odd-sized writes, as a streaming caller would.
    for piece in plaintext.chunks(7777) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap();
    out
}

#[test]
fn key_strings_agree_with_age() {
    let ours = RecipientSecretKey::generate();
    let theirs: age::x25519::Identity = age_identity_string(&ours).parse().unwrap();
    assert_eq!(theirs.to_public().to_string(), age_recipient_string(&ours.public_key()));
    let generated = age::x25519::Identity::generate();
    let back = from_age_identity_string(generated.to_string().expose_secret());
    assert_eq!(back.public_key(), from_age_recipient_string(&generated.to_public().to_string()));
}

#[test]
fn our_ciphertext_decrypts_with_age() {
    let (a, b, c) = (Party::new("a@carin"), Party::new("b@gfp"), Party::new("c@arinsa"));
    let ctx = context_for(&a.addr, &[&b.addr, &c.addr]);
    let hash = envelope::sha256(&ctx);
    for size in SIZES {
        let msg = pattern(size, size as u64 + 1);
        let ct = seal(&ctx, &[b.public(), c.public()], &msg);
        for who in [&b, &c] {
            let pt = age_decrypt(&ct, &age_identity_string(&who.secret)).unwrap();
            assert_eq!(pt[..32], hash, "size {size}");
            assert!(pt[32..] == msg[..], "size {size}");
        }
        // age also refuses the key of someone else.
        assert!(age_decrypt(&ct, &age_identity_string(&a.secret)).is_err());
    }
}

#[test]
fn age_ciphertext_opens_with_our_opener() {
    let (a, b) = (Party::new("a@carin"), Party::new("b@gfp"));
    let age_native = age::x25519::Identity::generate();
    let native_secret = from_age_identity_string(age_native.to_string().expose_secret());
    let ctx = context_for(&a.addr, &[&b.addr]);
    let hash = envelope::sha256(&ctx);
    for size in SIZES {
        let msg = pattern(size, size as u64 + 2);
        let plaintext = [hash.as_slice(), &msg].concat();
        // age adds a random "grease" stanza; our parser must skip it.
        let ct =
            age_encrypt(&plaintext, &[age_recipient_string(&b.public()), age_native.to_public().to_string()]);
        assert!(open(&ctx, &[&b.secret], &ct).unwrap() == msg, "size {size}");
        assert!(open(&ctx, &[&native_secret], &ct).unwrap() == msg, "size {size}");
        // Streaming in odd pieces.
        let mut opener = envelope::Opener::new(&ctx, &[&b.secret]);
        let mut out = Vec::new();
        for piece in ct.chunks(1000) {
            opener.push(piece, &mut out).unwrap();
        }
        opener.finish(&mut out).unwrap();
        assert!(out == msg);
        // The binding applies to age's output as to ours.
        let other = context_for(&a.addr, &[&addr("z@gfp")]);
        assert_eq!(open(&other, &[&b.secret], &ct).unwrap_err(), ProtoError::ContextBinding);
        assert_eq!(open(&ctx, &[&a.secret], &ct).unwrap_err(), ProtoError::NoMatchingRecipient);
    }
}

#[test]
fn age_refuses_what_we_refuse() {
    // Truncation at a chunk boundary and trailing data are errors for age too.
    let (a, b) = (Party::new("a@carin"), Party::new("b@gfp"));
    let ctx = context_for(&a.addr, &[&b.addr]);
    let ct = seal(&ctx, &[b.public()], &pattern(2 * CHUNK_SIZE - 32, 3));
    let id = age_identity_string(&b.secret);
    assert!(age_decrypt(&reassemble(&ct, &[0]), &id).is_err());
    assert_eq!(open(&ctx, &[&b.secret], &reassemble(&ct, &[0])).unwrap_err(), ProtoError::Truncated);
    let mut t = ct.clone();
    t.push(0);
    assert!(age_decrypt(&t, &id).is_err());
    assert_eq!(open(&ctx, &[&b.secret], &t).unwrap_err(), ProtoError::TrailingData);
}

#[test]
fn golden_fixture_decrypts_with_age() {
    use prost::Message;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let env =
        focal_proto::pb::Envelope::decode(std::fs::read(dir.join("envelope_v1.bin")).unwrap().as_slice())
            .unwrap();
    let key: [u8; 32] = hex::decode(std::fs::read_to_string(dir.join("envelope_v1.key")).unwrap().trim())
        .unwrap()
        .try_into()
        .unwrap();
    let expected = std::fs::read(dir.join("envelope_v1.plaintext")).unwrap();
    let pt = age_decrypt(&env.payload, &age_identity_string(&RecipientSecretKey::from_bytes(key))).unwrap();
    assert_eq!(pt[..32], envelope::sha256(&env.header.unwrap().context));
    assert!(pt[32..] == expected[..]);
}
