//! The `focal-certs` tool: a network secretariat's PKI commands.
//!
//! ```text
//! focal-certs init-network <net> --dir D [--days 3650] [--force]
//! focal-certs issue --network <net> --role relay|fp|auditor|admin --name <name>
//!                   [--dns host]... [--ip addr]... [--days 365] --dir D [--force]
//! focal-certs renew --network <net> --role <role> --name <name> [--days 365]
//!                   [--dns host]... [--ip addr]... --dir D
//! focal-certs revoke --network <net> --role <role> --name <name> [--serial HEX] --dir D
//! focal-certs crl --network <net> --dir D [--days 30]
//! focal-certs bundle --dir D --out FILE [--network <net>]... [--force]
//! ```
//!
//! Files are laid out as described in the `files` module; keys are 0600 from
//! creation. Any failure prints exactly one line `focal-certs: error: …` on
//! stderr and exits 1 (2 for a usage error).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use focal_proto::{Identity, NetworkId, Role};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::bundle::{TrustBundle, TrustStore};
use crate::ca::{IssueRequest, IssuedCert, MAX_VALIDITY_DAYS, NetworkCa, Revoked};
use crate::error::{CertsError, Result};
use crate::files::{
    DirLock, IssuedFile, IssuedRecord, Mode, NetDir, RevokedFile, RevokedRecord, ensure_private_dir,
    load_state, lock_dir, read_text, refuse_existing, replace, save_state, sync_dir, write_new,
};
use crate::verify::{CertInfo, secs};

/// Command line of `focal-certs`.
#[derive(Debug, Parser)]
#[command(
    name = "focal-certs",
    version,
    about = "Focal PKI: network CAs, role certificates, CRLs, trust bundle"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a network's CA: D/<net>/ca.pem and D/<net>/ca.key (0600).
    InitNetwork {
        /// Network id, e.g. carin.
        network: NetworkId,
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// CA validity in days.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VALIDITY_DAYS)))]
        days: u32,
        /// Overwrite an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue a role certificate: D/<net>/<role>-<name>.pem and .key (0600).
    Issue {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        names: SanArgs,
        /// Validity in days (capped at the CA's own expiry).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VALIDITY_DAYS)))]
        days: u32,
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Re-issue a certificate for the same identity with a new key and validity.
    Renew {
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        names: SanArgs,
        /// Validity in days (capped at the CA's own expiry).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VALIDITY_DAYS)))]
        days: u32,
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Record the revocation of an identity's certificates (publish with `crl`).
    Revoke {
        #[command(flatten)]
        who: Who,
        /// Revoke only this serial (hex); default: every unrevoked one of the identity.
        #[arg(long)]
        serial: Option<String>,
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Write D/<net>/crl.pem listing the revoked certificates (increasing CRL
    /// number), and crl.replaced-*.pem, the same list signed by each CA that
    /// `init-network --force` replaced and that is still valid.
    Crl {
        /// Network id.
        #[arg(long)]
        network: NetworkId,
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// Days until the CRL's nextUpdate (relays refuse the network's
        /// certificates once a loaded CRL is past it).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VALIDITY_DAYS)))]
        days: u32,
    },
    /// Write the trust bundle (network id -> CA certificates) of all or some networks.
    Bundle {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// Bundle file to write.
        #[arg(long)]
        out: PathBuf,
        /// Include only these networks (repeatable); default: every network under D.
        #[arg(long = "network")]
        networks: Vec<NetworkId>,
        /// Overwrite an existing bundle file.
        #[arg(long)]
        force: bool,
    },
}

/// Whose certificate.
#[derive(Debug, clap::Args)]
struct Who {
    /// Network id.
    #[arg(long)]
    network: NetworkId,
    /// relay, fp, auditor or admin.
    #[arg(long)]
    role: Role,
    /// Name within the network (e.g. nl-fiod, relay1).
    #[arg(long)]
    name: String,
}

impl Who {
    fn identity(&self) -> Result<Identity> {
        Ok(Identity::new(self.network.clone(), self.role, &self.name)?)
    }
}

/// Extra subject alternative names.
#[derive(Debug, clap::Args)]
struct SanArgs {
    /// DNS name SAN (repeatable).
    #[arg(long)]
    dns: Vec<String>,
    /// IP address SAN (repeatable).
    #[arg(long)]
    ip: Vec<IpAddr>,
}

/// Runs `focal-certs` with the process arguments.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Runs `focal-certs` with the given arguments (first = program name).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("focal-certs: error: {} (see focal-certs --help)", one_line_clap(&e));
            return ExitCode::from(2);
        }
    };
    match execute(cli.command) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("focal-certs: error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// clap's message without usage, tips and line breaks.
fn one_line_clap(e: &clap::Error) -> String {
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return "a subcommand is required: init-network, issue, renew, revoke, crl or bundle".to_owned();
    }
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() || line.starts_with("tip:") {
            continue;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line).to_owned());
    }
    if parts.is_empty() { e.kind().to_string() } else { parts.join(" ") }
}

