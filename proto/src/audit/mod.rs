//! Audit log: record encoding, RFC 9162 Merkle hashing, C2SP checkpoints,
//! inclusion and consistency proofs (to be written by the audit work).
