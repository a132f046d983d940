//! [`Federation`]: a whole test federation on loopback, built with
//! [`Federation::builder`]:
//!
//! ```ignore
//! let fed = Federation::builder()
//!     .network("carin")
//!     .focal_point("nl-fiod@carin")            // enrolled: key made and published
//!     .focal_point("be-ocsc@carin")
//!     .limits("carin", |l| l.max_message_bytes = 1 << 20)
//!     .processes(&focal_tests::bins!())         // or .in_process() (the default)
//!     .start()
//!     .await?;
//! let a = fed.client("nl-fiod@carin").await?;
//! ```
//!
//! Several networks are declared the same way; `.link("carin", "arinsa")`
//! makes two relays peers and `.hub("gfp")` gives every other network a
//! default route to the hub, which is how the federation issue extends it.
//! `.proxy_link("carin", "gfp")` routes that peering through a pair of
//! loopback UDP proxies ([`crate::fault::LinkProxy`], one per dialling
//! direction) that a test cuts, delays or makes lossy with
//! `fed.link_proxy("carin", "gfp").set(…)`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use focal_client::Client;
use focal_proto::{Address, NetworkId};
use focal_relay::config::{
    AuditConfig, Limits, ListenConfig, PeerConfig, PolicyConfig, RelayConfig, TlsConfig,
};

use crate::Bins;
use crate::fault::{LinkProxy, UdpProxy};
use crate::fp::FocalPoint;
use crate::pki::TestPki;
use crate::relay::{RelayHandle, RelayMode, free_udp_addr};

/// What one network of the federation looks like.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    /// The network id.
    pub network: NetworkId,
    /// Its relay's name (certificate `focal://<net>/relay/<name>`).
    pub relay_name: String,
    /// Relay limits.
    pub limits: Limits,
    /// Relay policy.
    pub policy: PolicyConfig,
    /// Relay `[retention]`.
    pub retention: focal_relay::config::retention::RetentionConfig,
    /// Focal points: name and whether to enrol it (key made and published) at start.
    pub members: Vec<(String, bool)>,
}

/// Builder of a [`Federation`].
pub struct FederationBuilder {
    networks: Vec<NetworkSpec>,
    links: Vec<(NetworkId, NetworkId)>,
    hub: Option<NetworkId>,
    default_routes: Vec<(NetworkId, NetworkId)>,
    proxied: Vec<(NetworkId, NetworkId)>,
    mode: RelayMode,
}

fn net(id: &str) -> NetworkId {
    NetworkId::new(id).unwrap_or_else(|e| panic!("test network id {id:?}: {e}"))
}

/// The key of an unordered link.
fn link_key(a: &NetworkId, b: &NetworkId) -> (NetworkId, NetworkId) {
    if a <= b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) }
}

impl FederationBuilder {
    fn spec(&mut self, id: &NetworkId) -> &mut NetworkSpec {
        if let Some(i) = self.networks.iter().position(|n| &n.network == id) {
            return &mut self.networks[i];
        }
        self.networks.push(NetworkSpec {
            network: id.clone(),
            relay_name: format!("relay.{id}"),
            limits: Limits::default(),
            policy: PolicyConfig::default(),
            retention: Default::default(),
            members: Vec::new(),
        });
        self.networks.last_mut().expect("just pushed")
    }

    /// Adds a network with its relay.
    pub fn network(mut self, id: &str) -> Self {
        self.spec(&net(id));
        self
    }

    /// Adjusts a network's spec (relay name, limits, policy, members).
    pub fn configure(mut self, id: &str, f: impl FnOnce(&mut NetworkSpec)) -> Self {
        f(self.spec(&net(id)));
        self
    }

    /// Adjusts a network relay's limits.
    pub fn limits(self, id: &str, f: impl FnOnce(&mut Limits)) -> Self {
        self.configure(id, |s| f(&mut s.limits))
    }

    /// Adds a focal point, enrolled at start (encryption key created and
    /// published), adding its network if needed.
    pub fn focal_point(mut self, address: &str) -> Self {
        let a = Address::parse_member(address).unwrap_or_else(|e| panic!("test address {address:?}: {e}"));
        self.spec(a.network()).members.push((a.name().to_owned(), true));
        self
    }