fn execute(command: Command) -> Result<Vec<String>> {
    match command {
        Command::InitNetwork { network, dir, days, force } => init_network(&network, &dir, days, force),
        Command::Issue { who, names, days, dir, force } => issue(&who, names, days, &dir, force),
        Command::Renew { who, names, days, dir } => renew(&who, names, days, &dir),
        Command::Revoke { who, serial, dir } => revoke(&who, serial.as_deref(), &dir),
        Command::Crl { network, dir, days } => crl(&network, &dir, days),
        Command::Bundle { dir, out, networks, force } => bundle(&dir, &out, &networks, force),
    }
}

fn init_network(network: &NetworkId, dir: &Path, days: u32, force: bool) -> Result<Vec<String>> {
    let nd = NetDir::new(dir, network);
    let (cert, key) = (nd.ca_cert(), nd.ca_key());
    ensure_private_dir(&nd.dir)?;
    // Checked under the lock: of two runs at once without --force, one
    // creates the CA and the other is refused.
    let _lock = lock_dir(&nd.dir)?;
    refuse_existing(&[&cert, &key], force)?;
    let mut lines = Vec::new();
    if key.exists() || cert.exists() {
        // Certificates the old CA issued stay valid wherever it is still
        // trusted, and only it can revoke them (`crl` signs a CRL with it
        // too): keep it, never destroy it.
        for (old, kept) in set_aside_replaced_ca(&nd)? {
            lines.push(format!("kept the replaced {} as {}", old.display(), kept.display()));
        }
    }
    let ca = NetworkCa::generate(network, days)?;
    write_new(&key, ca.key_pem().as_bytes(), Mode::Secret, force)?;
    write_new(&cert, ca.cert_pem().as_bytes(), Mode::Public, force)?;
    lines.insert(0, format!("created the {network} CA: {} and {} (0600)", cert.display(), key.display()));
    Ok(lines)
}

/// Moves `ca.key` and `ca.pem` to `ca.replaced-<unix>[-<n>].*`, names no
/// earlier replaced CA has (two replacements within a second keep both):
/// linked first, so nothing is ever overwritten, then the old names go.
fn set_aside_replaced_ca(nd: &NetDir) -> Result<Vec<(PathBuf, PathBuf)>> {
    let stamp = secs(SystemTime::now());
    let olds: Vec<PathBuf> = [nd.ca_key(), nd.ca_cert()].into_iter().filter(|p| p.exists()).collect();
    let kept_name = |old: &Path, n: u32| {
        let ext = old.extension().unwrap_or_default().to_string_lossy().into_owned();
        let suffix = if n == 0 { stamp.to_string() } else { format!("{stamp}-{n}") };
        old.with_extension(format!("replaced-{suffix}.{ext}"))
    };
    let n = (0..).find(|&n| olds.iter().all(|old| !kept_name(old, n).exists())).expect("some suffix is free");
    let mut moved = Vec::new();
    for old in olds {
        let kept = kept_name(&old, n);
        std::fs::hard_link(&old, &kept).map_err(|e| CertsError::io(&kept, e))?;
        std::fs::remove_file(&old).map_err(|e| CertsError::io(&old, e))?;
        moved.push((old, kept));
    }
    sync_dir(&nd.dir).map_err(|e| CertsError::io(&nd.dir, e))?;
    Ok(moved)
}

