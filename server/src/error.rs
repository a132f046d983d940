//! The one error type of the relay library, and its single conversion into a
//! gRPC status. Every variant names what was wrong (a config key, a file, an
//! address, a store key) so that an operator or a client can act on it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong starting, running or stopping a relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    // ---- configuration (before any port is bound)
    /// The config file could not be read.
    #[error("config {path}: cannot read: {source}")]
    ConfigRead {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for the relay schema (the message
    /// names the line, the key and what was expected).
    #[error("config {path}: {message}")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// The parser's explanation, with the offending line.
        message: String,
    },
    /// A key has a value the relay refuses.
    #[error("config {path}: {key}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// Dotted key, e.g. `limits.max_message_bytes` or `peers[1].name`.
        key: String,
        /// Why the value is refused.
        reason: String,
    },

    // ---- certificates and TLS
    /// A certificate, key, trust bundle or CRL could not be used.
    #[error("{what}: {source}")]
    Certs {
        /// What was being loaded or built, e.g. `tls.cert` or `TLS server config`.
        what: String,
        /// The PKI error (boxed: it is large).
        source: Box<focal_certs::CertsError>,
    },
    /// The relay's own certificate does not carry the identity the config names.
    #[error("tls.cert: certificate identity {found} is not this relay ({expected}): {reason}")]
    WrongIdentity {
        /// Which part differs, e.g. `role is fp, expected relay`.
        reason: String,
        /// `focal://<network>/relay/<name>` from the config.
        expected: String,
        /// What the certificate carries.
        found: String,
    },

    /// The private key is not the key of the certificate.
    #[error("tls.key {key}: does not match the certificate in tls.cert {cert}")]
    KeyMismatch {
        /// tls.cert
        cert: PathBuf,
        /// tls.key
        key: PathBuf,
    },
    /// The relay's certificate is past its notAfter.
    #[error("tls.cert {path}: certificate expired on {not_after}")]
    CertExpired {
        /// tls.cert
        path: PathBuf,
        /// notAfter, printable.
        not_after: String,
    },
    /// The relay's certificate cannot be used for another reason.
    #[error("tls.cert {path}: {reason}")]
    CertUnusable {
        /// tls.cert
        path: PathBuf,
        /// Why.
        reason: String,
    },

    // ---- sockets
    /// A listen address could not be bound.
    #[error("{key} {addr}: cannot bind: {source}")]
    Bind {
        /// Config key, e.g. `listen.grpc`.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed while running.
    #[error("gRPC server: {0}")]
    Server(String),

    // ---- store
    /// sled refused an operation.
    #[error("store: {context}: {source}")]
    Sled {
        /// What the store was doing.
        context: &'static str,
        /// sled's error.
        source: sled::Error,
    },
    /// A file of the store (payload file, data directory) failed.
    #[error("store: {path}: {source}")]
    StoreIo {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A batch could not be committed; every operation in it failed and
    /// nothing of it is visible.
    #[error("store: commit failed: {0}")]
    Commit(String),
    /// A stored record does not decode (disk corruption or a format bug).
    #[error("store: corrupt record at key {key}: {detail}")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// Decoder detail.
        detail: String,
    },
    /// The store is above `limits.max_store_bytes`.
    #[error("store is full: {used} bytes used, limit {limit} (limits.max_store_bytes)")]
    StoreFull {
        /// Current size in bytes.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The writer's bounded queue is full: the relay is overloaded.
    #[error("relay write queue is full ({capacity} operations waiting); retry later")]
    QueueFull {
        /// Queue capacity.
        capacity: usize,
    },
    /// The writer has stopped (the relay is shutting down).
    #[error("relay store is closed (shutting down)")]
    StoreClosed,
    /// (sender, msg id) was already accepted.
    #[error("message {msg_id} from {sender} was already accepted")]
    Duplicate {
        /// Sender address.
        sender: String,
        /// Hex msg id.
        msg_id: String,
    },
    /// A recipient's mailbox holds `limits.max_mailbox_messages` messages.
    #[error("mailbox of {address} is full ({limit} messages waiting)")]
    MailboxFull {
        /// The recipient.
        address: String,
        /// The limit.
        limit: u64,
    },
    /// The message is not (or no longer) in this mailbox.
    #[error("message {msg_id} from {sender} is not in the mailbox of {address}")]
    NotInMailbox {
        /// Mailbox owner.
        address: String,
        /// Sender address.
        sender: String,
        /// Hex msg id.
        msg_id: String,
    },
    /// No such item in a peer outbox (or it is not the one described).
    #[error("{queue} holds no item {seq} as described: {detail}")]
    NotQueued {
        /// `peer:<name>`.
        queue: String,
        /// The item number asked for.
        seq: u64,
        /// What is (not) there.
        detail: String,
    },
    /// A directory entry would replace a newer one.
    #[error("directory entry of {address}: key_serial {new} is lower than the published {current}")]
    StaleDirectoryEntry {
        /// The address.
        address: String,
        /// Serial of the stored entry.
        current: u32,
        /// Serial offered.
        new: u32,
    },

    /// An admin purge of a queue item that has not expired yet.
    #[error("{what} expires at {expires_at_ms} (relay clock {now_ms}): only expired items can be purged")]
    NotExpired {
        /// The item, e.g. `message <id> from <sender> in mailbox:<address>`.
        what: String,
        /// Its expires_at_ms.
        expires_at_ms: i64,
        /// Relay clock.
        now_ms: i64,
    },

    // ---- audit log
    /// The audit log refused a record or a proof request.
    #[error("audit log: {0}")]
    Audit(String),

    /// Anything else (kept for the contract's callers; prefer a precise variant).
    #[error("{0}")]
    Other(String),
}

impl RelayError {
    pub(crate) fn sled(context: &'static str) -> impl FnOnce(sled::Error) -> RelayError {
        move |source| RelayError::Sled { context, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RelayError {
        let path = path.into();
        move |source| RelayError::StoreIo { path, source }
    }

    pub(crate) fn certs(what: impl Into<String>) -> impl FnOnce(focal_certs::CertsError) -> RelayError {
        let what = what.into();
        move |source| RelayError::Certs { what, source: Box::new(source) }
    }
}

/// The one place relay errors become gRPC statuses.
impl From<RelayError> for tonic::Status {
    fn from(e: RelayError) -> Self {
        use tonic::Status;
        let msg = e.to_string();
        match e {
            RelayError::StoreFull { .. } | RelayError::QueueFull { .. } | RelayError::MailboxFull { .. } => {
                Status::resource_exhausted(msg)
            }
            RelayError::Duplicate { .. } => Status::already_exists(msg),
            RelayError::NotInMailbox { .. } | RelayError::NotQueued { .. } => Status::not_found(msg),
            RelayError::StaleDirectoryEntry { .. } | RelayError::NotExpired { .. } => {
                Status::failed_precondition(msg)
            }
            RelayError::StoreClosed => Status::unavailable(msg),
            _ => Status::internal(msg),
        }
    }
}
