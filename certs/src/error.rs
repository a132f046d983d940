//! The one error type of `focal-certs`.
//!
//! Every variant names what was wrong (which file, which network, which
//! certificate, which rule) so that a relay can log a precise refusal and the
//! CLI can print a one-line error an operator can act on.

use std::path::PathBuf;

use focal_proto::{Identity, NetworkId, ProtoError, Role};

/// Everything that can go wrong issuing, loading or verifying certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    // ---- files
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists and `--force` was not given.
    #[error("{} already exists (use --force to overwrite)", path.display())]
    Exists {
        /// The file that would have been overwritten.
        path: PathBuf,
    },
    /// PEM input held no usable item of the expected kind, or was malformed.
    #[error("{what}: {reason}")]
    Pem {
        /// What was being read ("certificate file x.pem", "CA key", ...).
        what: String,
        /// Why it was refused.
        reason: String,
    },
    /// A state file of the CLI (issued.toml, revoked.toml) is malformed.
    #[error("{}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    // ---- issuing
    /// An issue request, CA parameter or CLI argument is not acceptable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A certificate or CRL could not be generated.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate given as a network CA is not usable as one.
    #[error("not a usable CA certificate for network {network}: {reason}")]
    BadCa {
        /// The network it was meant to be the CA of (or "?" if unknown).
        network: String,
        /// Why it was refused.
        reason: String,
    },
    /// A private key does not belong to the certificate it was loaded with.
    #[error("the private key does not match the certificate ({what})")]
    KeyMismatch {
        /// Which pair ("CA of carin", "credentials focal://carin/fp/x").
        what: String,
    },

    // ---- trust bundle and CRLs
    /// The trust bundle file is malformed; `key` names the offending entry.
    #[error("trust bundle: {key}: {reason}")]
    Bundle {
        /// The TOML key path, e.g. `networks.carin.ca[0]`.
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// A CRL is malformed or not issued by a CA in the bundle.
    #[error("CRL {what}: {reason}")]
    Crl {
        /// Which CRL (file name or position).
        what: String,
        /// Why it was refused.
        reason: String,
    },

    // ---- certificate verification
    /// The certificate could not be parsed as X.509.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The certificate carries no usable `focal://` SAN URI.
    #[error("certificate identity: {0}")]
    Identity(String),
    /// The certificate key is not Ed25519.
    #[error("certificate of {identity} does not carry an Ed25519 key")]
    NotEd25519 {
        /// The identity the certificate claims.
        identity: String,
    },
    /// The network named in the SAN URI has no CA in the trust bundle.
    #[error("certificate claims {claimed} but network {network} is not in the trust bundle")]
    UnknownNetwork {
        /// The identity claimed.
        claimed: Identity,
        /// Its network.
        network: NetworkId,
    },
    /// The certificate names one network but was issued by another network's CA.
    #[error("certificate claims {claimed} but was issued by the {issuer_network} CA, not the {} CA", claimed.network)]
    WrongNetwork {
        /// The identity claimed.
        claimed: Identity,
        /// The network whose CA actually issued it.
        issuer_network: NetworkId,
    },
    /// The chain does not end at the claimed network's CA.
    #[error("certificate claiming {claimed} is not trusted: {reason}")]
    Untrusted {
        /// The identity claimed.
        claimed: Identity,
        /// Why the chain failed (unknown issuer, bad signature, CA misuse, ...).
        reason: String,
    },
    /// The certificate's validity ended before `now`.
    #[error("certificate of {claimed} expired at unix time {not_after} (now {now})")]
    Expired {
        /// The identity claimed.
        claimed: Identity,
        /// Its notAfter, unix seconds.
        not_after: u64,
        /// The verification time, unix seconds.
        now: u64,
    },
    /// The certificate's validity starts after `now`.
    #[error("certificate of {claimed} is not valid before unix time {not_before} (now {now})")]
    NotYetValid {
        /// The identity claimed.
        claimed: Identity,
        /// Its notBefore, unix seconds.
        not_before: u64,
        /// The verification time, unix seconds.
        now: u64,
    },
    /// The certificate is on its network's CRL.
    #[error("certificate of {claimed} (serial {serial_hex}) is revoked by the {} CRL", claimed.network)]
    Revoked {
        /// The identity claimed.
        claimed: Identity,
        /// Its serial number, hex.
        serial_hex: String,
    },
    /// The network's CRL could not be applied (expired CRL, unknown status).
    #[error("revocation status of {claimed} cannot be established: {reason}")]
    RevocationUnknown {
        /// The identity claimed.
        claimed: Identity,
        /// Why.
        reason: String,
    },
    /// The certificate is not allowed for this use (extended key usage).
    #[error("certificate of {claimed} is not valid for {usage} (extended key usage)")]
    WrongUsage {
        /// The identity claimed.
        claimed: Identity,
        /// "TLS client authentication" or "TLS server authentication".
        usage: &'static str,
    },
    /// The network's CA certificate itself is outside its validity.
    #[error("no CA certificate of network {network} is valid now")]
    CaNotValid {
        /// The network.
        network: NetworkId,
    },

    // ---- policy (TLS listeners and dialers)
    /// A verified identity has a role this endpoint does not accept.
    #[error("{identity} refused: role {role} not accepted here (expected {expected})")]
    WrongRole {
        /// Who.
        identity: Identity,
        /// Their role.
        role: Role,
        /// What is accepted.
        expected: String,
    },
    /// A verified identity belongs to a network this endpoint does not accept.
    #[error("{identity} refused: network {network} not accepted here (expected {expected})")]
    NetworkNotAllowed {
        /// Who.
        identity: Identity,
        /// Their network.
        network: NetworkId,
        /// What is accepted.
        expected: String,
    },
    /// The server certificate is not valid for the name or address dialled.
    #[error("server certificate of {identity} is not valid for {name}")]
    WrongServerName {
        /// Who the server is.
        identity: Identity,
        /// The name or address dialled.
        name: String,
    },
    /// A rustls configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),

    // ---- directory entries
    /// A directory entry is malformed or does not verify.
    #[error("directory entry: {0}")]
    Directory(String),
    /// A protocol-level error (address parsing, signed statements).
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// Result alias of this crate.
pub type Result<T, E = CertsError> = std::result::Result<T, E>;

impl CertsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CertsError::Io { path: path.into(), source }
    }

    pub(crate) fn pem(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        CertsError::Pem { what: what.into(), reason: reason.to_string() }
    }

    pub(crate) fn request(reason: impl Into<String>) -> Self {
        CertsError::InvalidRequest(reason.into())
    }

    /// The identity a certificate claimed, when the error is about one.
    pub fn claimed(&self) -> Option<&Identity> {
        match self {
            CertsError::UnknownNetwork { claimed, .. }
            | CertsError::WrongNetwork { claimed, .. }
            | CertsError::Untrusted { claimed, .. }
            | CertsError::Expired { claimed, .. }
            | CertsError::NotYetValid { claimed, .. }
            | CertsError::Revoked { claimed, .. }
            | CertsError::RevocationUnknown { claimed, .. }
            | CertsError::WrongUsage { claimed, .. } => Some(claimed),
            CertsError::WrongRole { identity, .. }
            | CertsError::NetworkNotAllowed { identity, .. }
            | CertsError::WrongServerName { identity, .. } => Some(identity),
            _ => None,
        }
    }

    /// The rustls error a TLS verifier reports for this refusal; the alert
    /// sent to the peer follows from it (certificate_expired, bad_certificate, ...).
    pub(crate) fn to_rustls(&self) -> rustls::Error {
        use rustls::CertificateError as C;
        let kind = match self {
            CertsError::Expired { .. } => C::Expired,
            CertsError::NotYetValid { .. } => C::NotValidYet,
            CertsError::Revoked { .. } => C::Revoked,
            CertsError::RevocationUnknown { .. } => C::UnknownRevocationStatus,
            CertsError::UnknownNetwork { .. } | CertsError::WrongNetwork { .. } => C::UnknownIssuer,
            CertsError::WrongUsage { .. } => C::InvalidPurpose,
            CertsError::WrongServerName { .. } => C::NotValidForName,
            CertsError::WrongRole { .. } | CertsError::NetworkNotAllowed { .. } => {
                C::ApplicationVerificationFailure
            }
            CertsError::Malformed(_) => C::BadEncoding,
            other => C::Other(rustls::OtherError(std::sync::Arc::new(ErrorText(other.to_string())))),
        };
        rustls::Error::InvalidCertificate(kind)
    }
}

/// A refusal reason carried inside `rustls::OtherError`.
#[derive(Debug)]
struct ErrorText(String);

impl std::fmt::Display for ErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ErrorText {}
