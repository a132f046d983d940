//! Section 3: the end-to-end crypto. Sealing (context, age-format payload,
//! Ed25519 signature) and opening (digest, signature, unwrap, decrypt) of a
//! 1 KiB message for 1 and 50 recipients, and the ChaCha20-Poly1305
//! throughput of one core with ring (the crypto limit for attachments).

use std::time::Instant;

use anyhow::Result;
use focal_proto::envelope::{RecipientPublicKey, RecipientSecretKey, open_envelope};
use focal_proto::{Address, NetworkId};
use focal_tests::TestPki;
use focal_tests::raw::{CraftOptions, craft};

use crate::Params;
use crate::table::Row;

pub(crate) fn run(p: &Params) -> Result<Vec<Row>> {
    let tmp = tempfile::Builder::new().prefix("focal-bench-crypto-").tempdir()?;
    let mut pki = TestPki::new(tmp.path())?;
    pki.add_network(&NetworkId::new("carin")?)?;
    let sender = Address::parse_member("nl-fiod@carin")?;
    let cert = pki.fp_cert(&sender)?;
    let creds = focal_certs::Credentials::load(&cert.cert, &cert.key)?;
    let secrets: Vec<RecipientSecretKey> = (0..50).map(|_| RecipientSecretKey::generate()).collect();
    let all: Vec<(Address, RecipientPublicKey)> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| Ok((Address::parse_member(&format!("r{i}@arinsa"))?, s.public_key())))
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for n in [1usize, 50] {
        let iters = if p.quick { 200 } else { 2_000 } / if n == 1 { 1 } else { 10 };
        let opts = CraftOptions { body_len: p.body, ..CraftOptions::default() };
        let t = Instant::now();
        let mut env = None;
        for _ in 0..iters {
            env = Some(craft(&sender, &creds, &all[..n], &opts)?);
        }
        let seal_us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
        let env = env.expect("at least one");
        // Worst case for the opener: its stanza is the last one.
        let mine = &secrets[n - 1];
        let t = Instant::now();
        for _ in 0..iters {
            open_envelope(&env, &[mine])?;
        }
        let open_us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
        rows.push(Row::one(
            &format!("seal + sign 1 KiB, {n} recipient(s)"),
            format!("{seal_us:.0} µs ({:.0}/s)", 1e6 / seal_us),
        ));
        rows.push(Row::one(
            &format!("verify + open 1 KiB, {n} recipient(s), last stanza"),
            format!("{open_us:.0} µs ({:.0}/s)", 1e6 / open_us),
        ));
    }
    // ChaCha20-Poly1305, one core, 64 KiB chunks (the envelope's chunk size).
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).expect("key"));
    let mut buf = vec![0u8; 64 * 1024];
    let total: usize = if p.quick { 256 << 20 } else { 1 << 30 };
    let t = Instant::now();
    for i in 0..total / buf.len() {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| anyhow::anyhow!("seal"))?;
        let _ = std::hint::black_box(tag);
    }
    let mbs = total as f64 / 1e6 / t.elapsed().as_secs_f64();
    rows.push(Row::one("ChaCha20-Poly1305 seal, one core (ring), 64 KiB chunks", format!("{mbs:.0} MB/s")));
    Ok(rows)
}
