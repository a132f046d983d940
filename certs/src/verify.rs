//! Identity from a certificate, and the full verification that makes it
//! trustworthy.
//!
//! The rule this crate exists for: a certificate is valid for the identity in
//! its SAN URI `focal://<network>/<role>/<name>` only if its chain ends at a CA
//! of **that network** in the trust bundle. So the verifier first reads the
//! claim, then offers rustls-webpki only the claimed network's CA(s) as trust
//! anchors and only the CRL(s) those CAs issued. A CARIN CA can therefore never
//! vouch for an `arinsa` identity, and a CARIN CRL can never revoke (or fail to
//! revoke) an ARINSA certificate.
//!
//! Checks, in order: exactly one `focal://` SAN URI; network in the bundle;
//! Ed25519 key; a CA of that network valid at `now`; chain signature, validity
//! at `now`, not-a-CA leaf / CA-only issuers, extended key usage (required to be
//! present and to list the usage), and the CA's CRL if one is loaded (a loaded
//! CRL past its nextUpdate refuses every certificate of that CA: fail closed).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use focal_proto::{Identity, NetworkId};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::bundle::TrustStore;
use crate::error::{CertsError, Result};
use crate::verify_cache::{Memo, VerifyCache};

/// DER content of the id-kp-serverAuth OID (1.3.6.1.5.5.7.3.1).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// DER content of the id-kp-clientAuth OID (1.3.6.1.5.5.7.3.2).
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// The only signature algorithm accepted in chains: Ed25519 everywhere.
static CHAIN_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[webpki::ring::ED25519];

/// What a certificate is being verified for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Usage {
    /// TLS client authentication (every Focal leaf certificate): also the
    /// usage for certificates that sign envelopes, receipts and directory entries.
    Client,
    /// TLS server authentication (relay certificates only).
    Server,
}

impl Usage {
    fn eku(self) -> webpki::KeyUsage {
        match self {
            Usage::Client => webpki::KeyUsage::required(EKU_CLIENT_AUTH),
            Usage::Server => webpki::KeyUsage::required(EKU_SERVER_AUTH),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Usage::Client => "TLS client authentication",
            Usage::Server => "TLS server authentication",
        }
    }
}

/// Who a verified certificate belongs to.
#[derive(Clone, Debug)]
pub struct VerifiedPeer {
    /// The identity from the SAN URI, vouched for by its network's CA.
    pub identity: Identity,
    /// The raw Ed25519 public key of the certificate (the identity key).
    pub ed25519_public: [u8; 32],
    /// End of the certificate's validity.
    pub not_after: SystemTime,
}

/// Full check: chain to the CA of the network named in the SAN URI, validity
/// at `now`, CRL of that network, extended key usage clientAuth (which every
/// Focal certificate carries; relays also carry serverAuth).
pub fn verify_peer(
    store: &TrustStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<VerifiedPeer> {
    verify_peer_for(store, end_entity, intermediates, now, Usage::Client)
}

/// As [`verify_peer`], for an explicit usage (e.g. [`Usage::Server`] when
/// checking a relay's server certificate outside TLS).
pub fn verify_peer_for(
    store: &TrustStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: SystemTime,
    usage: Usage,
) -> Result<VerifiedPeer> {
    verify_at(store, end_entity, intermediates, unix_time(now)?, usage)
}

pub(crate) fn verify_at(
    store: &TrustStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: Usage,
) -> Result<VerifiedPeer> {
    // A chain with intermediates is rare (Focal CAs issue leaves directly):
    // only the direct case is remembered.
    let memo_key = intermediates.is_empty().then(|| VerifyCache::key(end_entity.as_ref(), usage));
    let now_i64 = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if let Some(key) = &memo_key
        && let Some(peer) = store.verify_cache().get(key, now_i64)
    {
        return Ok(peer);
    }
    let info = CertInfo::parse(end_entity)?;
    let claimed = info.identity.clone();
    let Some(net) = store.network(&claimed.network) else {
        return Err(CertsError::UnknownNetwork { network: claimed.network.clone(), claimed });
    };
    let Some(ed25519_public) = info.ed25519_public else {
        return Err(CertsError::NotEd25519 { identity: claimed.uri() });
    };
    let ee = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| CertsError::Malformed(format!("{claimed}: {e}")))?;

    let now_secs = now.as_secs();
    let mut last_err = None;
    for ca in net.cas.iter().filter(|ca| ca.valid_at(now_secs)) {
        let crls: Vec<&webpki::CertRevocationList<'static>> = ca.crl.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::EndEntity)
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build()
        });
        match ee.verify_for_usage(
            CHAIN_ALGS,
            std::slice::from_ref(&ca.anchor),
            intermediates,
            now,
            usage.eku(),
            revocation,
            None,
        ) {
            Ok(_) => {
                let peer = VerifiedPeer { identity: claimed, ed25519_public, not_after: info.not_after };
                if let Some(key) = memo_key {
                    let (ca_from, ca_until) = ca.validity();
                    // A loaded CRL refuses everything from its nextUpdate on.
                    let crl_until = ca.crl_next_update.map_or(i64::MAX, |t| t.saturating_sub(1));
                    let memo = Memo {
                        peer: peer.clone(),
                        valid_from: unix_secs(info.not_before).max(ca_from),
                        valid_until: unix_secs(info.not_after).min(ca_until).min(crl_until),
                    };
                    store.verify_cache().put(key, memo);
                }
                return Ok(peer);
            }
            // A CA that holds a CRL has spoken: another CA certificate of the
            // network must not get a second opinion.
            Err(
                e @ (webpki::Error::CertRevoked
                | webpki::Error::UnknownRevocationStatus
                | webpki::Error::CrlExpired { .. }),
            ) => return Err(map_webpki(e, &info, store, usage, now_secs)),
            Err(e) => last_err = Some(e),
        }
    }
    let Some(err) = last_err else {
        return Err(CertsError::CaNotValid { network: claimed.network });
    };
    Err(map_webpki(err, &info, store, usage, now_secs))
}

