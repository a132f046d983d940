//! Loading and checking the relay's certificate material, shared by
//! `focal-relay run` (before any port is bound), [`crate::serve`], and
//! `focal-relay check`, which reports everything it found.
//!
//! Checks: each file readable; the key matches the certificate; the
//! certificate is this relay's identity (`focal://<network>/relay/<name>`),
//! within its validity period, chains to its network's CA in the trust
//! bundle and is not revoked by the loaded CRLs.
//!
//! The check also prints the audit log's origin and verifier key and the
//! witness verifier key (from the key files in the data dir, if the relay
//! has created them), so a secretariat can hand them to auditors
//! (`focal audit verify --witness …`). It never creates those files.

use std::path::Path;
use std::time::{Duration, SystemTime};

use focal_certs::{Credentials, SharedTrust, TrustStore, VerifiedPeer};

use crate::RelayError;
use crate::config::RelayConfig;

/// Warn about certificates expiring within this many days.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// The relay's credentials and trust, checked.
pub struct TlsMaterial {
    /// Certificate chain and key.
    pub creds: Credentials,
    /// Trust bundle and CRLs.
    pub trust: SharedTrust,
    /// The relay's own certificate as verified against the trust.
    pub verified: VerifiedPeer,
}

/// Validity period of a DER certificate, as unix seconds.
fn validity(der: &[u8]) -> Option<(i64, i64, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp(), v.not_after.to_string()))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Loads and checks everything `tls.*` names; errors name the key.
pub fn load_tls(config: &RelayConfig) -> Result<TlsMaterial, RelayError> {
    let (creds, store) = load_parts(config, ForeignCrls::Refuse)?;
    let tls = &config.tls;
    let verified = focal_certs::verify_peer(&store, creds.cert_der(), &creds.chain[1..], SystemTime::now())
        .map_err(RelayError::certs(format!(
        "tls.cert {}: does not verify against the trust bundle",
        tls.cert.display()
    )))?;
    Ok(TlsMaterial { creds, trust: SharedTrust::new(store), verified })
}

/// What to do with a CRL in `tls.crls` whose issuer is no CA of the trust
/// bundle at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignCrls {
    /// Refuse the configuration (at start and in `check`): most likely the
    /// wrong file, and then some network's revocations would go unenforced.
    Refuse,
    /// Leave it out with a warning (a reload): the network was taken out of
    /// the bundle to distrust it, and the config, which a reload does not
    /// re-read, still lists its CRL. The next start refuses it.
    LeaveOut,
}

/// [`load_tls`]'s checks, returning the credentials and the trust store
/// itself (a reload swaps it into the running relay's [`SharedTrust`]).
pub fn load_parts(
    config: &RelayConfig,
    foreign: ForeignCrls,
) -> Result<(Credentials, TrustStore), RelayError> {
    let tls = &config.tls;
    let creds = Credentials::load(&tls.cert, &tls.key).map_err(RelayError::certs(format!(
        "tls.cert {} / tls.key {}",
        tls.cert.display(),
        tls.key.display()
    )))?;
    let expected = config.relay_identity();
    let found = &creds.identity;
    let mut diffs = Vec::new();
    if found.network != expected.network {
        diffs.push(format!("network is {}, expected {}", found.network, expected.network));
    }
    if found.role != expected.role {
        diffs.push(format!("role is {}, expected relay", found.role));
    }
    if found.name != expected.name {
        diffs.push(format!("name is {}, expected {} (the config's `name`)", found.name, expected.name));
    }
    if !diffs.is_empty() {
        return Err(RelayError::WrongIdentity {
            expected: expected.uri(),
            found: found.uri(),
            reason: diffs.join("; "),
        });
    }
    check_key_matches(&creds, &tls.cert, &tls.key)?;
    if let Some((not_before, not_after, shown)) = validity(creds.cert_der()) {
        let now = unix_now();
        if now > not_after {
            return Err(RelayError::CertExpired { path: tls.cert.clone(), not_after: shown });
        }
        if now < not_before {
            return Err(RelayError::CertUnusable {
                path: tls.cert.clone(),
                reason: "certificate is not valid yet".into(),
            });
        }
    }
    let crls: Vec<&Path> = tls.crls.iter().map(|p| p.as_path()).collect();
    let context = format!("tls.trust_bundle {} / tls.crls", tls.trust_bundle.display());
    let store = match foreign {
        ForeignCrls::Refuse => {
            TrustStore::load(&tls.trust_bundle, &crls).map_err(RelayError::certs(context))?
        }
        ForeignCrls::LeaveOut => {
            let (store, left_out) = TrustStore::load_without_foreign_crls(&tls.trust_bundle, &crls)
                .map_err(RelayError::certs(context))?;
            for crl in left_out {
                tracing::warn!(
                    crl,
                    "tls.crls: this CRL's issuer is no CA of the trust bundle (a network taken out of it?); left out until the next start, which refuses it: remove it from tls.crls"
                );
            }
            store
        }
    };
    focal_certs::verify_peer(&store, creds.cert_der(), &creds.chain[1..], SystemTime::now()).map_err(
        RelayError::certs(format!(
            "tls.cert {}: does not verify against the trust bundle",
            tls.cert.display()
        )),
    )?;
    Ok((creds, store))
}