    /// Adds a focal point with a certificate and profile but no key yet
    /// (for tests that run `focal keys init` / `publish` themselves).
    pub fn focal_point_unenrolled(mut self, address: &str) -> Self {
        let a = Address::parse_member(address).unwrap_or_else(|e| panic!("test address {address:?}: {e}"));
        self.spec(a.network()).members.push((a.name().to_owned(), false));
        self
    }

    /// Makes the relays of `a` and `b` federation peers of each other.
    pub fn link(mut self, a: &str, b: &str) -> Self {
        let (a, b) = (net(a), net(b));
        self.spec(&a);
        self.spec(&b);
        self.links.push((a, b));
        self
    }

    /// Makes `id` the hub: every other network peers with it and uses it as
    /// the default route.
    pub fn hub(mut self, id: &str) -> Self {
        let h = net(id);
        self.spec(&h);
        self.hub = Some(h);
        self
    }

    /// Makes `to` the default route of `from` (adding the peering if
    /// needed), e.g. `.default_route("gfp", "carin")` on top of a hub to
    /// build a routing loop.
    pub fn default_route(mut self, from: &str, to: &str) -> Self {
        let (a, b) = (net(from), net(to));
        self.spec(&a);
        self.spec(&b);
        self.default_routes.push((a, b));
        self
    }

    /// Routes the peering of `a` and `b` (declared by `link`, `hub` or
    /// `default_route`) through a [`LinkProxy`]: each side's peer address
    /// points at a proxy in front of the other side, so both dialling
    /// directions cross a proxy and a cut cuts the link both ways.
    pub fn proxy_link(mut self, a: &str, b: &str) -> Self {
        let (a, b) = (net(a), net(b));
        self.spec(&a);
        self.spec(&b);
        self.proxied.push((a, b));
        self
    }

    /// Relays run in this process (the default).
    pub fn in_process(mut self) -> Self {
        self.mode = RelayMode::InProcess;
        self
    }

    /// Relays run as child processes of `bins.relay`.
    pub fn processes(mut self, bins: &Bins) -> Self {
        self.mode = RelayMode::Process { bin: bins.relay.clone() };
        self
    }

