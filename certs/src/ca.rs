//! A network's certificate authority: generation, loading, issuing role
//! certificates and signing CRLs (rcgen, Ed25519 everywhere).
//!
//! Profile:
//! - CA: subject `CN=Focal <net> CA, O=Focal`, basicConstraints CA with
//!   pathLen 0 (no intermediates), keyUsage keyCertSign + cRLSign.
//! - Leaf: subject `CN=<name>, OU=<role>, O=Focal <net>` (informational only;
//!   identity comes from the SAN URI `focal://<net>/<role>/<name>`), DNS/IP
//!   SANs as requested, basicConstraints CA:FALSE, keyUsage digitalSignature,
//!   extendedKeyUsage clientAuth (+ serverAuth for relays, which also dial
//!   their peers as clients), a random 128-bit serial, and the requested
//!   validity capped at the CA's own notAfter (a leaf never outlives its CA).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use focal_proto::{Identity, NetworkId, Role};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::bundle::{check_ca_cert, pem_encode};
use crate::error::{CertsError, Result};
use crate::verify::time_of;

const HOUR: Duration = Duration::from_secs(3600);

/// The longest validity a CA, certificate or CRL may be given (100 years):
/// X.509 dates end in 9999, and the date arithmetic panics beyond.
pub const MAX_VALIDITY_DAYS: u32 = 36_500;

/// `Err` naming `what` if `days` is 0 or above [`MAX_VALIDITY_DAYS`].
fn check_days(what: &str, days: u32) -> Result<()> {
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(CertsError::request(format!("{what} must be 1 to {MAX_VALIDITY_DAYS} days, got {days}")));
    }
    Ok(())
}

/// `n` days.
fn days_(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// A network's certificate authority (Ed25519 key).
pub struct NetworkCa {
    network: NetworkId,
    cert_der: CertificateDer<'static>,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for NetworkCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkCa").field("network", &self.network).finish_non_exhaustive()
    }
}

/// What to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The role granted.
    pub role: Role,
    /// The holder's name within the network.
    pub name: String,
    /// DNS SANs (relays: the names peers and clients dial).
    pub dns: Vec<String>,
    /// IP SANs (relays: the addresses peers and clients dial).
    pub ips: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity (capped at the CA's notAfter).
    pub not_after: SystemTime,
}

impl IssueRequest {
    /// Valid from one hour ago for 365 days.
    pub fn new(role: Role, name: &str) -> Self {
        let now = SystemTime::now();
        IssueRequest {
            role,
            name: name.to_owned(),
            dns: Vec::new(),
            ips: Vec::new(),
            not_before: now - HOUR,
            not_after: now + days_(365),
        }
    }

    /// Valid from one hour ago for `days` days.
    pub fn for_days(role: Role, name: &str, days: u32) -> Self {
        let mut req = IssueRequest::new(role, name);
        req.not_after = SystemTime::now() + days_(days.min(MAX_VALIDITY_DAYS));
        req
    }
}

/// An issued certificate and its private key (PEM).
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 Ed25519 private key, PEM.
    pub key_pem: Zeroizing<String>,
    /// The serial number, lower-case hex (what CRLs and `issued.toml` record).
    pub serial_hex: String,
    /// Who the certificate names.
    pub identity: Identity,
}

/// One revoked certificate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    /// Serial number, hex.
    pub serial_hex: String,
    /// When it was revoked, unix seconds.
    pub revoked_at: u64,
}

