//! Test harness: builders that start whole Focal federations on loopback
//! (STYLE.md §9, after linkerd's integration builders).
//!
//! - [`pki::TestPki`]: a throwaway PKI made with `focal_certs` (CA per
//!   network, relay certificates for 127.0.0.1, focal-point certificates,
//!   trust bundle, CRLs) in a temporary directory;
//! - [`relay::RelayHandle`]: one relay, in-process (`focal_relay::serve` on a
//!   task with a shutdown trigger) or a child process (`harness-relay`) that
//!   can be SIGKILLed and restarted on the same ports and data;
//! - [`fp::FocalPoint`]: a focal point's certificate and profile, driven
//!   through the library or as a user would through the `focal` CLI;
//! - [`federation::Federation`]: all of the above from one builder;
//! - [`raw`]: raw gRPC bytes and hand-made envelopes for refusal tests;
//! - [`fedraw`]: raw QUIC connections and hellos to a relay's federation listener;
//! - [`transfer`]: a large attachment CARIN -> GFP -> ARINSA with `focal`
//!   child processes and peak RSS per process (large test and benchmark);
//! - [`fault`]: loopback UDP proxies that cut, delay or drop a federation
//!   link's traffic, and a ledger that checks exactly-once, in-order delivery.
//!
//! Everything listens on 127.0.0.1 with OS-picked ports, uses real TLS and
//! real sled stores in temporary directories.
//!
//! Environment: `FOCAL_TEST_LOG` (tracing filter for in-process code),
//! `FOCAL_TEST_ECHO_RELAY=1` (echo child relays' logs), `FOCAL_TEST_RELAY_LOG`
//! (their `RUST_LOG`, default `info`), `FOCAL_TEST_KEEP=1` (keep the
//! temporary directory).

pub mod cli;
pub mod fault;
pub mod federation;
pub mod fedraw;
pub mod fp;
pub mod pki;
pub mod raw;
pub mod relay;
pub mod transfer;

use std::path::PathBuf;

pub use federation::{Federation, FederationBuilder, NetworkSpec};
pub use fp::FocalPoint;
pub use pki::{CertFiles, TestPki};
pub use relay::{RelayHandle, RelayMode};

/// Paths of the harness binaries, for child processes. Build it in an
/// integration test with [`bins!`], which reads `CARGO_BIN_EXE_*` there.
#[derive(Clone, Debug)]
pub struct Bins {
    /// The relay (`harness-relay`, same code as `focal-relay`).
    pub relay: PathBuf,
    /// The CLI (`harness-focal`, same code as `focal`).
    pub focal: PathBuf,
}

/// The harness binaries of this crate; only usable in its integration tests
/// (cargo sets `CARGO_BIN_EXE_<name>` for those).
#[macro_export]
macro_rules! bins {
    () => {
        $crate::Bins {
            relay: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_harness-relay")),
            focal: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_harness-focal")),
        }
    };
}

/// Installs the ring crypto provider and a test tracing subscriber (once).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let filter = std::env::var("FOCAL_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}
