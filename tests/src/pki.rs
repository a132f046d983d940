//! A throwaway PKI made with `focal_certs` code: one CA per network, relay
//! certificates with IP SAN 127.0.0.1 (and DNS `localhost`), focal-point
//! certificates, the trust bundle and one CRL per network, all written as
//! files under a temporary directory the way a secretariat would lay them
//! out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use focal_certs::{IssueRequest, IssuedCert, NetworkCa, Revoked, TrustBundle, TrustStore};
use focal_proto::{Address, Identity, NetworkId, Role};

/// Validity of the test CAs (days).
const CA_DAYS: u32 = 30;

/// Certificate and key files of one holder.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Who it certifies.
    pub identity: Identity,
    /// Serial (hex), for revocation.
    pub serial_hex: String,
}

impl CertFiles {
    /// Loads them as credentials.
    pub fn credentials(&self) -> Result<focal_certs::Credentials> {
        focal_certs::Credentials::load(&self.cert, &self.key)
            .with_context(|| format!("loading {}", self.identity))
    }
}

/// The PKI of a test federation.
pub struct TestPki {
    dir: PathBuf,
    cas: BTreeMap<NetworkId, NetworkCa>,
    bundle: TrustBundle,
    revoked: BTreeMap<NetworkId, Vec<Revoked>>,
    crl_numbers: BTreeMap<NetworkId, u64>,
}

impl TestPki {
    /// An empty PKI writing under `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(TestPki {
            dir: dir.to_owned(),
            cas: BTreeMap::new(),
            bundle: TrustBundle::default(),
            revoked: BTreeMap::new(),
            crl_numbers: BTreeMap::new(),
        })
    }

    /// Adds a network: generates its CA, writes the CA certificate, adds it
    /// to the trust bundle and writes an empty CRL.
    pub fn add_network(&mut self, network: &NetworkId) -> Result<()> {
        if self.cas.contains_key(network) {
            return Ok(());
        }
        let ca = NetworkCa::generate(network, CA_DAYS).with_context(|| format!("CA of {network}"))?;
        std::fs::write(self.dir.join(format!("{network}-ca.crt")), ca.cert_pem())?;
        self.bundle.insert(network.clone(), ca.cert_der());
        self.cas.insert(network.clone(), ca);
        self.revoked.insert(network.clone(), Vec::new());
        std::fs::write(self.trust_bundle_path(), self.bundle.to_toml())?;
        self.write_crl(network)?;
        Ok(())
    }

    /// The networks, in order.
    pub fn networks(&self) -> impl Iterator<Item = &NetworkId> {
        self.cas.keys()
    }

    /// The CA of a network.
    pub fn ca(&self, network: &NetworkId) -> Result<&NetworkCa> {
        self.cas.get(network).with_context(|| format!("no CA for network {network} in the test PKI"))
    }

    /// The trust bundle file.
    pub fn trust_bundle_path(&self) -> PathBuf {
        self.dir.join("trust.toml")
    }

    /// The CRL file of a network.
    pub fn crl_path(&self, network: &NetworkId) -> PathBuf {
        self.dir.join(format!("{network}.crl"))
    }

    /// All CRL files.
    pub fn crl_paths(&self) -> Vec<PathBuf> {
        self.cas.keys().map(|n| self.crl_path(n)).collect()
    }

    /// A trust store as relays and clients load it.
    pub fn trust_store(&self) -> Result<TrustStore> {
        let crls = self.crl_paths();
        let refs: Vec<&Path> = crls.iter().map(PathBuf::as_path).collect();
        Ok(TrustStore::load(&self.trust_bundle_path(), &refs)?)
    }

    /// Issues a certificate from `network`'s CA without writing files.
    pub fn issue(&self, network: &NetworkId, req: &IssueRequest) -> Result<IssuedCert> {
        self.ca(network)?
            .issue(req)
            .with_context(|| format!("issuing {:?} {} of {network}", req.role, req.name))
    }

    /// Issues a certificate and writes `<stem>.crt` / `<stem>.key` (0600).
    pub fn issue_to_files(&self, network: &NetworkId, req: &IssueRequest, stem: &str) -> Result<CertFiles> {
        let issued = self.issue(network, req)?;
        let cert = self.dir.join(format!("{stem}.crt"));
        let key = self.dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &issued.cert_pem)?;
        write_private(&key, issued.key_pem.as_bytes())?;
        Ok(CertFiles { cert, key, identity: issued.identity, serial_hex: issued.serial_hex })
    }

    /// A relay certificate `focal://<network>/relay/<name>` valid for
    /// 127.0.0.1 and `localhost`.
    pub fn relay_cert(&self, network: &NetworkId, name: &str) -> Result<CertFiles> {
        let mut req = IssueRequest::new(Role::Relay, name);
        req.ips = vec!["127.0.0.1".parse().expect("ip")];
        req.dns = vec!["localhost".into()];
        self.issue_to_files(network, &req, &format!("relay-{network}-{name}"))
    }

    /// A focal-point certificate for `address`.
    pub fn fp_cert(&self, address: &Address) -> Result<CertFiles> {
        let req = IssueRequest::new(Role::Fp, address.name());
        self.issue_to_files(address.network(), &req, &format!("fp-{}-{}", address.network(), address.name()))
    }

    /// Revokes a certificate of `network` and rewrites that network's CRL
    /// (relays and clients pick it up on reload).
    pub fn revoke(&mut self, network: &NetworkId, serial_hex: &str) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        self.revoked
            .get_mut(network)
            .with_context(|| format!("no network {network}"))?
            .push(Revoked { serial_hex: serial_hex.to_owned(), revoked_at: now });
        self.write_crl(network)
    }

    fn write_crl(&mut self, network: &NetworkId) -> Result<()> {
        let number = self.crl_numbers.entry(network.clone()).or_insert(0);
        *number += 1;
        let pem = self.cas[network].crl(&self.revoked[network], *number, CA_DAYS)?;
        std::fs::write(self.crl_path(network), pem)?;
        Ok(())
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    Ok(())
}
