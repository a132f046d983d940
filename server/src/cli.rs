//! `focal-relay`: the relay binary's logic (the binary itself only calls
//! [`main`]).
//!
//! - `focal-relay run --config F [--log-format json]` runs a relay until
//!   SIGINT or SIGTERM, then drains and flushes. Config and certificates are
//!   checked before any port is bound; once serving, the relay logs
//!   `focal-relay listening grpc=<addr> federation=<addr>` (stderr).
//!   SIGHUP reloads the certificate, key, trust bundle and CRLs (see
//!   [`crate::reload`]) and logs `reload complete` or `reload failed`.
//! - `focal-relay check --config F` checks a config and its certificate files
//!   and prints what it found (exit 1 on any problem).
//! - `focal-relay demo [--keep-running] [--dir D]` starts a throwaway
//!   8-network federation in this process, sends a sealed case message
//!   across it and prints route, receipts and audit trails
//!   ([`crate::demo`]); exit 1 naming the failed step.
//!
//! Exit codes: 0 success, 1 failure while running or a failed check, 2 bad
//! usage, config or certificates at start.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::logging::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(name = "focal-relay", version, about = "Focal relay node: one network's relay of the federation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a relay until SIGINT/SIGTERM.
    Run {
        /// The relay's TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Log output format (stderr).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check a config and its certificate files; print what was found.
    Check {
        /// The relay's TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Start a throwaway 8-network federation on loopback and send a message across it.
    Demo {
        /// Stay up after the exchange and print the client profiles to use.
        #[arg(long)]
        keep_running: bool,
        /// Write PKI, configs, stores and profiles here (kept) instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Runs the `focal-relay` command line.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match cli.cmd {
        Cmd::Run { config, log_format } => run(&config, log_format),
        Cmd::Check { config } => {
            let report = crate::check::check(&config);
            print!("{report}");
            if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Cmd::Demo { keep_running, dir } => crate::demo::main(crate::demo::DemoOptions { keep_running, dir }),
    }
}

fn run(path: &std::path::Path, format: LogFormat) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _log_guard = logging::init(format);
    let config = match crate::config::RelayConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("focal-relay: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::check::load_tls(&config) {
        tracing::error!("{e}");
        eprintln!("focal-relay: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("focal-relay: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listeners = match crate::Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("focal-relay: {e}");
                return ExitCode::from(2);
            }
        };
        let options = crate::ServeOptions { reload: Some(reload_signal()), ready: None };
        match crate::serve_with(config, listeners, shutdown_signal(), options).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("focal-relay: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// One `()` per SIGHUP (a burst of signals while a reload is pending counts once).
fn reload_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(()) {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with `focal admin reload`")
            }
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