    /// Creates the PKI, writes configs and profiles, starts every relay and
    /// enrols the focal points that asked for it.
    pub async fn start(self) -> Result<Federation> {
        crate::init();
        if self.networks.is_empty() {
            bail!("a federation needs at least one network");
        }
        let tmp = tempfile::Builder::new().prefix("focal-fed-").tempdir()?;
        let root = tmp.path().to_owned();
        let mut pki = TestPki::new(&root.join("pki"))?;
        for spec in &self.networks {
            pki.add_network(&spec.network)?;
        }
        // Peers: who talks to whom over QUIC.
        let mut peers: BTreeMap<NetworkId, Vec<(NetworkId, bool)>> = BTreeMap::new();
        for (a, b) in &self.links {
            peers.entry(a.clone()).or_default().push((b.clone(), false));
            peers.entry(b.clone()).or_default().push((a.clone(), false));
        }
        if let Some(h) = &self.hub {
            for spec in self.networks.iter().filter(|s| &s.network != h) {
                peers.entry(spec.network.clone()).or_default().push((h.clone(), true));
                peers.entry(h.clone()).or_default().push((spec.network.clone(), false));
            }
        }
        for (a, b) in &self.default_routes {
            let list = peers.entry(a.clone()).or_default();
            match list.iter_mut().find(|(p, _)| p == b) {
                Some(entry) => entry.1 = true,
                None => list.push((b.clone(), true)),
            }
            let back = peers.entry(b.clone()).or_default();
            if !back.iter().any(|(p, _)| p == a) {
                back.push((a.clone(), false));
            }
        }
        let mut udp: BTreeMap<NetworkId, std::net::SocketAddr> = BTreeMap::new();
        for n in peers.keys() {
            udp.insert(n.clone(), free_udp_addr()?);
        }
        // Proxies: the address `from` dials `to` at, when the link is proxied.
        let mut proxies: BTreeMap<(NetworkId, NetworkId), LinkProxy> = BTreeMap::new();
        let mut dial_via: BTreeMap<(NetworkId, NetworkId), std::net::SocketAddr> = BTreeMap::new();
        for (a, b) in &self.proxied {
            let peered = peers.get(a).is_some_and(|v| v.iter().any(|(p, _)| p == b));
            if !peered {
                bail!("proxy_link({a}, {b}): the two relays are not peers (declare the link or hub first)");
            }
            let a_to_b = UdpProxy::start(udp[b]).await?;
            let b_to_a = UdpProxy::start(udp[a]).await?;
            dial_via.insert((a.clone(), b.clone()), a_to_b.addr());
            dial_via.insert((b.clone(), a.clone()), b_to_a.addr());
            proxies.insert(link_key(a, b), LinkProxy { a: a.clone(), b: b.clone(), a_to_b, b_to_a });
        }
        let names: BTreeMap<NetworkId, String> =
            self.networks.iter().map(|s| (s.network.clone(), s.relay_name.clone())).collect();

        let mut relays = BTreeMap::new();
        for spec in &self.networks {
            let n = &spec.network;
            let dir = root.join(format!("relay-{n}"));
            std::fs::create_dir_all(&dir)?;
            let cert = pki.relay_cert(n, &spec.relay_name)?;
            let mut my_peers: Vec<PeerConfig> = peers
                .get(n)
                .map(|v| {
                    v.iter()
                        .map(|(p, default_route)| PeerConfig {
                            name: names[p].clone(),
                            network: p.clone(),
                            address: dial_via
                                .get(&(n.clone(), p.clone()))
                                .copied()
                                .unwrap_or(udp[p])
                                .to_string(),
                            default_route: *default_route,
                        })
                        .collect()
                })
                .unwrap_or_default();
            my_peers.dedup_by(|a, b| a.name == b.name);
            let config = RelayConfig {
                network: n.clone(),
                name: spec.relay_name.clone(),
                data_dir: dir.join("data"),
                listen: ListenConfig {
                    // Port 0: the OS picks it at the first start.
                    grpc: "127.0.0.1:0".parse()?,
                    federation: udp.get(n).copied(),
                    metrics: None,
                },
                tls: TlsConfig {
                    cert: cert.cert.clone(),
                    key: cert.key.clone(),
                    trust_bundle: pki.trust_bundle_path(),
                    crls: pki.crl_paths(),
                },
                limits: spec.limits.clone(),
                peers: my_peers,
                policy: spec.policy.clone(),
                audit: AuditConfig::default(),
                escalation: Vec::new(),
                broadcast: Default::default(),
                retention: spec.retention.clone(),
            };
            let handle = RelayHandle::new(config, dir.join("relay.toml"), self.mode.clone())?;
            relays.insert(n.clone(), handle);
        }
        for r in relays.values_mut() {
            r.start().await?;
        }
        let mut fed = Federation {
            pki,
            relays,
            proxies,
            fps: BTreeMap::new(),
            others: BTreeMap::new(),
            root,
            _tmp: tmp,
        };
        for spec in &self.networks {
            for (name, enrol) in &spec.members {
                let addr = Address::new(name, spec.network.clone())?;
                fed.add_focal_point(&addr.to_string(), *enrol).await?;
            }
        }
        Ok(fed)
    }
}

