//! Signed statements (`SignedBlob`): receipts, directory entries, releases.
//! The signature is Ed25519 over `tag || body` by the key of `signer_cert`.
//!
//! CONTRACT (implemented by the envelope work; signatures are fixed):
#![allow(clippy::todo, unused_variables, missing_docs)]

use crate::error::Result;
use crate::pb;

pub const TAG_RECEIPT: &[u8] = b"focal/v1/receipt\0";
pub const TAG_DIRECTORY: &[u8] = b"focal/v1/directory\0";
pub const TAG_RELEASE: &[u8] = b"focal/v1/release\0";

pub fn sign_blob(
    tag: &[u8],
    body: Vec<u8>,
    key: &ring::signature::Ed25519KeyPair,
    signer_cert_der: &[u8],
) -> pb::SignedBlob {
    todo!()
}

/// Checks the signature against the key in `blob.signer_cert` (chain checked elsewhere).
pub fn verify_blob(tag: &[u8], blob: &pb::SignedBlob) -> Result<()> {
    todo!()
}

/// The raw Ed25519 public key of a certificate (DER), or an error if the
/// certificate does not carry an Ed25519 key.
pub fn ed25519_key_from_cert(der: &[u8]) -> Result<[u8; 32]> {
    todo!()
}
