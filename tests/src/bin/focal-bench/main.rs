//! `focal-bench`: Focal's benchmark program (issue 9). It sets everything up
//! itself on loopback and prints a table:
//!
//! 1. federated throughput CARIN -> GFP hub -> ARINSA (three relays as child
//!    processes, durable at every hop), to the recipients' live inboxes;
//! 2. the same path on NATS JetStream (three `nats-server`s joined by
//!    leafnodes with mutual TLS, a file-store stream at every hop), once
//!    with an fsync of every write (2.15, `sync_interval: always`) and once
//!    without (Debian's 2.9);
//! 3. sealing / opening cost, ChaCha20-Poly1305 on one core, relay CPU time
//!    per forwarded message;
//! 4. the audit log: append, checkpoint, offline verification, proofs;
//! 5. raw quinn throughput on loopback (the transport limit);
//! 6. a 1 GiB attachment through the three relays with the `focal` client
//!    (`attach`);
//! 7. memory of a relay holding 10,000 idle authenticated connections (`idle`).
//!
//! Run: `cargo run --release -p focal-tests --bin focal-bench -- [--quick]` (`--help` lists the flags)
//! (`tests/bench/setup.sh` installs both `nats-server`s first). `--only focal,nats,
//! crypto,audit,quic,attach,idle` selects sections; `--rate N --secs S` change
//! the offered load phase; `--sweep 250,500,750` the lower loads measured
//! after it (the default; none with `--quick`; `--sweep none`); `--senders
//! N` the number of (sender, recipient) pairs, i.e. independent lanes
//! (default 4, 2 with `--quick`). See BENCHMARKS.md.
//!
//! The same binary is also the child processes: invoked as
//! `focal-bench run --config <file>` (what the harness runs) it is
//! `focal-relay`; invoked as `focal-bench --profile <file> …` (what
//! `focal_tests::transfer` runs) it is the `focal` CLI and writes its peak
//! RSS like `harness-focal`.

mod attach;
mod audit;
mod crypto;
mod focal;
mod idle;
mod load;
mod nats;
mod quic;
mod table;

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: the relay's sled store and async tasks
/// allocate many short-lived small blocks (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sizes of one benchmark run.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    /// Sending focal points at CARIN (and as many recipients at ARINSA).
    pub senders: usize,
    /// Requests in flight per sender during the saturation phase.
    pub window: usize,
    /// Messages in the saturation phase.
    pub saturation_msgs: usize,
    /// Offered load of the latency phase (msgs/s).
    pub rate: u32,
    /// Lower offered loads measured after it, for the highest rate that
    /// keeps p99 <= 10 ms (msgs/s; empty: none).
    pub sweep: Vec<u32>,
    /// Duration of each sweep step (s).
    pub sweep_secs: u32,
    /// Duration of the latency phase (s).
    pub rate_secs: u32,
    /// Payload body size (bytes).
    pub body: usize,
    /// Audit entries to verify offline.
    pub audit_entries: u64,
    /// Quick mode.
    pub quick: bool,
}

impl Params {
    /// End of the offered-load phase's message numbers (saturation first,
    /// then the offered load); the sweep's numbers start here.
    pub(crate) fn offered_end(&self) -> usize {
        self.saturation_msgs + (self.rate * self.rate_secs) as usize
    }

    /// First of the warm-up's message numbers (one per sender), after the sweep's.
    pub(crate) fn warmup_start(&self) -> usize {
        self.offered_end() + load::sweep_len(&self.sweep, self.sweep_secs)
    }

    fn new(quick: bool) -> Self {
        if quick {
            Params {
                senders: 2,
                window: 16,
                saturation_msgs: 2_000,
                rate: 200,
                rate_secs: 5,
                sweep: Vec::new(),
                sweep_secs: 5,
                body: 1024,
                audit_entries: 100_000,
                quick,
            }
        } else {
            Params {
                senders: 4,
                window: 32,
                saturation_msgs: 20_000,
                rate: 1_000,
                rate_secs: 10,
                sweep: vec![250, 500, 750],
                sweep_secs: 10,
                body: 1024,
                audit_entries: 1_000_000,
                quick,
            }
        }
    }
}