/// A running test federation. Dropping it kills every relay and removes
/// the temporary directory (set `FOCAL_TEST_KEEP=1` to keep it).
pub struct Federation {
    /// The PKI (CAs, trust bundle, CRLs).
    pub pki: TestPki,
    relays: BTreeMap<NetworkId, RelayHandle>,
    proxies: BTreeMap<(NetworkId, NetworkId), LinkProxy>,
    fps: BTreeMap<Address, FocalPoint>,
    others: BTreeMap<String, FocalPoint>,
    root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Federation {
    /// A builder with no networks, relays in-process.
    pub fn builder() -> FederationBuilder {
        FederationBuilder {
            networks: Vec::new(),
            links: Vec::new(),
            hub: None,
            default_routes: Vec::new(),
            proxied: Vec::new(),
            mode: RelayMode::InProcess,
        }
    }

    /// The federation's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The relay of a network.
    pub fn relay(&self, network: &str) -> &RelayHandle {
        self.relays.get(&net(network)).unwrap_or_else(|| panic!("no relay for {network}"))
    }

    /// The relay of a network, mutable (stop, kill, restart).
    pub fn relay_mut(&mut self, network: &str) -> &mut RelayHandle {
        self.relays.get_mut(&net(network)).unwrap_or_else(|| panic!("no relay for {network}"))
    }

    /// The proxies of the link between `a` and `b` (either order), put
    /// there by [`FederationBuilder::proxy_link`].
    pub fn link_proxy(&self, a: &str, b: &str) -> &LinkProxy {
        self.proxies.get(&link_key(&net(a), &net(b))).unwrap_or_else(|| panic!("link {a}-{b} is not proxied"))
    }

    /// All relays.
    pub fn relays(&self) -> impl Iterator<Item = &RelayHandle> {
        self.relays.values()
    }

    /// A focal point.
    pub fn fp(&self, address: &str) -> &FocalPoint {
        let a = Address::parse_member(address).expect("test address");
        self.fps.get(&a).unwrap_or_else(|| panic!("no focal point {address}"))
    }

    /// A connected library client of a focal point.
    pub async fn client(&self, address: &str) -> Result<Client> {
        self.fp(address).client().await
    }

    /// Adds a focal point to a running federation (certificate from its
    /// network's CA, profile pointing at its relay), enrolling it if asked.
    pub async fn add_focal_point(&mut self, address: &str, enrol: bool) -> Result<&FocalPoint> {
        let addr = Address::parse_member(address)?;
        let relay =
            self.relays.get(addr.network()).with_context(|| format!("no relay for {}", addr.network()))?;
        let cert = self.pki.fp_cert(&addr)?;
        let dir = self.root.join(format!("fp-{addr}"));
        let fp = FocalPoint::create(
            addr.clone(),
            dir,
            cert,
            relay.grpc_addr(),
            &relay.name,
            self.pki.trust_bundle_path(),
            self.pki.crl_paths(),
        )?;
        if enrol {
            fp.enrol().await?;
        }
        self.fps.insert(addr.clone(), fp);
        Ok(&self.fps[&addr])
    }

    /// Adds a member of another role (auditor, admin) with a profile
    /// pointing at its network's relay; `address` is `name@network`.
    pub fn add_member(&mut self, address: &str, role: focal_proto::Role) -> Result<&FocalPoint> {
        let addr = Address::parse_member(address)?;
        let relay =
            self.relays.get(addr.network()).with_context(|| format!("no relay for {}", addr.network()))?;
        let req = focal_certs::IssueRequest::new(role, addr.name());
        let cert = self.pki.issue_to_files(
            addr.network(),
            &req,
            &format!("{role}-{}-{}", addr.network(), addr.name()),
        )?;
        let dir = self.root.join(format!("{role}-{addr}"));
        let fp = FocalPoint::create(
            addr.clone(),
            dir,
            cert,
            relay.grpc_addr(),
            &relay.name,
            self.pki.trust_bundle_path(),
            self.pki.crl_paths(),
        )?;
        self.others.insert(address.to_owned(), fp);
        Ok(&self.others[address])
    }

    /// A member added with [`Federation::add_member`].
    pub fn member(&self, address: &str) -> &FocalPoint {
        self.others.get(address).unwrap_or_else(|| panic!("no member {address}"))
    }

    /// Stops every relay gracefully.
    pub async fn shutdown(mut self) -> Result<()> {
        for r in self.relays.values_mut() {
            r.stop().await?;
        }
        Ok(())
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        if std::env::var_os("FOCAL_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self._tmp, tempfile::TempDir::new().expect("tempdir"));
            eprintln!("keeping test federation in {}", kept.keep().display());
        }
    }
}
