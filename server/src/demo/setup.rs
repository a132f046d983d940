//! Building the demo federation: a throwaway PKI (one CA per network, a relay
//! certificate per relay, focal-point and auditor certificates), one relay
//! config file per network, the eight relays started on tokio tasks of this
//! process, and a client profile per member.
//!
//! Layout under the demo directory:
//! `pki/` (CA certificates, trust bundle, CRLs, every issued certificate and
//! key), `relays/<net>/relay.toml` and `relays/<net>/data/`,
//! `members/<name>@<net>/profile.toml` (plus `keys/` and `store/`). The CA
//! private keys stay in memory and are never written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use focal_certs::{IssueRequest, NetworkCa, TrustBundle};
use focal_client::ProfileFile;
use focal_proto::{Address, NetworkId, Role};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::DemoError;
use super::networks::DemoNetwork;
use crate::config::{AuditConfig, Limits, ListenConfig, PeerConfig, PolicyConfig, RelayConfig, TlsConfig};

/// Validity of the throwaway CAs and certificates (days).
const DAYS: u32 = 7;

/// A started relay of the demo.
#[derive(Clone, Debug)]
pub struct DemoRelay {
    /// Its network.
    pub network: DemoNetwork,
    /// Relay name (`relay.<net>`).
    pub name: String,
    /// gRPC address (clients).
    pub grpc: SocketAddr,
    /// QUIC address (peers).
    pub quic: SocketAddr,
    /// Its config file.
    pub config_path: PathBuf,
    /// Peer relay names.
    pub peers: Vec<String>,
}

/// A member (focal point or auditor) with a client profile.
#[derive(Clone, Debug)]
pub struct DemoMember {
    /// Its address.
    pub address: Address,
    /// Its profile file (`focal --profile <this>`).
    pub profile: PathBuf,
}

/// The running federation.
pub struct DemoFederation {
    /// The demo directory.
    pub dir: PathBuf,
    /// Relays, hub first.
    pub relays: Vec<DemoRelay>,
    /// Focal points, by network in relay order.
    pub focal_points: Vec<DemoMember>,
    /// One auditor per network (`auditor@<net>`), same order as `relays`.
    pub auditors: Vec<DemoMember>,
    /// Relay tasks: each yields its name and how `serve` ended.
    pub tasks: JoinSet<(String, Result<(), crate::RelayError>)>,
    /// Set to true to stop every relay.
    pub stop: watch::Sender<bool>,
}

struct Pki {
    dir: PathBuf,
    cas: Vec<(NetworkId, NetworkCa)>,
    bundle_path: PathBuf,
    crls: Vec<PathBuf>,
}

fn io(step: &str, path: &Path, e: std::io::Error) -> DemoError {
    DemoError::new(step, format!("{}: {e}", path.display()))
}

fn write(step: &str, path: &Path, data: &[u8], private: bool) -> Result<(), DemoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io(step, path, e))?;
    f.write_all(data).map_err(|e| io(step, path, e))
}

impl Pki {
    fn generate(dir: &Path, networks: &[DemoNetwork]) -> Result<Pki, DemoError> {
        let step = "generating the throwaway PKI";
        std::fs::create_dir_all(dir).map_err(|e| io(step, dir, e))?;
        let mut bundle = TrustBundle::default();
        let mut cas = Vec::new();
        let mut crls = Vec::new();
        for n in networks {
            let ca = NetworkCa::generate(&n.id, DAYS)
                .map_err(|e| DemoError::new(step, format!("CA of {}: {e}", n.id)))?;
            write(step, &dir.join(format!("{}-ca.crt", n.id)), ca.cert_pem().as_bytes(), false)?;
            bundle.insert(n.id.clone(), ca.cert_der());
            let crl =
                ca.crl(&[], 1, DAYS).map_err(|e| DemoError::new(step, format!("CRL of {}: {e}", n.id)))?;
            let crl_path = dir.join(format!("{}.crl", n.id));
            write(step, &crl_path, crl.as_bytes(), false)?;
            crls.push(crl_path);
            cas.push((n.id.clone(), ca));
        }
        let bundle_path = dir.join("trust.toml");
        write(step, &bundle_path, bundle.to_toml().as_bytes(), false)?;
        Ok(Pki { dir: dir.to_owned(), cas, bundle_path, crls })
    }

