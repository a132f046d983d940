//! The federation trust bundle (network id -> CA certificates), the trust
//! store built from it plus per-network CRLs, and the reloadable
//! [`SharedTrust`] that TLS verifiers consult at every handshake.
//!
//! Bundle file format (TOML, PEM strings):
//!
//! ```toml
//! [networks.carin]
//! ca = ["""
//! -----BEGIN CERTIFICATE-----
//! ...
//! -----END CERTIFICATE-----
//! """]
//! ```
//!
//! A network may list several CA certificates (CA rollover). Every CA must be
//! an Ed25519 CA certificate whose common name is `Focal <network> CA`, so a
//! bundle that files one network's CA under another's id is refused.
//!
//! CRLs belong to a network: a CRL is attached to the CA that issued it
//! (issuer name equal to the CA's subject **and** signature verified with that
//! CA's key); a CRL no CA in the bundle issued is refused. Per CA the CRL with
//! the highest CRL number wins. A CA without a CRL has no revocation check.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use focal_proto::NetworkId;
use rustls::DistinguishedName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor};
use x509_parser::num_bigint::BigUint;

use crate::error::{CertsError, Result};
use crate::verify::{ed25519_key, network_of_ca_name, parse};
use crate::verify_cache::VerifyCache;

/// Network id -> CA certificates: what every relay and client trusts.
#[derive(Clone, Debug, Default)]
pub struct TrustBundle {
    /// The CA certificates (DER) of each network.
    pub networks: BTreeMap<NetworkId, Vec<CertificateDer<'static>>>,
}

impl TrustBundle {
    /// Reads and parses a bundle file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CertsError::io(path, e))?;
        TrustBundle::parse(&text).map_err(|e| match e {
            CertsError::Bundle { key, reason } => {
                CertsError::Bundle { key: format!("{}: {key}", path.display()), reason }
            }
            other => other,
        })
    }

    /// Parses bundle TOML; errors name the offending key.
    pub fn parse(toml_text: &str) -> Result<Self> {
        let table: toml::Table = toml_text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| toml_text[..s.start.min(toml_text.len())].lines().count().max(1));
            let reason = match line {
                Some(l) => format!("line {l}: {}", e.message().trim()),
                None => e.message().trim().to_owned(),
            };
            CertsError::Bundle { key: "(syntax)".into(), reason }
        })?;
        let bad =
            |key: &str, reason: &str| CertsError::Bundle { key: key.to_owned(), reason: reason.to_owned() };
        if let Some(other) = table.keys().find(|k| *k != "networks") {
            return Err(bad(other, "unknown key (expected [networks.<id>] tables)"));
        }
        let Some(networks) = table.get("networks") else {
            return Err(bad("networks", "missing: the bundle lists no network"));
        };
        let networks = networks.as_table().ok_or_else(|| bad("networks", "must be a table"))?;
        let mut bundle = TrustBundle::default();
        for (id, entry) in networks {
            let key = format!("networks.{id}");
            let net = NetworkId::new(id).map_err(|e| bad(&key, &e.to_string()))?;
            let entry = entry.as_table().ok_or_else(|| bad(&key, "must be a table with a `ca` list"))?;
            if let Some(other) = entry.keys().find(|k| *k != "ca") {
                return Err(bad(&format!("{key}.{other}"), "unknown key (expected `ca`)"));
            }
            let cas = entry
                .get("ca")
                .ok_or_else(|| bad(&format!("{key}.ca"), "missing"))?
                .as_array()
                .ok_or_else(|| bad(&format!("{key}.ca"), "must be a list of PEM strings"))?;
            if cas.is_empty() {
                return Err(bad(&format!("{key}.ca"), "empty: a network needs at least one CA certificate"));
            }
            let mut certs = Vec::new();
            for (i, pem) in cas.iter().enumerate() {
                let key = format!("{key}.ca[{i}]");
                let pem = pem.as_str().ok_or_else(|| bad(&key, "must be a PEM string"))?;
                let mut items = CertificateDer::pem_slice_iter(pem.as_bytes());
                let der = match items.next() {
                    Some(Ok(der)) => der,
                    Some(Err(e)) => return Err(bad(&key, &format!("bad PEM: {e}"))),
                    None => return Err(bad(&key, "no PEM CERTIFICATE block")),
                };
                if items.next().is_some() {
                    return Err(bad(&key, "more than one certificate in one string; list them separately"));
                }
                check_ca_cert(&der, Some(&net)).map_err(|e| bad(&key, &e.to_string()))?;
                certs.push(der);
            }
            bundle.networks.insert(net, certs);
        }
        Ok(bundle)
    }

    /// The bundle as TOML (the format [`TrustBundle::parse`] reads).
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# Focal trust bundle: network id -> CA certificates (PEM).\n");
        for (net, cas) in &self.networks {
            out.push_str(&format!("\n[networks.{net}]\nca = [\n"));
            for ca in cas {
                out.push_str("\"\"\"\n");
                out.push_str(&pem_encode("CERTIFICATE", ca));
                out.push_str("\"\"\",\n");
            }
            out.push_str("]\n");
        }
        out
    }

    /// Adds a CA certificate for `network` (ignored if already present).
    pub fn insert(&mut self, network: NetworkId, ca_cert: CertificateDer<'static>) {
        let cas = self.networks.entry(network).or_default();
        if !cas.contains(&ca_cert) {
            cas.push(ca_cert);
        }
    }
}

