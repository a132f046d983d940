//! The one error type of `focal-client`. Every variant says what was wrong
//! and where (file, profile key, RPC, certificate), so that the CLI can print
//! it as a single line.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Everything that can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The profile file is missing, unreadable, or a key in it is wrong.
    #[error("profile {}: {reason}", path.display())]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// What is wrong, naming the key (e.g. "key `relay`: ...").
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read attachment", "cannot create").
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate, key, trust bundle or CRL problem.
    #[error(transparent)]
    Certs(#[from] focal_certs::CertsError),
    /// Protocol data failed to parse, seal, open or verify.
    #[error(transparent)]
    Proto(#[from] focal_proto::ProtoError),
    /// The relay could not be reached or the TLS handshake failed.
    #[error("cannot connect to relay {relay}: {reason}")]
    Connect {
        /// The relay address from the profile.
        relay: String,
        /// Why.
        reason: String,
    },
    /// The relay answered an RPC with an error status.
    #[error("relay refused {op}: {}: {}", code_name(.status.code()), .status.message())]
    Rpc {
        /// Which operation ("send", "fetch", "lookup of x@carin", ...).
        op: String,
        /// The gRPC status as received.
        status: tonic::Status,
    },
    /// The relay sent something that breaks the protocol.
    #[error("relay protocol error in {op}: {reason}")]
    Protocol {
        /// Which operation.
        op: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Something received failed verification (signature, certificate,
    /// directory entry, digest, attachment hash). Nothing is shown or saved.
    #[error("verification failed for {what}: {reason}")]
    Verify {
        /// What was verified.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// No encryption key in the key directory.
    #[error("no encryption key in {}: run `focal keys init` first", dir.display())]
    NoKey {
        /// The key directory.
        dir: PathBuf,
    },
    /// A message, entry or record does not exist.
    #[error("{what} not found: {id}")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its identifier.
        id: String,
    },
    /// A request is invalid before anything is sent (bad address, duration,
    /// attachment name, conflicting options).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which argument or value.
        what: String,
        /// Why.
        reason: String,
    },
    /// Fetching or verifying an audit log failed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A local store record could not be encoded or decoded.
    #[error("local store record {}: {reason}", path.display())]
    Store {
        /// The record file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClientError::Io { what, path: path.into(), source }
    }

    pub(crate) fn rpc(op: impl Into<String>, status: tonic::Status) -> Self {
        ClientError::Rpc { op: op.into(), status }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ClientError::Invalid { what: what.into(), reason: reason.into() }
    }

    pub(crate) fn verify(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ClientError::Verify { what: what.into(), reason: reason.to_string() }
    }

    /// The gRPC status code if this is a relay refusal.
    pub fn status_code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// The canonical upper-case name of a gRPC status code (`PERMISSION_DENIED`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// True for statuses that mean "the connection broke or the relay was not
/// there", after which a request may be retried; false for refusals.
pub(crate) fn is_transient(status: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(status.code(), Unavailable | Unknown | Cancelled | Aborted | DeadlineExceeded)
        || (status.code() == Internal && status.message().contains("h2 protocol error"))
}