impl NetworkCa {
    /// Generates a new CA for `network`, valid from one hour ago for `validity_days`.
    pub fn generate(network: &NetworkId, validity_days: u32) -> Result<Self> {
        check_days("CA validity", validity_days)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("Focal {network} CA"));
        params.distinguished_name.push(DnType::OrganizationName, "Focal");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::from(now - HOUR);
        params.not_after = OffsetDateTime::from(now + days_(validity_days));
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        let not_after = time_of(params.not_after.unix_timestamp());
        Ok(NetworkCa { network: network.clone(), cert_der, not_after, issuer })
    }

    /// Loads a CA from its certificate and PKCS#8 key (PEM), checking that the
    /// certificate is a Focal CA and that the key is its key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CertsError::pem("CA certificate", e))?;
        let facts = check_ca_cert(&cert_der, None)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertsError::pem("CA private key", e))?;
        let what = format!("CA of {}", facts.network);
        if key.algorithm() != &rcgen::PKCS_ED25519 || key.public_key_raw() != facts.ed25519_public {
            return Err(CertsError::KeyMismatch { what });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(NetworkCa { network: facts.network, cert_der, not_after: time_of(facts.not_after), issuer })
    }

    /// End of this CA's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The network this CA serves.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA's PKCS#8 private key, PEM.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Issues a role certificate with a fresh Ed25519 key.
    pub fn issue(&self, req: &IssueRequest) -> Result<IssuedCert> {
        let identity = Identity::new(self.network.clone(), req.role, &req.name)?;
        let not_after = req.not_after.min(self.not_after);
        if not_after <= req.not_before {
            return Err(CertsError::request(format!(
                "{identity}: validity is empty (notAfter is not after notBefore{})",
                if req.not_after > self.not_after { ", after capping at the CA's notAfter" } else { "" }
            )));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, req.name.as_str());
        params.distinguished_name.push(DnType::OrganizationalUnitName, req.role.as_str());
        params.distinguished_name.push(DnType::OrganizationName, format!("Focal {}", self.network));
        let uri = identity.uri().try_into().map_err(|e| CertsError::request(format!("SAN URI: {e}")))?;
        params.subject_alt_names.push(SanType::URI(uri));
        for dns in &req.dns {
            rustls_pki_types::DnsName::try_from(dns.as_str())
                .map_err(|_| CertsError::request(format!("invalid DNS name {dns:?}")))?;
            let ia5 = dns
                .clone()
                .try_into()
                .map_err(|_| CertsError::request(format!("invalid DNS name {dns:?}")))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params.subject_alt_names.extend(req.ips.iter().copied().map(SanType::IpAddress));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match req.role {
            Role::Relay => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        params.not_before = OffsetDateTime::from(req.not_before);
        params.not_after = OffsetDateTime::from(not_after);
        let serial = random_serial()?;
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);

        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: pem_encode("CERTIFICATE", cert.der()),
            key_pem: Zeroizing::new(key.serialize_pem()),
            serial_hex,
            identity,
        })
    }

    /// A CRL (PEM) listing `revoked`, valid for `next_update_days`.
    pub fn crl(&self, revoked: &[Revoked], crl_number: u64, next_update_days: u32) -> Result<String> {
        check_days("CRL validity", next_update_days)?;
        let now = SystemTime::now();
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in revoked {
            let bytes =
                hex::decode(&r.serial_hex).ok().filter(|b| !b.is_empty() && b.len() <= 20).ok_or_else(
                    || CertsError::request(format!("invalid serial {:?} in revocation list", r.serial_hex)),
                )?;
            let at = i64::try_from(r.revoked_at).unwrap_or(i64::MAX);
            let revocation_time = OffsetDateTime::from_unix_timestamp(at)
                .map_err(|_| CertsError::request(format!("invalid revocation time {}", r.revoked_at)))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time,
                reason_code: None,
                invalidity_date: None,
            });
        }
        let number = crl_number.to_be_bytes();
        let start = number.iter().position(|b| *b != 0).unwrap_or(number.len() - 1);
        let params = CertificateRevocationListParams {
            this_update: OffsetDateTime::from(now - Duration::from_secs(60)),
            next_update: OffsetDateTime::from(now + days_(next_update_days)),
            crl_number: SerialNumber::from_slice(&number[start..]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// A random positive 128-bit serial whose first byte has its top bit clear
/// and is non-zero (so its DER encoding and hex form are stable).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertsError::request("system random number generator failed"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