    /// Issues a certificate and writes `<stem>.crt` / `<stem>.key`.
    fn issue(
        &self,
        network: &NetworkId,
        req: &IssueRequest,
        stem: &str,
    ) -> Result<(PathBuf, PathBuf), DemoError> {
        let step = format!("issuing the {} certificate of {}@{network}", req.role, req.name);
        let ca = self
            .cas
            .iter()
            .find(|(n, _)| n == network)
            .map(|(_, ca)| ca)
            .ok_or_else(|| DemoError::new(&step, "no CA for this network"))?;
        let issued = ca.issue(req).map_err(|e| DemoError::new(&step, e))?;
        let cert = self.dir.join(format!("{stem}.crt"));
        let key = self.dir.join(format!("{stem}.key"));
        write(&step, &cert, issued.cert_pem.as_bytes(), false)?;
        write(&step, &key, issued.key_pem.as_bytes(), true)?;
        Ok((cert, key))
    }
}

/// Creates the PKI, configs and profiles under `dir` and starts the relays.
pub async fn start(dir: &Path, networks: &[DemoNetwork]) -> Result<DemoFederation, DemoError> {
    let pki = Pki::generate(&dir.join("pki"), networks)?;
    let hub = networks.iter().find(|n| n.hub).expect("networks::parse checks there is one hub");

    // Bind every socket first: each relay must know its peers' QUIC addresses.
    let step = "binding loopback sockets for the relays";
    let mut bound = Vec::new();
    for n in networks {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| DemoError::new(step, e))?;
        let quic = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| DemoError::new(step, e))?;
        let addrs = (grpc.local_addr(), quic.local_addr());
        let (Ok(g), Ok(q)) = addrs else { return Err(DemoError::new(step, "cannot read a bound address")) };
        bound.push((n, grpc, quic, g, q));
    }
    let relay_name = |id: &NetworkId| format!("relay.{id}");
    let quic_of = |id: &NetworkId| bound.iter().find(|b| &b.0.id == id).map(|b| b.4).expect("bound");

    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut relays = Vec::new();
    let mut pending = Vec::new();
    for (n, _, _, grpc, quic) in &bound {
        let name = relay_name(&n.id);
        let mut req = IssueRequest::for_days(Role::Relay, &name, DAYS);
        req.ips = vec![[127, 0, 0, 1].into()];
        req.dns = vec!["localhost".into()];
        let (cert, key) = pki.issue(&n.id, &req, &format!("relay-{}", n.id))?;
        // The star: the hub peers with every regional relay; each regional
        // relay peers with the hub only, as its default route.
        let peers: Vec<PeerConfig> = if n.hub {
            networks
                .iter()
                .filter(|o| !o.hub)
                .map(|o| PeerConfig {
                    name: relay_name(&o.id),
                    network: o.id.clone(),
                    address: quic_of(&o.id).to_string(),
                    default_route: false,
                })
                .collect()
        } else {
            vec![PeerConfig {
                name: relay_name(&hub.id),
                network: hub.id.clone(),
                address: quic_of(&hub.id).to_string(),
                default_route: true,
            }]
        };
        let relay_dir = dir.join("relays").join(n.id.as_str());
        let step = format!("writing the config of {name}");
        std::fs::create_dir_all(&relay_dir).map_err(|e| io(&step, &relay_dir, e))?;
        let config = RelayConfig {
            network: n.id.clone(),
            name: name.clone(),
            data_dir: relay_dir.join("data"),
            listen: ListenConfig { grpc: *grpc, federation: Some(*quic), metrics: None },
            tls: TlsConfig { cert, key, trust_bundle: pki.bundle_path.clone(), crls: pki.crls.clone() },
            limits: Limits::default(),
            peers,
            policy: PolicyConfig::default(),
            audit: AuditConfig::default(),
            escalation: Vec::new(),
            broadcast: Default::default(),
            retention: Default::default(),
        };
        let text = toml::to_string(&config).map_err(|e| DemoError::new(&step, e))?;
        let config_path = relay_dir.join("relay.toml");
        write(&step, &config_path, text.as_bytes(), false)?;
        // Load it back exactly as `focal-relay run` would: the files must be valid.
        let config = RelayConfig::load(&config_path).map_err(|e| DemoError::new(&step, e))?;
        crate::check::load_tls(&config).map_err(|e| DemoError::new(&step, e))?;
        relays.push(DemoRelay {
            network: (*n).clone(),
            name: name.clone(),
            grpc: *grpc,
            quic: *quic,
            config_path,
            peers: config.peers.iter().map(|p| p.name.clone()).collect(),
        });
        pending.push(config);
    }
    for ((_, grpc, quic, _, _), config) in bound.into_iter().zip(pending) {
        let name = config.name.clone();
        let listeners = crate::Listeners { grpc, federation: Some(quic), metrics: None };
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tasks.spawn(async move { (name, crate::serve(config, listeners, shutdown).await) });
    }
    relays.sort_by_key(|r| !r.network.hub);

    let mut focal_points = Vec::new();
    let mut auditors = Vec::new();
    for r in &relays {
        for m in &r.network.members {
            focal_points.push(member(dir, &pki, r, m, Role::Fp)?);
        }
        auditors.push(member(dir, &pki, r, "auditor", Role::Auditor)?);
    }
    Ok(DemoFederation { dir: dir.to_owned(), relays, focal_points, auditors, tasks, stop })
}