/// Turns a webpki refusal into an error naming the identity and the rule.
fn map_webpki(err: webpki::Error, info: &CertInfo, store: &TrustStore, usage: Usage, now: u64) -> CertsError {
    use webpki::Error as W;
    let claimed = info.identity.clone();
    match err {
        W::CertExpired { .. } => CertsError::Expired { claimed, not_after: secs(info.not_after), now },
        W::CertNotValidYet { .. } => {
            CertsError::NotYetValid { claimed, not_before: secs(info.not_before), now }
        }
        W::CertRevoked => CertsError::Revoked { claimed, serial_hex: info.serial_hex.clone() },
        W::UnknownRevocationStatus | W::CrlExpired { .. } => {
            CertsError::RevocationUnknown { claimed, reason: format!("{err:?}") }
        }
        W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
            CertsError::WrongUsage { claimed, usage: usage.describe() }
        }
        W::UnknownIssuer => match store.network_of_issuer(&info.issuer_raw) {
            Some(other) if other != claimed.network => {
                CertsError::WrongNetwork { claimed, issuer_network: other }
            }
            _ => CertsError::Untrusted {
                claimed: claimed.clone(),
                reason: format!("issuer {:?} is not a CA of network {}", info.issuer, claimed.network),
            },
        },
        W::CaUsedAsEndEntity => {
            CertsError::Untrusted { claimed, reason: "a CA certificate cannot be used as an identity".into() }
        }
        W::EndEntityUsedAsCa => {
            CertsError::Untrusted { claimed, reason: "chain uses a non-CA certificate as an issuer".into() }
        }
        W::InvalidSignatureForPublicKey => CertsError::Untrusted {
            reason: format!(
                "its signature does not verify with the key of any {} CA (a different CA using the same name?)",
                claimed.network
            ),
            claimed,
        },
        other => CertsError::Untrusted { claimed, reason: format!("{other:?}") },
    }
}

/// Parses the SAN URI only (for certificates the TLS layer already verified).
pub fn identity_of_cert(der: &[u8]) -> Result<Identity> {
    let (_, cert) = parse(der)?;
    identity_from_x509(&cert)
}

/// The facts of a certificate this crate needs, parsed once.
#[derive(Clone, Debug)]
pub(crate) struct CertInfo {
    pub(crate) identity: Identity,
    pub(crate) ed25519_public: Option<[u8; 32]>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    pub(crate) serial_hex: String,
    pub(crate) issuer: String,
    pub(crate) issuer_raw: Vec<u8>,
    pub(crate) dns: Vec<String>,
    pub(crate) ips: Vec<IpAddr>,
}

impl CertInfo {
    pub(crate) fn parse(der: &[u8]) -> Result<Self> {
        let (_, cert) = parse(der)?;
        let identity = identity_from_x509(&cert)?;
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            identity,
            ed25519_public: ed25519_key(&cert),
            not_before: time_of(cert.validity().not_before.timestamp()),
            not_after: time_of(cert.validity().not_after.timestamp()),
            serial_hex: serial_hex(cert.raw_serial()),
            issuer: cert.issuer().to_string(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            dns,
            ips,
        })
    }
}

pub(crate) fn parse(der: &[u8]) -> Result<(&[u8], X509Certificate<'_>)> {
    x509_parser::parse_x509_certificate(der).map_err(|e| CertsError::Malformed(e.to_string()))
}

/// Reads the identity: exactly one `focal:` SAN URI, well formed.
pub(crate) fn identity_from_x509(cert: &X509Certificate<'_>) -> Result<Identity> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertsError::Identity(format!("unreadable subjectAltName extension: {e}")))?;
    let Some(san) = san else {
        return Err(CertsError::Identity("no subjectAltName extension, so no focal:// SAN URI".into()));
    };
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .filter(|u| u.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("focal:")))
        .collect();
    match uris.as_slice() {
        [] => Err(CertsError::Identity("no focal:// SAN URI".into())),
        [one] => Identity::from_uri(one).map_err(|e| CertsError::Identity(format!("malformed SAN URI: {e}"))),
        many => Err(CertsError::Identity(format!(
            "{} focal:// SAN URIs ({}); exactly one is allowed",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// The raw key if the certificate's key is Ed25519.
pub(crate) fn ed25519_key(cert: &X509Certificate<'_>) -> Option<[u8; 32]> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return None;
    }
    <[u8; 32]>::try_from(&*spki.subject_public_key.data).ok()
}

/// Lower-case hex of a serial's magnitude (leading zero bytes dropped).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

pub(crate) fn unix_time(t: SystemTime) -> Result<UnixTime> {
    t.duration_since(UNIX_EPOCH)
        .map(UnixTime::since_unix_epoch)
        .map_err(|_| CertsError::request("time before 1970"))
}

pub(crate) fn time_of(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

pub(crate) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The network whose CA's common name is `Focal <net> CA`, if any.
pub(crate) fn network_of_ca_name(cn: &str) -> Option<NetworkId> {
    cn.strip_prefix("Focal ")?.strip_suffix(" CA").and_then(|n| NetworkId::new(n).ok())
}

/// Seconds since the Unix epoch of `t` (negative before it).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