fn check_key_matches(creds: &Credentials, cert: &Path, key: &Path) -> Result<(), RelayError> {
    use ring::signature::KeyPair;
    let mismatch = || RelayError::KeyMismatch { cert: cert.to_owned(), key: key.to_owned() };
    let pair = creds.signing_key().map_err(|_| mismatch())?;
    let in_cert = focal_proto::signed::ed25519_key_from_cert(creds.cert_der())
        .map_err(|e| RelayError::CertUnusable { path: cert.to_owned(), reason: e.to_string() })?;
    if pair.public_key().as_ref() != in_cert {
        return Err(mismatch());
    }
    Ok(())
}

/// How a line of the check report rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Found and fine.
    Ok,
    /// Works, but needs attention soon.
    Warn,
    /// The relay would refuse to start.
    Error,
}

/// What `focal-relay check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per finding.
    pub lines: Vec<(Level, String)>,
}

impl Report {
    fn push(&mut self, level: Level, line: impl Into<String>) {
        self.lines.push((level, line.into()));
    }
    /// No errors.
    pub fn ok(&self) -> bool {
        !self.lines.iter().any(|(l, _)| *l == Level::Error)
    }
    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter(|(l, _)| *l == Level::Error).map(|(_, s)| s.as_str())
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (level, line) in &self.lines {
            let tag = match level {
                Level::Ok => "ok   ",
                Level::Warn => "warn ",
                Level::Error => "ERROR",
            };
            writeln!(f, "{tag} {line}")?;
        }
        let errors = self.errors().count();
        if errors == 0 {
            writeln!(f, "config is valid")
        } else {
            writeln!(f, "{errors} problem(s): the relay would not start")
        }
    }
}

