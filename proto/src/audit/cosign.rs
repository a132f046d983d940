//! Witness cosignatures (C2SP tlog-cosignature, Ed25519 `cosignature/v1`):
//! a witness signs `cosignature/v1\ntime <secs>\n` followed by the checkpoint
//! body, with key id SHA-256(name || "\n" || 0x04 || pubkey)[:4], and the
//! signature line carries `key id || u64 BE timestamp || Ed25519 signature`.
//!
//! [`WitnessState`] is the pure logic a relay runs when asked to cosign a
//! peer's checkpoint: remember the last size and root per origin, and refuse
//! rollbacks, forks and unproven growth.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use signed_note::{Signature, Verifier};
use tlog_tiles::Hash;

use super::checkpoint::{
    CheckpointBody, LogKey, check_key_name, key_from_pkcs8, parse_note, parse_signature_line,
    signature_lines, split_note,
};
use super::merkle::{TreeHead, verify_consistency};
use crate::error::{ProtoError, Result};

/// Signature type byte of Ed25519 `cosignature/v1` keys.
const ALG_COSIGNATURE_V1: u8 = 0x04;

fn cosigned_message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// A witness's signing key.
pub struct WitnessSigner {
    name: String,
    id: u32,
    key: Ed25519KeyPair,
}

impl WitnessSigner {
    /// A witness named `name` (e.g. `focal/carin/relay.carin`) with a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, der: &[u8]) -> Result<Self> {
        check_key_name(name)?;
        let key = key_from_pkcs8(der)?;
        let id = signed_note::key_id(name, &[&[ALG_COSIGNATURE_V1], key.public_key().as_ref()].concat());
        Ok(WitnessSigner { name: name.to_owned(), id, key })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifier key `name+id+base64(0x04||pubkey)` that auditors configure.
    pub fn verifier_key(&self) -> String {
        let material = [&[ALG_COSIGNATURE_V1], self.key.public_key().as_ref()].concat();
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(material))
    }

    /// The signature line (`— name base64(...)\n`) cosigning checkpoint body
    /// `text` (newline-terminated) at `timestamp` seconds.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String> {
        if timestamp > i64::MAX as u64 {
            return Err(ProtoError::Witness(format!("timestamp {timestamp} exceeds 2^63-1")));
        }
        let sig = self.key.sign(&cosigned_message(timestamp, text.as_bytes()));
        let bytes = [&timestamp.to_be_bytes()[..], sig.as_ref()].concat();
        let sig = Signature::new(self.name.clone(), self.id, bytes)
            .map_err(|e| ProtoError::BadKey(e.to_string()))?;
        String::from_utf8(sig.to_bytes()).map_err(|_| ProtoError::Witness("not UTF-8".into()))
    }
}

/// A witness's verifier key, usable as a `signed_note::Verifier`.
#[derive(Clone, Debug)]
pub struct WitnessKey {
    name: String,
    id: u32,
    key: [u8; 32],
}

impl WitnessKey {
    /// Parses `name+id+base64(0x04||pubkey)`.
    pub fn parse(vkey: &str) -> Result<Self> {
        let bad = |why: &str| ProtoError::BadKey(format!("witness key {vkey:?}: {why}"));
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id16), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+id+base64"));
        };
        if !signed_note::is_key_name_valid(name) || id16.len() != 8 {
            return Err(bad("bad name or key id"));
        }
        let id = u32::from_str_radix(id16, 16).map_err(|_| bad("key id is not hex"))?;
        let material = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        if material.len() != 33 || material[0] != ALG_COSIGNATURE_V1 {
            return Err(bad("not an Ed25519 cosignature/v1 key (type 0x04, 32 bytes)"));
        }
        if signed_note::key_id(name, &material) != id {
            return Err(bad("key id does not match the key"));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&material[1..]);
        Ok(WitnessKey { name: name.to_owned(), id, key })
    }

    /// The witness's name.
    pub fn witness_name(&self) -> &str {
        &self.name
    }
}

impl Verifier for WitnessKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 8 + 64 {
            return false;
        }
        let ts = u64::from_be_bytes(sig[..8].try_into().unwrap_or_default());
        if ts > i64::MAX as u64 {
            return false;
        }
        UnparsedPublicKey::new(&ED25519, &self.key).verify(&cosigned_message(ts, msg), &sig[8..]).is_ok()
    }
}

/// A verified cosignature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// Witness name.
    pub witness: String,
    /// When the witness signed (seconds since the epoch).
    pub timestamp: u64,
}