/// Issues a member's certificate and writes its client profile.
fn member(dir: &Path, pki: &Pki, relay: &DemoRelay, name: &str, role: Role) -> Result<DemoMember, DemoError> {
    let net = &relay.network.id;
    let address = Address::new(name, net.clone())
        .map_err(|e| DemoError::new("naming the demo members", format!("{name}@{net}: {e}")))?;
    let (cert, key) =
        pki.issue(net, &IssueRequest::for_days(role, name, DAYS), &format!("{role}-{net}-{name}"))?;
    let mdir = dir.join("members").join(address.to_string());
    let step = format!("writing the profile of {address}");
    std::fs::create_dir_all(&mdir).map_err(|e| io(&step, &mdir, e))?;
    let profile = ProfileFile {
        relay: relay.grpc.to_string(),
        relay_network: net.to_string(),
        relay_name: Some(relay.name.clone()),
        relay_server_name: None,
        cert,
        key,
        trust_bundle: pki.bundle_path.clone(),
        crls: pki.crls.clone(),
        key_dir: PathBuf::from("keys"),
        store_dir: PathBuf::from("store"),
        retention: None,
    };
    let path = mdir.join("profile.toml");
    write(&step, &path, profile.to_toml().as_bytes(), false)?;
    Ok(DemoMember { address, profile: path })
}

impl DemoFederation {
    /// The relay of a network.
    pub fn relay(&self, id: &str) -> Option<&DemoRelay> {
        self.relays.iter().find(|r| r.network.id.as_str() == id)
    }

    /// Stops every relay and waits for them; returns the first failure.
    pub async fn shutdown(mut self) -> Result<(), DemoError> {
        let _ = self.stop.send(true);
        let mut first = None;
        while let Some(done) = self.tasks.join_next().await {
            let failure = match done {
                Ok((_, Ok(()))) => None,
                Ok((name, Err(e))) => Some(DemoError::new(format!("stopping {name}"), e)),
                Err(e) => Some(DemoError::new("stopping a relay", format!("relay task failed: {e}"))),
            };
            if first.is_none() {
                first = failure;
            }
        }
        first.map_or(Ok(()), Err)
    }
}