/// What [`TrustStore::attach_crl`] did with a CRL that verified as a CRL.
enum Attached {
    /// Attached to every CA certificate of its issuer.
    Yes,
    /// No CA of the bundle has its issuer's name (shown).
    ForeignIssuer(String),
}

/// PEM encoding with 64-column lines and a trailing newline.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Facts of a validated CA certificate.
pub(crate) struct CaFacts {
    pub(crate) network: NetworkId,
    pub(crate) ed25519_public: [u8; 32],
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// Checks that `der` is an Ed25519 CA certificate named `Focal <net> CA`
/// (and, if given, that `<net>` is `expected`).
pub(crate) fn check_ca_cert(der: &[u8], expected: Option<&NetworkId>) -> Result<CaFacts> {
    let shown = expected.map_or_else(|| "?".to_owned(), NetworkId::to_string);
    let bad = |reason: String| CertsError::BadCa { network: shown.clone(), reason };
    let (_, cert) = parse(der).map_err(|e| bad(e.to_string()))?;
    let cn = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("");
    let network = network_of_ca_name(cn)
        .ok_or_else(|| bad(format!("common name {cn:?} is not \"Focal <network> CA\"")))?;
    if let Some(expected) = expected
        && *expected != network
    {
        return Err(bad(format!("it is the CA of network {network}")));
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => return Err(bad("basicConstraints does not mark it as a CA".into())),
    }
    if let Ok(Some(ku)) = cert.key_usage()
        && !ku.value.key_cert_sign()
    {
        return Err(bad("keyUsage lacks keyCertSign".into()));
    }
    let ed25519_public = ed25519_key(&cert).ok_or_else(|| bad("its key is not Ed25519".into()))?;
    Ok(CaFacts {
        network,
        ed25519_public,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// One trusted CA of a network, with its CRL if one was loaded.
pub(crate) struct CaAnchor {
    der: CertificateDer<'static>,
    pub(crate) anchor: TrustAnchor<'static>,
    not_before: i64,
    not_after: i64,
    pub(crate) crl: Option<webpki::CertRevocationList<'static>>,
    crl_number: Option<BigUint>,
    /// The loaded CRL's nextUpdate (Unix seconds), if it has one.
    pub(crate) crl_next_update: Option<i64>,
}

impl CaAnchor {
    pub(crate) fn valid_at(&self, now_secs: u64) -> bool {
        let now = i64::try_from(now_secs).unwrap_or(i64::MAX);
        self.not_before <= now && now <= self.not_after
    }

    /// notBefore and notAfter (Unix seconds).
    pub(crate) fn validity(&self) -> (i64, i64) {
        (self.not_before, self.not_after)
    }
}

/// The CAs of one network.
pub(crate) struct NetworkTrust {
    pub(crate) cas: Vec<CaAnchor>,
}

/// Trust bundle plus per-network CRLs, immutable once built.
pub struct TrustStore {
    bundle: TrustBundle,
    networks: BTreeMap<NetworkId, NetworkTrust>,
    hints: Vec<DistinguishedName>,
    /// Successful verifications against this snapshot (see `verify_cache`).
    verified: VerifyCache,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let crls: Vec<String> = self
            .networks
            .iter()
            .flat_map(|(n, t)| t.cas.iter().filter(|c| c.crl.is_some()).map(move |_| n.to_string()))
            .collect();
        f.debug_struct("TrustStore")
            .field("networks", &self.networks.keys().map(NetworkId::as_str).collect::<Vec<_>>())
            .field("crls", &crls)
            .finish()
    }
}

impl TrustStore {
    /// Builds a store: validates every CA and attaches every CRL to the CA
    /// that issued it (refusing CRLs no CA of the bundle issued).
    pub fn new(bundle: TrustBundle, crls: Vec<CertificateRevocationListDer<'static>>) -> Result<Self> {
        let named = crls.into_iter().enumerate().map(|(i, c)| (format!("#{i}"), c)).collect();
        TrustStore::build(bundle, named, false).map(|(store, _)| store)
    }

    /// Loads the bundle file and CRL PEM files. A CRL that no CA of the
    /// bundle issued is refused.
    pub fn load(bundle_path: &Path, crl_paths: &[&Path]) -> Result<Self> {
        let (bundle, crls) = Self::read_files(bundle_path, crl_paths)?;
        TrustStore::build(bundle, crls, false).map(|(store, _)| store)
    }

    /// [`TrustStore::load`] for a running relay: a CRL whose issuer is no
    /// CA of the bundle at all (its network was taken out of the bundle to
    /// distrust it) is left out, and its file named in the list returned,
    /// instead of refusing the whole bundle, which kept the old trust, the
    /// distrusted CA included, in force until the config was edited and
    /// the relay restarted. A CRL naming a CA of the bundle but not signed
    /// by it is still refused.
    pub fn load_without_foreign_crls(bundle_path: &Path, crl_paths: &[&Path]) -> Result<(Self, Vec<String>)> {
        let (bundle, crls) = Self::read_files(bundle_path, crl_paths)?;
        TrustStore::build(bundle, crls, true)
    }

    #[allow(clippy::type_complexity)]
    fn read_files(
        bundle_path: &Path,
        crl_paths: &[&Path],
    ) -> Result<(TrustBundle, Vec<(String, CertificateRevocationListDer<'static>)>)> {
        let bundle = TrustBundle::load(bundle_path)?;
        let mut crls = Vec::new();
        for path in crl_paths {
            let what = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| CertsError::io(*path, e))?;
            // Every CRL in the file: one file may hold several networks'
            // CRLs (`cat *.crl`), or a network's current and replaced CA's.
            let ders = CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| CertsError::Crl {
                    what: what.clone(),
                    reason: format!("not a PEM X509 CRL: {e}"),
                })?;
            match ders.len() {
                0 => {
                    return Err(CertsError::Crl {
                        what,
                        reason: "not a PEM X509 CRL: no X509 CRL section found".into(),
                    });
                }
                1 => crls.extend(ders.into_iter().map(|der| (what.clone(), der))),
                n => crls.extend(
                    ders.into_iter()
                        .enumerate()
                        .map(|(i, der)| (format!("{what} (CRL {} of {n})", i + 1), der)),
                ),
            }
        }
        Ok((bundle, crls))
    }

    /// The store; with `leave_out_foreign`, CRLs of issuers outside the
    /// bundle are left out and named (see [`TrustStore::load_without_foreign_crls`]).
    fn build(
        bundle: TrustBundle,
        crls: Vec<(String, CertificateRevocationListDer<'static>)>,
        leave_out_foreign: bool,
    ) -> Result<(Self, Vec<String>)> {
        let mut networks = BTreeMap::new();
        let mut hints = Vec::new();
        for (net, cas) in &bundle.networks {
            let mut anchors = Vec::new();
            for (i, der) in cas.iter().enumerate() {
                let key = format!("networks.{net}.ca[{i}]");
                let facts = check_ca_cert(der, Some(net))
                    .map_err(|e| CertsError::Bundle { key: key.clone(), reason: e.to_string() })?;
                let anchor = webpki::anchor_from_trusted_cert(der)
                    .map_err(|e| CertsError::Bundle {
                        key,
                        reason: format!("unusable as trust anchor: {e}"),
                    })?
                    .to_owned();
                hints.push(DistinguishedName::in_sequence(anchor.subject.as_ref()));
                anchors.push(CaAnchor {
                    der: der.clone(),
                    anchor,
                    not_before: facts.not_before,
                    not_after: facts.not_after,
                    crl: None,
                    crl_number: None,
                    crl_next_update: None,
                });
            }
            networks.insert(net.clone(), NetworkTrust { cas: anchors });
        }
        let mut store = TrustStore { bundle, networks, hints, verified: VerifyCache::default() };
        let mut left_out = Vec::new();
        for (what, der) in crls {
            match store.attach_crl(&what, &der)? {
                Attached::Yes => {}
                Attached::ForeignIssuer(_) if leave_out_foreign => left_out.push(what),
                Attached::ForeignIssuer(issuer) => {
                    return Err(CertsError::Crl {
                        what,
                        reason: format!("issuer {issuer:?} is not a CA of any network in the trust bundle"),
                    });
                }
            }
        }
        Ok((store, left_out))
    }

    fn attach_crl(&mut self, what: &str, der: &[u8]) -> Result<Attached> {
        let err = |reason: String| CertsError::Crl { what: what.to_owned(), reason };
        let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| err(format!("malformed: {e}")))?;
        let issuer_raw = crl.issuer().as_raw();
        let number = crl.crl_number().cloned();
        // Every CA certificate of this issuer and key gets it: the same CA
        // may be listed twice (pasted twice, or re-issued with the same key
        // for a longer validity), and a copy without the CRL would let a
        // revoked certificate verify through it.
        let (mut name_found, mut issuer_found) = (false, false);
        for ca in self.networks.values_mut().flat_map(|n| n.cas.iter_mut()) {
            let Ok((_, ca_cert)) = parse(&ca.der) else { continue };
            if ca_cert.subject().as_raw() != issuer_raw {
                continue;
            }
            name_found = true;
            if crl.verify_signature(ca_cert.public_key()).is_err() {
                continue;
            }
            issuer_found = true;
            if ca.crl.is_some() && ca.crl_number >= number {
                continue; // an equal or newer CRL of this CA is already loaded
            }
            let owned = webpki::OwnedCertRevocationList::from_der(der)
                .map_err(|e| err(format!("not usable for revocation checks: {e}")))?;
            ca.crl = Some(owned.into());
            ca.crl_number = number.clone();
            ca.crl_next_update = crl.next_update().map(|t| t.timestamp());
        }
        if issuer_found {
            return Ok(Attached::Yes);
        }
        if name_found {
            return Err(err(format!(
                "the signature does not verify with any CA named {:?} in the trust bundle",
                crl.issuer().to_string()
            )));
        }
        Ok(Attached::ForeignIssuer(crl.issuer().to_string()))
    }

    /// The bundle this store was built from.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// Whether a CRL is loaded for some CA of `network`.
    pub fn has_crl(&self, network: &NetworkId) -> bool {
        self.networks.get(network).is_some_and(|n| n.cas.iter().any(|c| c.crl.is_some()))
    }

    pub(crate) fn verify_cache(&self) -> &VerifyCache {
        &self.verified
    }

    pub(crate) fn network(&self, network: &NetworkId) -> Option<&NetworkTrust> {
        self.networks.get(network)
    }

    /// The network whose CA has subject `issuer_raw` (DER Name), if any.
    pub(crate) fn network_of_issuer(&self, issuer_raw: &[u8]) -> Option<NetworkId> {
        self.networks.iter().find_map(|(net, t)| {
            t.cas
                .iter()
                .any(|ca| parse(&ca.der).is_ok_and(|(_, c)| c.subject().as_raw() == issuer_raw))
                .then(|| net.clone())
        })
    }

    /// Subjects of every CA, for the CertificateRequest's authorities hint.
    pub(crate) fn root_hints(&self) -> Vec<DistinguishedName> {
        self.hints.clone()
    }
}

/// A certificate the TLS layer refused (for the audit log).
#[derive(Clone, Debug)]
pub struct CertRefusal {
    /// The identity URI the certificate claimed, if it had a readable one.
    pub claimed: Option<String>,
    /// Why it was refused.
    pub reason: String,
}

type RefusalHook = Arc<dyn Fn(&CertRefusal) + Send + Sync>;

/// Reloadable trust (CRL and bundle reload without restart), shared by all
/// TLS configs built from it; each handshake consults the current store.
#[derive(Clone)]
pub struct SharedTrust {
    inner: Arc<RwLock<Arc<TrustStore>>>,
    hook: Arc<RwLock<Option<RefusalHook>>>,
}

impl fmt::Debug for SharedTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTrust").field("current", &self.current()).finish_non_exhaustive()
    }
}

impl SharedTrust {
    /// Wraps a store.
    pub fn new(store: TrustStore) -> Self {
        SharedTrust { inner: Arc::new(RwLock::new(Arc::new(store))), hook: Arc::new(RwLock::new(None)) }
    }

    /// The store in force now (handshakes already running keep theirs).
    pub fn current(&self) -> Arc<TrustStore> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Atomically swaps in a new store; the next handshake uses it.
    pub fn replace(&self, store: TrustStore) {
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(store);
    }

    /// Called for every certificate the verifiers refuse. It runs inside the
    /// TLS handshake, so it must be quick and must not block (e.g. push to a
    /// bounded channel with `try_send`). Replaces any previous hook.
    pub fn set_refusal_hook(&self, hook: Arc<dyn Fn(&CertRefusal) + Send + Sync>) {
        *self.hook.write().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    /// Reports a refusal to the hook, if one is set.
    pub(crate) fn report(&self, refusal: &CertRefusal) {
        let hook = self.hook.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(hook) = hook {
            hook(refusal);
        }
    }
}