/// Locks the network directory if there is one (without it there is no
/// CA, and loading it says so).
fn lock_network(dir: &Path, network: &NetworkId) -> Result<Option<DirLock>> {
    let nd = NetDir::new(dir, network);
    if nd.dir.is_dir() { lock_dir(&nd.dir).map(Some) } else { Ok(None) }
}

fn load_ca(dir: &Path, network: &NetworkId) -> Result<(NetDir, NetworkCa)> {
    let nd = NetDir::new(dir, network);
    let (cert, key) = (nd.ca_cert(), nd.ca_key());
    if !cert.exists() {
        return Err(CertsError::request(format!(
            "no CA for network {network} in {} (run `focal-certs init-network {network} --dir {}` first)",
            dir.display(),
            dir.display()
        )));
    }
    let ca = NetworkCa::load(&read_text(&cert)?, &read_text(&key)?)?;
    if ca.network() != network {
        return Err(CertsError::BadCa {
            network: network.to_string(),
            reason: format!("{} holds the CA of network {}", cert.display(), ca.network()),
        });
    }
    Ok((nd, ca))
}

fn request(who: &Who, names: SanArgs, days: u32) -> IssueRequest {
    let mut req = IssueRequest::for_days(who.role, &who.name, days);
    req.dns = names.dns;
    req.ips = names.ip;
    req
}

/// Records the serial of a freshly issued certificate, then writes its key
/// and certificate: a failure in between leaves a recorded serial without
/// files (harmless), never a valid certificate `revoke` cannot find.
fn store_issued(nd: &NetDir, issued: &IssuedCert, replace_existing: bool) -> Result<(PathBuf, PathBuf, u64)> {
    let id = &issued.identity;
    let (cert, key) = (nd.leaf_cert(id.role, &id.name), nd.leaf_key(id.role, &id.name));
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .map_err(|e| CertsError::pem("issued", e))?;
    let info = CertInfo::parse(&der)?;
    let mut state: IssuedFile = load_state(&nd.issued())?;
    state.certs.push(IssuedRecord {
        serial_hex: issued.serial_hex.clone(),
        role: id.role,
        name: id.name.clone(),
        issued_at: secs(SystemTime::now()),
        not_before: secs(info.not_before),
        not_after: secs(info.not_after),
    });
    save_state(&nd.issued(), &state, "# Certificates issued by focal-certs for this network.")?;
    write_new(&key, issued.key_pem.as_bytes(), Mode::Secret, replace_existing)?;
    write_new(&cert, issued.cert_pem.as_bytes(), Mode::Public, replace_existing)?;
    Ok((cert, key, secs(info.not_after)))
}

fn issue(who: &Who, names: SanArgs, days: u32, dir: &Path, force: bool) -> Result<Vec<String>> {
    let id = who.identity()?;
    let _lock = lock_network(dir, &who.network)?;
    let (nd, ca) = load_ca(dir, &who.network)?;
    refuse_existing(&[&nd.leaf_cert(id.role, &id.name), &nd.leaf_key(id.role, &id.name)], force)?;
    let issued = ca.issue(&request(who, names, days))?;
    let (cert, key, until) = store_issued(&nd, &issued, force)?;
    Ok(vec![format!(
        "issued {id} serial {} valid until {}: {} and {} (0600)",
        issued.serial_hex,
        fmt_time(until),
        cert.display(),
        key.display()
    )])
}

