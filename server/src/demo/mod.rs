//! `focal-relay demo`: a whole 8-network federation on loopback in one
//! process, and a sealed case message carried across it.
//!
//! 1. A throwaway PKI for the networks of `networks.toml` (a copy of
//!    `shared/networks.toml`, embedded): one CA per network, relay
//!    certificates, synthetic focal points (`fp-nl-fiod@carin`,
//!    `fp-za-npa@arinsa`, …: jurisdictions and agency types only) and one
//!    auditor per network ([`setup`]).
//! 2. One relay config per network (the hub, gfp, peers with every regional
//!    relay; each regional relay peers with the hub as its default route),
//!    written under the demo directory and loaded back as `focal-relay run`
//!    would; eight relays ([`crate::serve`]) on tokio tasks, OS-picked
//!    loopback ports.
//! 3. Every focal point publishes its encryption key; `fp-nl-fiod@carin`
//!    sends a sealed asset-tracing request to `fp-za-npa@arinsa`, which opens
//!    and acknowledges it and replies ([`exchange`]).
//! 4. It prints the route (hops with times), the receipts (kind, signer) and
//!    each relay's audit trail for the message ([`report`]); then stops the
//!    relays and exits 0, or with `--keep-running` stays up and prints the
//!    client profiles to use with `focal --profile …`.
//!
//! Any failure stops the demo with exit code 1 and a message naming the
//! step that failed and why; nothing is simulated.
//!
//! Layering: this module drives the real client library, so `focal-relay`
//! depends on `focal-client` — a deliberate exception to the crate layering
//! (relay code elsewhere never uses it), so that the demo exercises exactly
//! what focal points run.

pub mod exchange;
pub mod networks;
pub mod report;
pub mod setup;

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Longest time any one step (connecting a member, publishing a key,
/// sending, opening, acknowledging, fetching a log) may take before the
/// demo gives up naming it: the demo never hangs silently.
pub const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `fut` as the step `step`, failing it past [`STEP_DEADLINE`].
pub async fn within<T>(step: &str, fut: impl Future<Output = Result<T, DemoError>>) -> Result<T, DemoError> {
    match tokio::time::timeout(STEP_DEADLINE, fut).await {
        Ok(r) => r,
        Err(_) => Err(DemoError::new(step, format!("did not finish within {} s", STEP_DEADLINE.as_secs()))),
    }
}

/// Options of `focal-relay demo`.
#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Stay up after the exchange (until Ctrl-C / SIGTERM).
    pub keep_running: bool,
    /// Write everything here instead of a temporary directory (kept).
    pub dir: Option<PathBuf>,
}

/// A demo step that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}")]
pub struct DemoError {
    /// What the demo was doing.
    pub step: String,
    /// What went wrong.
    pub detail: String,
}

impl DemoError {
    /// A failure of `step`.
    pub fn new(step: impl Into<String>, detail: impl Display) -> Self {
        DemoError { step: step.into(), detail: detail.to_string() }
    }
}

/// Runs the demo; the exit code of `focal-relay demo`.
pub fn main(opts: DemoOptions) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Relay logs would drown the report: errors only unless RUST_LOG says otherwise.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    // Eight relays and their clients share this runtime: at least 16 workers, so a relay task stuck in a synchronous store call cannot starve the others.
    let workers = std::thread::available_parallelism().map_or(16, |n| n.get().max(16));
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("focal-relay demo: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!();
            eprintln!("DEMO FAILED while {}", e.step);
            eprintln!("  {}", e.detail);
            ExitCode::FAILURE
        }
    }
}