/// Checks the config at `path` and its certificate files.
pub fn check(path: &Path) -> Report {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut r = Report::default();
    let config = match RelayConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            r.push(Level::Error, e.to_string());
            return r;
        }
    };
    let l = &config.listen;
    let opt = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    r.push(
        Level::Ok,
        format!(
            "config {}: network {}, relay {}, data_dir {}, grpc {}, federation {}, metrics {}, {} peer(s)",
            path.display(),
            config.network,
            config.name,
            config.data_dir.display(),
            l.grpc,
            opt(l.federation),
            opt(l.metrics),
            config.peers.len()
        ),
    );
    match load_tls(&config) {
        Err(e) => r.push(Level::Error, e.to_string()),
        Ok(m) => {
            let tls = &config.tls;
            r.push(Level::Ok, format!("tls.cert {}: {}", tls.cert.display(), m.creds.identity));
            r.push(Level::Ok, format!("tls.key {}: Ed25519 key matching the certificate", tls.key.display()));
            let bundle = m.trust.current();
            let nets: Vec<String> = bundle.bundle().networks.keys().map(|n| n.to_string()).collect();
            r.push(
                Level::Ok,
                format!(
                    "tls.trust_bundle {}: {} network(s): {}",
                    tls.trust_bundle.display(),
                    nets.len(),
                    nets.join(", ")
                ),
            );
            r.push(Level::Ok, format!("tls.crls: {} CRL file(s) loaded", tls.crls.len()));
            for line in peers_without_trust(&config, &bundle.bundle().networks) {
                r.push(Level::Warn, line);
            }
            let now = crate::expiry::unix_now();
            for (i, crl) in crate::expiry::scan(&m.creds, &bundle, &tls.crls)
                .into_iter()
                .filter(|e| e.what.starts_with("CRL "))
                .enumerate()
            {
                let days = crl.days_left(now);
                let (level, note) = if crl.not_after_unix <= now {
                    (
                        Level::Warn,
                        "its next update is past: republish it (`focal-certs crl`), then reload".to_owned(),
                    )
                } else if days < crl.warn_days {
                    (Level::Warn, format!("next update due in {days} days: republish it soon"))
                } else {
                    (Level::Ok, format!("next update due in {days} days"))
                };
                r.push(level, format!("tls.crls[{i}]: {}: {note}", crl.what));
            }
            r.push(Level::Ok, format!("tls.cert chains to the {} CA and is not revoked", config.network));
            let left = m.verified.not_after.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
            let days = left.as_secs() / 86_400;
            let level = if days < EXPIRY_WARNING_DAYS { Level::Warn } else { Level::Ok };
            let until = validity(m.creds.cert_der()).map(|v| v.2).unwrap_or_default();
            r.push(level, format!("tls.cert valid until {until} ({days} days left)"));
            for (net, cas) in &bundle.bundle().networks {
                for ca in cas {
                    if let Some((_, not_after, shown)) = validity(ca) {
                        let days = (not_after - unix_now()) / 86_400;
                        if days < EXPIRY_WARNING_DAYS as i64 {
                            r.push(
                                Level::Warn,
                                format!("CA certificate of {net} expires {shown} ({days} days)"),
                            );
                        }
                    }
                }
            }
        }
    }
    audit_keys(&config, &mut r);
    r
}

/// One line per configured peer whose network has no CA in the trust
/// bundle: every connection to or from it is refused until the bundle holds
/// its CA (or the peer is removed from the config).
pub fn peers_without_trust<V>(
    config: &RelayConfig,
    trusted: &std::collections::BTreeMap<focal_proto::address::NetworkId, V>,
) -> Vec<String> {
    config
        .peers
        .iter()
        .enumerate()
        .filter(|(_, p)| !trusted.contains_key(&p.network))
        .map(|(i, p)| {
            format!(
                "peers[{i}] {} serves network {}, which has no CA in tls.trust_bundle: every connection with it will be refused; add its CA to the bundle or remove the peer",
                p.name, p.network
            )
        })
        .collect()
}

/// The audit log and witness verifier keys, from the data dir's key files.
fn audit_keys(config: &RelayConfig, r: &mut Report) {
    let origin = config.audit_origin();
    let log_path = config.data_dir.join("audit-log.key");
    let witness_path = config.data_dir.join(crate::node::WITNESS_KEY_FILE);
    let absent = |path: &Path| !path.exists();
    if absent(&log_path) {
        r.push(
            Level::Ok,
            format!("audit log {origin}: key {} is created on first start", log_path.display()),
        );
    } else {
        match crate::audit::LogSigner::load_or_create(&log_path, &origin) {
            Ok(s) => r.push(
                Level::Ok,
                format!("audit log origin {}, verifier key {}", s.origin(), s.verifier_key()),
            ),
            Err(e) => r.push(Level::Error, e.to_string()),
        }
    }
    let name = crate::audit::witness::witness_name(&origin);
    if absent(&witness_path) {
        r.push(
            Level::Ok,
            format!("witness {name}: key {} is created on first start", witness_path.display()),
        );
    } else {
        match crate::audit::witness::Witness::load_or_create_key(&witness_path, &name) {
            Ok(s) => r.push(Level::Ok, format!("witness verifier key {}", s.verifier_key())),
            Err(e) => r.push(Level::Error, e.to_string()),
        }
    }
}