fn renew(who: &Who, mut names: SanArgs, days: u32, dir: &Path) -> Result<Vec<String>> {
    let id = who.identity()?;
    let _lock = lock_network(dir, &who.network)?;
    let (nd, ca) = load_ca(dir, &who.network)?;
    let old_path = nd.leaf_cert(id.role, &id.name);
    if !old_path.exists() {
        return Err(CertsError::request(format!("nothing to renew: {} does not exist", old_path.display())));
    }
    let old_der = CertificateDer::from_pem_slice(read_text(&old_path)?.as_bytes())
        .map_err(|e| CertsError::pem(old_path.display().to_string(), e))?;
    let old = CertInfo::parse(&old_der)?;
    if old.identity != id {
        return Err(CertsError::request(format!(
            "{} is a certificate of {}, not {id}",
            old_path.display(),
            old.identity
        )));
    }
    if names.dns.is_empty() && names.ip.is_empty() {
        names.dns = old.dns.clone();
        names.ip = old.ips.clone();
    }
    let issued = ca.issue(&request(who, names, days))?;
    let (cert, key, until) = store_issued(&nd, &issued, true)?;
    let revoked: RevokedFile = load_state(&nd.revoked())?;
    let previous = if revoked.entries.iter().any(|r| r.serial_hex == old.serial_hex) {
        format!("the previous certificate (serial {}) is already revoked", old.serial_hex)
    } else {
        format!(
            "the previous certificate (serial {}) stays valid until {}; revoke it with --serial {} if it must stop now",
            old.serial_hex,
            fmt_time(secs(old.not_after)),
            old.serial_hex
        )
    };
    Ok(vec![
        format!(
            "renewed {id}: serial {} valid until {}: {} and {} (0600)",
            issued.serial_hex,
            fmt_time(until),
            cert.display(),
            key.display()
        ),
        previous,
    ])
}

fn revoke(who: &Who, serial: Option<&str>, dir: &Path) -> Result<Vec<String>> {
    let id = who.identity()?;
    let nd = NetDir::new(dir, &who.network);
    // (No directory: nothing was issued, and the lookup below says so.)
    let _lock = if nd.dir.is_dir() { Some(lock_dir(&nd.dir)?) } else { None };
    let issued: IssuedFile = load_state(&nd.issued())?;
    let mut revoked: RevokedFile = load_state(&nd.revoked())?;
    let serial = serial.map(|s| s.trim_start_matches("0x").to_ascii_lowercase().replace(':', ""));
    let targets: Vec<&IssuedRecord> = issued
        .certs
        .iter()
        .filter(|c| c.role == id.role && c.name == id.name)
        .filter(|c| serial.as_deref().is_none_or(|s| c.serial_hex == s))
        .filter(|c| !revoked.entries.iter().any(|r| r.serial_hex == c.serial_hex))
        .collect();
    if targets.is_empty() {
        return Err(CertsError::request(match serial {
            Some(s) => {
                format!("no unrevoked certificate of {id} with serial {s} in {}", nd.issued().display())
            }
            None => format!("no unrevoked certificate of {id} in {}", nd.issued().display()),
        }));
    }
    let now = secs(SystemTime::now());
    let mut lines = Vec::new();
    for t in &targets {
        lines.push(format!("revoked {id} serial {}", t.serial_hex));
        revoked.entries.push(RevokedRecord {
            serial_hex: t.serial_hex.clone(),
            revoked_at: now,
            role: t.role,
            name: t.name.clone(),
        });
    }
    save_state(&nd.revoked(), &revoked, "# Certificates revoked by focal-certs for this network.")?;
    lines.push(format!("publish it: focal-certs crl --network {} --dir {}", who.network, dir.display()));
    Ok(lines)
}

