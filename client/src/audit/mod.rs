//! Auditor side of a network's audit log: fetch it from the relay into a
//! local directory, verify it offline, trace a message across several
//! networks' logs, export it and summarise it. No content is ever involved:
//! the log holds metadata records only.
//!
//! A log directory holds:
//! - `entries.bin`: every leaf in order, each as `u64 BE index ‖ u32 BE length ‖ leaf bytes`;
//! - `checkpoints/<size, 20 digits>.note`: each signed checkpoint received
//!   (with the witness cosignatures the relay had for it);
//! - `state.json`: the last checkpoint this auditor accepted (size, root,
//!   Merkle frontier, byte length of `entries.bin` at that size). `fetch` and
//!   `verify` refuse any log that does not extend it (rollback or fork).
//!
//! Bytes of `entries.bin` past the accepted entries (an interrupted fetch
//! keeps them to resume) are never read as accepted: `verify` stops at the
//! latest checkpoint's size and `trace`, `export` and `stats` at the state
//! file's, and [`left_over_bytes`] counts the rest (see `fetch` for when it
//! keeps or cuts them).
//!
//! The functions here are what `focal audit fetch|verify|trace|export|stats`
//! call; they return [`AuditError`], whose messages name what is wrong.

mod dir;
mod fetch;
mod report;
mod verify;

use std::path::PathBuf;

use focal_proto::ProtoError;

pub use dir::left_over_bytes;
pub use fetch::{FetchReport, fetch};
pub use report::{DayStats, ExportFormat, Stats, TraceEvent, export, parse_msg_id, stats, trace};
pub use verify::{VerifyReport, verify};

/// Everything that can go wrong fetching or checking an audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Verification failed (signature, root, proof, rollback, fork, malformed leaf…).
    #[error(transparent)]
    Verify(#[from] ProtoError),
    /// Verification of a named item failed.
    #[error("{what}: {source}")]
    At {
        /// Which file or range.
        what: String,
        /// What is wrong with it.
        source: ProtoError,
    },
    /// The entries file is damaged or out of order.
    #[error("entries file {path}: {detail}")]
    Entries {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        detail: String,
    },
    /// The state file is unreadable.
    #[error("state file {path}: {detail}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The directory has no checkpoint.
    #[error("{0}: no checkpoint in this log directory; run `focal audit fetch` first")]
    NoCheckpoint(PathBuf),
    /// The directory has no accepted checkpoint (no state file) to read entries up to.
    #[error(
        "{0}: no accepted checkpoint (no state.json); run `focal audit verify` or `focal audit fetch` first"
    )]
    NotAccepted(PathBuf),
    /// The configured log key differs from the one the directory or relay uses.
    #[error("log key mismatch: {0}")]
    KeyMismatch(String),
    /// The relay answered with an error.
    #[error("relay refused: {0}")]
    Rpc(Box<tonic::Status>),
    /// The relay broke the protocol (wrong index, short stream…).
    #[error("relay misbehaved: {0}")]
    Relay(String),
    /// A bad argument (msg id, witness spec…).
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<tonic::Status> for AuditError {
    fn from(s: tonic::Status) -> Self {
        // A transport failure (e.g. the relay's TLS layer refusing this
        // certificate) keeps its cause in the source chain: name it.
        let mut cause = None;
        let mut src = std::error::Error::source(&s);
        while let Some(e) = src {
            cause = Some(e.to_string());
            src = e.source();
        }
        match cause {
            Some(c) if !s.message().contains(&c) => {
                let status = tonic::Status::new(s.code(), format!("{}: {c}", s.message()));
                AuditError::Rpc(Box::new(status))
            }
            _ => AuditError::Rpc(Box::new(s)),
        }
    }
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
        move |source| AuditError::Io { path: path.to_owned(), source }
    }
}
