//! `focal console`: starts the local web console ([`crate::console`]) with
//! the profile's identity and prints the one-time login URL.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use crate::client::Client;
use crate::console::{Console, ConsoleOptions};
use crate::error::Result;
use crate::profile::Profile;

/// `focal console …`
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Port on 127.0.0.1 (0: any free port; the URL printed names it).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Loopback address to bind (127.0.0.1 or ::1); any other is refused.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), conflicts_with = "dangerous_listen")]
    pub listen: IpAddr,
    /// Bind this address even if other machines can reach it (ADDR:PORT). Dangerous: the
    /// session token is then the only protection and travels in clear HTTP.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "port")]
    pub dangerous_listen: Option<SocketAddr>,
    /// Auditors: the log's verifier key (from the network's secretariat).
    #[arg(long, env = "FOCAL_AUDIT_KEY")]
    pub audit_key: Option<String>,
    /// Auditors: local log directory (default: <store_dir>/audit-log).
    #[arg(long, value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
    /// Auditors: a witness verifier key whose cosignatures are verified (repeatable), as for
    /// `focal audit verify --witness`.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// Auditors: valid witness cosignatures required on the latest checkpoint.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub require_witnesses: usize,
}

/// Serves the console until Ctrl-C or SIGTERM.
pub(super) async fn run(a: &ConsoleArgs, profile: Profile, json: bool) -> Result<()> {
    let (listen, dangerous_listen) = match a.dangerous_listen {
        Some(addr) => (addr, true),
        None => (SocketAddr::new(a.listen, a.port), false),
    };
    crate::console::check_listen(listen, dangerous_listen)?;
    let client = Client::connect(profile).await?;
    let opts = ConsoleOptions {
        listen,
        dangerous_listen,
        audit_key: a.audit_key.clone(),
        audit_dir: a.audit_dir.clone(),
        witnesses: a.witnesses.clone(),
        required_witnesses: a.require_witnesses,
    };
    let console = Console::bind(client, opts).await?;
    let url = console.url();
    if json {
        println!(
            "{}",
            serde_json::json!({"type": "console", "url": url, "listen": console.local_addr().to_string()})
        );
    } else {
        println!("focal console for {} — open in your browser:\n{url}", console.local_addr());
    }
    let _ = std::io::stdout().flush();
    console.serve(shutdown_signal()).await
}

/// Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
