//! tracing set-up for the `focal-relay` binary: human-readable text or JSON
//! lines on stderr, level from `RUST_LOG` (default `info`, with the chatty
//! transport crates at `warn`). Logs carry identities, addresses and msg
//! ids, never message content.

use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Default filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str =
    "info,h2=warn,hyper=warn,hyper_util=warn,tower=warn,rustls=warn,sled=warn,quinn=warn";

/// Keeps the log writer thread; dropping it writes out what is queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber (no-op if one is installed already).
///
/// Lines are formatted where they are logged and written to stderr by a
/// thread of their own, in one write per burst instead of one per line (a
/// write per line, and the wake-up of the reader behind stderr, was 4-8 %
/// of a busy relay's CPU). No line is dropped: when 128,000 lines wait,
/// logging waits too. Hold the guard until the end of `main`.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("focal-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
    guard
}
