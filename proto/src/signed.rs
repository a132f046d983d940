//! Signed statements (`SignedBlob`): receipts, directory entries, releases.
//! The signature is Ed25519 over `tag || body` by the key of `signer_cert`.
//!
//! Every tag ends in NUL and contains no other NUL, so no `tag || body` of one
//! kind equals that of another kind, nor the envelope's
//! [`crate::envelope::SIG_DOMAIN`] message. Only the signature is checked
//! here; whether `signer_cert` chains to the right network CA and may sign
//! this kind of statement is decided by focal-certs and the caller.

use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use x509_parser::oid_registry::OID_SIG_ED25519;

use crate::error::{ProtoError, Result};
use crate::pb;

/// Tag of receipts (`pb::ReceiptBody`).
pub const TAG_RECEIPT: &[u8] = b"focal/v1/receipt\0";
/// Tag of directory entries (`pb::DirectoryEntryBody`).
pub const TAG_DIRECTORY: &[u8] = b"focal/v1/directory\0";
/// Tag of releases for onward sending (`pb::Release`).
pub const TAG_RELEASE: &[u8] = b"focal/v1/release\0";

fn message(tag: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + body.len());
    m.extend_from_slice(tag);
    m.extend_from_slice(body);
    m
}

fn what(tag: &[u8]) -> &'static str {
    match tag {
        TAG_RECEIPT => "receipt",
        TAG_DIRECTORY => "directory entry",
        TAG_RELEASE => "release",
        _ => "signed statement",
    }
}

/// Signs `tag || body` with `key`; `signer_cert_der` is carried for the verifier.
pub fn sign_blob(tag: &[u8], body: Vec<u8>, key: &Ed25519KeyPair, signer_cert_der: &[u8]) -> pb::SignedBlob {
    let signature = key.sign(&message(tag, &body)).as_ref().to_vec();
    pb::SignedBlob { body, signature, signer_cert: signer_cert_der.to_vec() }
}

/// Checks the signature against the key in `blob.signer_cert` (chain checked elsewhere).
///
/// Errors are [`ProtoError::InvalidSigned`] naming the statement kind.
pub fn verify_blob(tag: &[u8], blob: &pb::SignedBlob) -> Result<()> {
    let fail = |reason: String| ProtoError::InvalidSigned { what: what(tag), reason };
    let key =
        ed25519_key_from_cert(&blob.signer_cert).map_err(|e| fail(format!("signer certificate: {e}")))?;
    if blob.signature.len() != 64 {
        return Err(fail(format!("signature is {} bytes, expected 64", blob.signature.len())));
    }
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&message(tag, &blob.body), &blob.signature)
        .map_err(|_| fail("signature does not verify".into()))
}

/// The raw Ed25519 public key of a certificate (DER), or an error if the
/// certificate does not carry an Ed25519 key.
pub fn ed25519_key_from_cert(der: &[u8]) -> Result<[u8; 32]> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| ProtoError::BadKey(format!("certificate does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(ProtoError::BadKey(format!(
            "{} bytes of trailing data after the certificate",
            rest.len()
        )));
    }
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(ProtoError::BadKey(format!(
            "certificate key is not Ed25519 (algorithm {})",
            spki.algorithm.algorithm
        )));
    }
    // RFC 8410: the parameters are absent and the key is 32 bytes.
    if spki.algorithm.parameters.is_some() {
        return Err(ProtoError::BadKey("Ed25519 key algorithm has parameters".into()));
    }
    let key = &spki.subject_public_key;
    key.data
        .as_ref()
        .try_into()
        .map_err(|_| ProtoError::BadKey(format!("Ed25519 key is {} bytes, expected 32", key.data.len())))
}