/// The whole demo; see the module docs.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let nets = networks::load()?;
    let (dir, _tmp) = match &opts.dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d).map(|mut r| r.next().is_some()).unwrap_or(true) {
                return Err(DemoError::new(
                    "preparing the demo directory",
                    format!("{} exists and is not empty; give an empty or new directory", d.display()),
                ));
            }
            std::fs::create_dir_all(d).map_err(|e| {
                DemoError::new("preparing the demo directory", format!("{}: {e}", d.display()))
            })?;
            (std::path::absolute(d).unwrap_or_else(|_| d.clone()), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("focal-demo-")
                .tempdir()
                .map_err(|e| DemoError::new("creating a temporary directory", e))?;
            (t.path().to_owned(), Some(t))
        }
    };
    println!("Focal demo: {} networks on loopback, throwaway PKI, synthetic focal points", nets.len());
    println!("  directory {}", dir.display());

    let mut fed = setup::start(&dir, &nets).await?;
    let n_fp = fed.focal_points.len();
    println!("[1/5] PKI: {} network CAs; relay, focal-point and auditor certificates issued", nets.len());
    println!(
        "[2/5] relays started ({} peers with every regional relay; each regional relay routes through it):",
        fed.relays[0].name
    );
    for r in &fed.relays {
        println!(
            "        {:<18} grpc {:<16} quic {:<16} {}",
            r.name,
            r.grpc.to_string(),
            r.quic.to_string(),
            r.network.name
        );
    }

    // The exchange races the relays: a relay that stops early fails the demo.
    let mut tasks = std::mem::take(&mut fed.tasks);
    let work = async {
        let clients = exchange::enrol(&fed.focal_points).await?;
        println!("[3/5] {n_fp} focal points published their encryption keys in their networks' directories");
        let pick = |net: &str| {
            fed.focal_points.iter().position(|m| m.address.network().as_str() == net).ok_or_else(|| {
                DemoError::new("choosing the demo focal points", format!("no member of {net}"))
            })
        };
        let (a, b) = (pick("carin")?, pick("arinsa")?);
        let (case, reply) = exchange::run(&clients[a], &clients[b]).await?;
        println!(
            "[4/5] case message delivered, opened and acknowledged; reply likewise; DELIVERED receipts back"
        );
        let views = report::fetch_logs(&fed).await?;
        let total: u64 = views.logs.iter().map(|l| l.2).sum();
        println!(
            "[5/5] audit logs of {} relays fetched and verified against their signed checkpoints ({total} records in all)",
            views.logs.len()
        );
        Ok::<_, DemoError>((case, reply, views))
    };
    let (case, reply, views) = tokio::select! {
        r = work => r?,
        Some(done) = tasks.join_next() => {
            let (name, result) = done.map_err(|e| DemoError::new("running the relays", e))?;
            let why = match result { Ok(()) => "stopped".to_owned(), Err(e) => e.to_string() };
            return Err(DemoError::new(format!("running {name}"), format!("the relay ended early: {why}")));
        }
    };
    fed.tasks = tasks;
    println!();
    let case_events = views.trace(&case.msg_id)?;
    print!("{}", report::leg_report("Case message", &case, &case_events, &views));
    println!();
    let reply_events = views.trace(&reply.msg_id)?;
    print!("{}", report::leg_report("Reply", &reply, &reply_events, &views));
    println!();

    if opts.keep_running {
        keep_running(&fed).await;
    }
    fed.shutdown().await?;
    println!("relays stopped; demo done");
    if _tmp.is_none() {
        println!("everything is kept in {}", dir.display());
    }
    Ok(())
}

/// Prints the profiles and waits for Ctrl-C or SIGTERM.
async fn keep_running(fed: &setup::DemoFederation) {
    println!("The federation stays up until Ctrl-C. Client profiles (use with `focal --profile FILE ...`):");
    for m in fed.focal_points.iter().chain(&fed.auditors) {
        println!("  {:<26} {}", m.address.to_string(), m.profile.display());
    }
    if let (Some(a), Some(b)) = (
        fed.focal_points.iter().find(|m| m.address.network().as_str() == "carin"),
        fed.focal_points.iter().find(|m| m.address.network().as_str() == "arinsa"),
    ) {
        println!(
            "For example (from a checkout, `focal` is `cargo run --release -p focal-client --bin focal --`):"
        );
        println!("  focal --profile {} inbox", b.profile.display());
        println!(
            "  focal --profile {} send --to {} --subject test --body hello",
            a.profile.display(),
            b.address
        );
        println!("  focal --profile {} receipts", a.profile.display());
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
