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
//! Run: `cargo run --release -p focal-tests --bin focal-bench -- [--quick]`
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
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_owned).collect());
    let wants = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut params = Params::new(quick);
    let num =
        |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)?.parse::<u32>().ok());
    if let Some(r) = num("--rate") {
        params.rate = r.max(1);
    }
    if let Some(n) = num("--senders") {
        params.senders = (n as usize).clamp(1, 256);
    }
    if let Some(s) = num("--secs") {
        params.rate_secs = s.max(1);
    }
    if let Some(i) = args.iter().position(|a| a == "--sweep") {
        // `--sweep 250,500,750`, or `--sweep none`.
        params.sweep = args.get(i + 1).map_or(Vec::new(), |v| {
            v.split(',').filter_map(|r| r.parse::<u32>().ok()).filter(|&r| r > 0).collect()
        });
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
        if wants("focal") {
            match focal::run(&params).await {
                Ok(r) => focal_res = Some(r),
                Err(e) => eprintln!("focal-bench: focal section failed: {e:#}"),
            }
        }
        let mut nats_res = Vec::new();
        if wants("nats") {
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
        if wants("quic") {
            match quic::run(if params.quick { 256 << 20 } else { 1 << 30 }).await {
                Ok(rows) => table.extend("transport", rows),
                Err(e) => eprintln!("focal-bench: quic section failed: {e:#}"),
            }
        }
        if wants("attach") {
            match attach::run(if params.quick { 256 << 20 } else { 1 << 30 }).await {
                Ok(rows) => table.extend("attachment CARIN -> GFP -> ARINSA (focal client processes)", rows),
                Err(e) => eprintln!("focal-bench: attach section failed: {e:#}"),
            }
        }
        if wants("idle") {
            match idle::run(if params.quick { 1_000 } else { 10_000 }).await {
                Ok(rows) => table.extend("idle scale (one relay process)", rows),
                Err(e) => eprintln!("focal-bench: idle section failed: {e:#}"),
            }
        }
    });
    if wants("crypto") {
        match crypto::run(&params) {
            Ok(rows) => table.extend("crypto", rows),
            Err(e) => eprintln!("focal-bench: crypto section failed: {e:#}"),
        }
    }
    if wants("audit") {
        match audit::run(&params) {
            Ok(rows) => table.extend("audit", rows),
            Err(e) => eprintln!("focal-bench: audit section failed: {e:#}"),
        }
    }
    table.print();
    ExitCode::SUCCESS
}