/// Verifies the cosignatures on `note` by the configured `witnesses` and
/// requires at least `required` distinct valid ones. Every signature line
/// carrying a configured witness key is checked, not only the first: one that
/// does not verify is an error even beyond the quorum (someone altered it, or
/// put a bad line beside a good one). A witness counts once however many
/// valid lines it has and however often it is configured (witnesses are
/// told apart by name). The log's own signature is checked separately
/// ([`LogKey::verify_checkpoint`]).
pub fn verify_cosignatures(
    note: &str,
    witnesses: &[WitnessKey],
    required: usize,
) -> Result<Vec<Cosignature>> {
    let parsed = parse_note(note)?;
    let mut cosigs: Vec<Cosignature> = Vec::new();
    for (n, sig) in signature_lines(note)?.into_iter().enumerate() {
        let keys: Vec<&WitnessKey> =
            witnesses.iter().filter(|w| w.name == sig.name() && w.id == sig.id()).collect();
        if keys.is_empty() {
            continue;
        }
        if !keys.iter().any(|k| k.verify(parsed.text(), sig.signature())) {
            return Err(ProtoError::Witness(format!(
                "the cosignature by witness {}+{:08x} (signature line {}) does not verify",
                sig.name(),
                sig.id(),
                n + 1
            )));
        }
        if !cosigs.iter().any(|c| c.witness == sig.name()) {
            let ts = sig.signature().get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            cosigs.push(Cosignature { witness: sig.name().to_owned(), timestamp: ts.unwrap_or_default() });
        }
    }
    if cosigs.len() < required {
        let mut configured: Vec<&str> = witnesses.iter().map(|w| w.name.as_str()).collect();
        configured.sort_unstable();
        configured.dedup();
        let names: Vec<&str> = cosigs.iter().map(|c| c.witness.as_str()).collect();
        return Err(ProtoError::Witness(format!(
            "{required} required, {} valid from the {} configured witnesses{}",
            cosigs.len(),
            configured.len(),
            if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) }
        )));
    }
    Ok(cosigs)
}

/// Adds (or replaces, for the same witness key) a cosignature line on a
/// checkpoint note. The line must be a well-formed signature line
/// (`— name base64(key id || signature)`, as it encodes back) and must not
/// carry the log key's name (the checkpoint's origin): only the log signs
/// under that name, and a line under it would replace or double the log's
/// own signature. The result must stay within the note limits.
pub fn add_cosignature(note: &str, line: &str) -> Result<String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let new = parse_signature_line(line).ok_or_else(|| {
        ProtoError::Witness(format!(
            "malformed cosignature line {line:?}: expected \"— <name> <base64 of key id and signature>\""
        ))
    })?;
    let (text, lines) = split_note(note)?;
    let origin = CheckpointBody::parse(text.as_bytes())?.origin;
    if new.name() == origin {
        return Err(ProtoError::Witness(format!(
            "a cosignature line carries the log key's own name {origin} (key id {:08x}): only the log signs under its origin",
            new.id()
        )));
    }
    let mut out = format!("{text}\n");
    for l in lines {
        let same_key =
            Signature::from_bytes(l.as_bytes()).is_ok_and(|s| s.name() == new.name() && s.id() == new.id());
        if !same_key {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str(line);
    out.push('\n');
    parse_note(&out)?;
    Ok(out)
}

/// What a witness remembers: the last tree head it cosigned per log origin.
#[derive(Clone, Debug, Default)]
pub struct WitnessState {
    heads: BTreeMap<String, TreeHead>,
}

impl WitnessState {
    /// No log seen yet.
    pub fn new() -> Self {
        WitnessState::default()
    }

    /// Restores saved heads.
    pub fn from_heads<I: IntoIterator<Item = (String, TreeHead)>>(heads: I) -> Self {
        WitnessState { heads: heads.into_iter().collect() }
    }

    /// The last head cosigned for `origin`.
    pub fn head(&self, origin: &str) -> Option<TreeHead> {
        self.heads.get(origin).copied()
    }

    /// All heads, for saving.
    pub fn heads(&self) -> impl Iterator<Item = (&str, TreeHead)> {
        self.heads.iter().map(|(o, h)| (o.as_str(), *h))
    }

    /// Forgets `origin`: its next checkpoint is a first contact again.
    /// Returns the head forgotten.
    pub fn forget(&mut self, origin: &str) -> Option<TreeHead> {
        self.heads.remove(origin)
    }

    /// Checks `note` (signed by `log`) and, if it extends what this witness
    /// saw (`proof` is a consistency proof from `old_size`, which must be the
    /// size the witness last cosigned, or 0 for a first contact), records it
    /// and returns the cosignature line.
    pub fn cosign(
        &mut self,
        signer: &WitnessSigner,
        log: &LogKey,
        note: &str,
        old_size: u64,
        proof: &[Hash],
        now_secs: u64,
    ) -> Result<String> {
        let cp = log.verify_checkpoint(note)?;
        let new = cp.head();
        let origin = cp.body.origin.clone();
        if let Some(seen) = self.heads.get(&origin).copied() {
            if new.size < seen.size {
                return Err(ProtoError::Rollback { seen_size: seen.size, new_size: new.size });
            }
            if old_size != seen.size {
                return Err(ProtoError::Witness(format!(
                    "this witness last cosigned {origin} at size {}; send a consistency proof from that size, not {old_size}",
                    seen.size
                )));
            }
            if new.size == seen.size && new.root != seen.root {
                return Err(ProtoError::Fork(format!(
                    "{origin} signed two different roots for size {}: {} cosigned before, {} now",
                    seen.size, seen.root, new.root
                )));
            }
            verify_consistency(&seen, &new, proof).map_err(|e| {
                ProtoError::Fork(format!(
                    "{origin} at size {} is not an extension of size {} cosigned before ({e})",
                    new.size, seen.size
                ))
            })?;
        }
        let line = signer.cosign(cp.text(), now_secs)?;
        self.heads.insert(origin, new);
        Ok(line)
    }
}