fn crl(network: &NetworkId, dir: &Path, days: u32) -> Result<Vec<String>> {
    let _lock = lock_network(dir, network)?;
    let (nd, ca) = load_ca(dir, network)?;
    let mut state: RevokedFile = load_state(&nd.revoked())?;
    let number = state.last_crl_number + 1;
    let list: Vec<Revoked> = state
        .entries
        .iter()
        .map(|r| Revoked { serial_hex: r.serial_hex.clone(), revoked_at: r.revoked_at })
        .collect();
    let pem = ca.crl(&list, number, days)?;
    // The number is recorded before the CRL is written: a failure can skip a
    // number but never reuse one.
    state.last_crl_number = number;
    save_state(&nd.revoked(), &state, "# Certificates revoked by focal-certs for this network.")?;
    replace(&nd.crl(), pem.as_bytes(), Mode::Public)?;
    let mut lines = vec![format!(
        "wrote {}: CRL number {number}, {} revoked, next update {}",
        nd.crl().display(),
        list.len(),
        fmt_time(secs(SystemTime::now()) + u64::from(days) * 86_400)
    )];
    // Certificates of a replaced CA can only be revoked by a CRL it signs.
    for (suffix, old) in replaced_cas(&nd)? {
        let out = nd.dir.join(format!("crl.replaced-{suffix}.pem"));
        if old.not_after() <= SystemTime::now() {
            let _ = std::fs::remove_file(&out);
            continue; // expired: it vouches for nobody any more
        }
        replace(&out, old.crl(&list, number, days)?.as_bytes(), Mode::Public)?;
        lines.push(format!(
            "wrote {}: the same revocations signed by the CA replaced at {} (valid until {}), for relays and clients whose trust bundle still holds it: add it to their CRLs",
            out.display(),
            suffix.split('-').next().and_then(|t| t.parse().ok()).map_or(suffix.clone(), fmt_time),
            fmt_time(secs(old.not_after()))
        ));
    }
    Ok(lines)
}

/// The CAs `init-network --force` set aside (`ca.replaced-<suffix>.pem`
/// with its key), by suffix.
fn replaced_cas(nd: &NetDir) -> Result<Vec<(String, NetworkCa)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&nd.dir).map_err(|e| CertsError::io(&nd.dir, e))? {
        let name = entry.map_err(|e| CertsError::io(&nd.dir, e))?.file_name().to_string_lossy().into_owned();
        let Some(suffix) = name.strip_prefix("ca.replaced-").and_then(|n| n.strip_suffix(".pem")) else {
            continue;
        };
        let (cert, key) = (nd.dir.join(&name), nd.dir.join(format!("ca.replaced-{suffix}.key")));
        if !key.exists() {
            continue;
        }
        out.push((suffix.to_owned(), NetworkCa::load(&read_text(&cert)?, &read_text(&key)?)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn bundle(dir: &Path, out: &Path, only: &[NetworkId], force: bool) -> Result<Vec<String>> {
    let networks: Vec<NetworkId> = if only.is_empty() {
        let entries = std::fs::read_dir(dir).map_err(|e| CertsError::io(dir, e))?;
        let mut found: Vec<NetworkId> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| NetworkId::new(&e.file_name().to_string_lossy()).ok())
            .filter(|n| NetDir::new(dir, n).ca_cert().is_file())
            .collect();
        found.sort();
        found
    } else {
        only.to_vec()
    };
    if networks.is_empty() {
        return Err(CertsError::request(format!("no network CA found under {}", dir.display())));
    }
    let mut bundle = TrustBundle::default();
    for net in &networks {
        let path = NetDir::new(dir, net).ca_cert();
        if !path.is_file() {
            return Err(CertsError::request(format!(
                "no CA for network {net}: {} does not exist",
                path.display()
            )));
        }
        let der = CertificateDer::from_pem_slice(read_text(&path)?.as_bytes())
            .map_err(|e| CertsError::pem(path.display().to_string(), e))?;
        bundle.insert(net.clone(), der);
    }
    TrustStore::new(bundle.clone(), Vec::new())?;
    write_new(out, bundle.to_toml().as_bytes(), Mode::Public, force)?;
    let names: Vec<&str> = networks.iter().map(NetworkId::as_str).collect();
    Ok(vec![format!("wrote {} with the CAs of {}", out.display(), names.join(", "))])
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix seconds.
fn fmt_time(unix: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX)) else {
        return format!("unix {unix}");
    };
    let (y, m, d) = t.to_calendar_date();
    format!("{y:04}-{:02}-{d:02} {:02}:{:02}:{:02} UTC", u8::from(m), t.hour(), t.minute(), t.second())
}