/// `focal-bench`'s command line (the child-process modes `run` and
/// `--profile` are told apart before it is parsed).
#[derive(clap::Parser, Debug)]
#[command(
    name = "focal-bench",
    about = "Focal's benchmarks on loopback: the federated path against NATS JetStream, crypto, audit, \
             transport, attachments and idle scale (see BENCHMARKS.md)"
)]
struct BenchArgs {
    /// Smaller sizes for a check run (about a minute).
    #[arg(long)]
    quick: bool,
    /// Sections to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Offered load of the latency phase, msgs/s (default 1000; 200 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Duration of the latency phase, seconds (default 10; 5 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    secs: Option<u32>,
    /// (Sender, recipient) pairs, i.e. independent lanes (default 4; 2 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    senders: Option<u32>,
    /// Lower offered loads measured after the latency phase, e.g.
    /// `250,500,750` (the default; none with --quick), or `none`.
    #[arg(long, value_parser = parse_sweep)]
    sweep: Option<Sweep>,
}

/// A section of the benchmark (`--only`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Focal,
    Nats,
    Crypto,
    Audit,
    Quic,
    Attach,
    Idle,
}

/// The rates of `--sweep`.
#[derive(Clone, Debug)]
struct Sweep(Vec<u32>);

fn parse_sweep(s: &str) -> Result<Sweep, String> {
    if s == "none" {
        return Ok(Sweep(Vec::new()));
    }
    s.split(',')
        .map(|r| match r.trim().parse::<u32>() {
            Ok(rate) if rate > 0 => Ok(rate),
            _ => Err(format!("{r:?} is not a rate in msgs/s (a whole number above 0)")),
        })
        .collect::<Result<_, _>>()
        .map(Sweep)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run") {
        // The harness spawns relays as `<bin> run --config <file>`.
        return focal_relay::cli::main();
    }
    if args.get(1).map(String::as_str) == Some("--profile") {
        // `focal_tests::transfer` runs the client as `<bin> --profile <file> …`.
        let code = focal_client::cli::main();
        focal_tests::transfer::write_own_peak_rss();
        return code;
    }
    let cli = <BenchArgs as clap::Parser>::parse();
    let wants = |s: Section| cli.only.is_empty() || cli.only.contains(&s);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut params = Params::new(cli.quick);
    if let Some(r) = cli.rate {
        params.rate = r;
    }
    if let Some(n) = cli.senders {
        params.senders = n as usize;
    }
    if let Some(s) = cli.secs {
        params.rate_secs = s;
    }
    if let Some(Sweep(rates)) = cli.sweep {
        params.sweep = rates;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("focal-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut table = table::Table::default();
    eprintln!("focal-bench: {params:?}");
    rt.block_on(async {
        let mut focal_res = None;
        if wants(Section::Focal) {
            match focal::run(&params).await {
                Ok(r) => focal_res = Some(r),
                Err(e) => eprintln!("focal-bench: focal section failed: {e:#}"),
            }
        }
        let mut nats_res = Vec::new();
        if wants(Section::Nats) {
            let payload = focal_res.as_ref().map_or(params.body + 300, |f| f.payload_bytes);
            for flavor in nats::flavors() {
                match nats::run(&params, payload, &flavor).await {
                    Ok(r) => nats_res.push(r),
                    Err(e) => {
                        eprintln!("focal-bench: nats section ({}) failed: {e:#}", flavor.binary.display())
                    }
                }
            }
        }
        if nats_res.is_empty() {
            table.federated(&params, focal_res.as_ref(), None);
        }
        for n in &nats_res {
            table.federated(&params, focal_res.as_ref(), Some(n));
        }
        if wants(Section::Quic) {
            match quic::run(if params.quick { 256 << 20 } else { 1 << 30 }).await {
                Ok(rows) => table.extend("transport", rows),
                Err(e) => eprintln!("focal-bench: quic section failed: {e:#}"),
            }
        }
        if wants(Section::Attach) {
            match attach::run(if params.quick { 256 << 20 } else { 1 << 30 }).await {
                Ok(rows) => table.extend("attachment CARIN -> GFP -> ARINSA (focal client processes)", rows),
                Err(e) => eprintln!("focal-bench: attach section failed: {e:#}"),
            }
        }
        if wants(Section::Idle) {
            match idle::run(if params.quick { 1_000 } else { 10_000 }).await {
                Ok(rows) => table.extend("idle scale (one relay process)", rows),
                Err(e) => eprintln!("focal-bench: idle section failed: {e:#}"),
            }
        }
    });
    if wants(Section::Crypto) {
        match crypto::run(&params) {
            Ok(rows) => table.extend("crypto", rows),
            Err(e) => eprintln!("focal-bench: crypto section failed: {e:#}"),
        }
    }
    if wants(Section::Audit) {
        match audit::run(&params) {
            Ok(rows) => table.extend("audit", rows),
            Err(e) => eprintln!("focal-bench: audit section failed: {e:#}"),
        }
    }
    table.print();
    ExitCode::SUCCESS
}
