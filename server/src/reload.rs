//! Reload without downtime (SIGHUP or `Admin.Reload`): re-reads the files
//! the config names under `tls.*` — the relay's certificate and key, the
//! trust bundle and the CRLs — checks them exactly as at start
//! ([`crate::check::load_parts`]), and only if everything checks out:
//!
//! 1. swaps the trust store in [`SharedTrust`] (every verifier consults it
//!    at each handshake, gRPC and QUIC alike);
//! 2. builds a new gRPC server config with the new certificate and key and
//!    puts it in the [`AcceptorCell`]: the next handshake uses it, open
//!    connections keep their session;
//! 3. when federation runs ([`Reloader::set_federation`]), gives the QUIC
//!    endpoint the new certificate and key for its next handshakes (server
//!    config and per-peer client configs; live connections keep running);
//! 4. closes every live gRPC connection whose client certificate the new
//!    trust refuses (revoked by a new CRL, its CA removed, expired), which
//!    ends its RPCs, live `Inbox` streams included, and every peer's QUIC
//!    connection whose certificate it refuses (close code `REVOKED`); the
//!    verifiers refuse their new connections;
//! 5. publishes the new credentials on a watch channel, updates the dated
//!    list behind the expiry warnings and metrics, and logs what it did.
//!
//! Step 4 also runs every minute without a reload ([`Reloader::sweep`]):
//! a certificate that expires, or whose CRL passes its next update, ends its
//! connections within a minute, not at the next reload.
//!
//! A failed reload changes nothing and says why; the relay keeps serving
//! with what it had. The config file itself is not re-read: listeners,
//! peers and limits need a restart.

use std::sync::Arc;
use std::time::SystemTime;

use focal_certs::{ClientPolicy, Credentials, SharedTrust};
use tokio::sync::{mpsc, watch};

use crate::RelayError;
use crate::config::RelayConfig;
use crate::connections::{Closed, LiveConnections};
use crate::expiry;
use crate::federation::FederationControl;
use crate::metrics::Metrics;
use crate::tls::AcceptorCell;

/// What a reload did.
#[derive(Clone, Debug)]
pub struct ReloadReport {
    /// The relay certificate's identity and its notAfter (unix seconds).
    pub relay_not_after: i64,
    /// Networks in the new trust bundle.
    pub networks: usize,
    /// CRL files loaded.
    pub crls: usize,
    /// Live connections closed because their certificate is no longer accepted.
    pub closed: Vec<Closed>,
    /// Items expiring within the warning period (logged).
    pub expiring_soon: usize,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reloaded relay certificate and key, trust bundle ({} networks) and {} CRL file(s); \
             closed {} connection(s)",
            self.networks,
            self.crls,
            self.closed.len()
        )?;
        for c in &self.closed {
            write!(f, "; {} ({}): {}", c.identity, c.remote, c.reason)?;
        }
        if self.expiring_soon > 0 {
            write!(f, "; {} item(s) expire soon (see the log)", self.expiring_soon)?;
        }
        Ok(())
    }
}

/// How often live connections are checked against the trust with no
/// reload (see [`Reloader::sweep`]).
pub const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Everything a reload touches.
pub struct Reloader {
    config: RelayConfig,
    trust: SharedTrust,
    acceptor: AcceptorCell,
    live: LiveConnections,
    policy: ClientPolicy,
    metrics: Arc<Metrics>,
    dated: expiry::Shared,
    creds: watch::Sender<Arc<Credentials>>,
    federation: std::sync::RwLock<Option<FederationControl>>,
    lock: tokio::sync::Mutex<()>,
}

/// The parts of a running node a [`Reloader`] acts on.
pub struct ReloadParts {
    /// The validated config (its `tls.*` paths are re-read).
    pub config: RelayConfig,
    /// The trust every verifier consults.
    pub trust: SharedTrust,
    /// The gRPC listener's acceptor.
    pub acceptor: AcceptorCell,
    /// The gRPC listener's live connections.
    pub live: LiveConnections,
    /// Who the gRPC listener accepts.
    pub policy: ClientPolicy,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The credentials in force at start.
    pub creds: Credentials,
}

impl Reloader {
    /// A reloader over `parts`; dates the material in force now.
    pub fn new(parts: ReloadParts) -> Arc<Self> {
        let dated = expiry::scan(&parts.creds, &parts.trust.current(), &parts.config.tls.crls);
        Arc::new(Reloader {
            config: parts.config,
            trust: parts.trust,
            acceptor: parts.acceptor,
            live: parts.live,
            policy: parts.policy,
            metrics: parts.metrics,
            dated: Arc::new(std::sync::RwLock::new(dated)),
            creds: watch::channel(Arc::new(parts.creds)).0,
            federation: std::sync::RwLock::new(None),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// From now on, reloads also act on the QUIC federation endpoint (new
    /// certificate for new connections, revoked peers closed).
    pub fn set_federation(&self, fed: FederationControl) {
        *self.federation.write().unwrap_or_else(|e| e.into_inner()) = Some(fed);
    }

    fn federation(&self) -> Option<FederationControl> {
        self.federation.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The dated certificates and CRLs in force (expiry warnings, metrics, status).
    pub fn dated(&self) -> expiry::Shared {
        self.dated.clone()
    }

    /// The gRPC listener's live connections.
    pub fn live(&self) -> &LiveConnections {
        &self.live
    }

    /// The relay credentials in force; changes on each successful reload
    /// (the federation endpoint rebuilds its server config from it).
    pub fn credentials(&self) -> watch::Receiver<Arc<Credentials>> {
        self.creds.subscribe()
    }

    /// Reloads; one reload at a time. On error nothing changed.
    pub async fn reload(&self) -> Result<ReloadReport, RelayError> {
        let _one = self.lock.lock().await;
        let config = self.config.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            crate::check::load_parts(&config, crate::check::ForeignCrls::LeaveOut)
        })
        .await
        .map_err(|e| RelayError::Other(format!("reload task: {e}")))
        .and_then(|r| r);
        let result = loaded.and_then(|(creds, store)| self.apply(creds, store));
        match &result {
            Ok(report) => {
                self.metrics.on_reload(true, report.closed.len());
                tracing::info!(
                    networks = report.networks,
                    crls = report.crls,
                    closed = report.closed.len(),
                    "reload complete: {report}"
                );
            }
            Err(e) => {
                self.metrics.on_reload(false, 0);
                tracing::error!(error = %e, "reload failed; the previous certificate, key, trust bundle and CRLs stay in force");
            }
        }
        result
    }

    /// Closes every live connection, of a client or a peer relay, whose
    /// certificate the trust in force refuses now: revoked by a new CRL,
    /// its CA removed, expired, or past its CRL's next update. Run by each
    /// reload and every [`SWEEP_PERIOD`] (a certificate expires with no
    /// reload); returns what it closed.
    pub fn sweep(&self, when: &str) -> Vec<Closed> {
        let current = self.trust.current();
        let now = SystemTime::now();
        let mut closed = self.live.close_refused(|_, chain| {
            let (end, rest) = chain.split_first()?;
            match focal_certs::verify_peer(&current, end, rest, now) {
                Err(e) => Some(e.to_string()),
                Ok(peer) => self.policy.check(&peer.identity).err().map(|e| e.to_string()),
            }
        });
        if let Some(fed) = self.federation() {
            closed.extend(fed.close_refused(|_, chain| {
                let (end, rest) = chain.split_first()?;
                focal_certs::verify_peer(&current, end, rest, now).err().map(|e| e.to_string())
            }));
        }
        for c in &closed {
            tracing::warn!(peer = %c.identity, remote = %c.remote, reason = %c.reason, "closing connection: certificate no longer accepted {when}");
        }
        closed
    }

    /// [`Reloader::sweep`] every [`SWEEP_PERIOD`] until `stop` turns true.
    pub async fn sweep_periodically(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_PERIOD) => {}
                _ = stop.wait_for(|v| *v) => return,
            }
            self.sweep("(expired, or past its CRL's next update)");
        }
    }

    fn apply(&self, creds: Credentials, store: focal_certs::TrustStore) -> Result<ReloadReport, RelayError> {
        let networks = store.bundle().networks.len();
        // Build everything that can fail before changing anything.
        let server_config = focal_certs::server_config(
            &creds,
            self.trust.clone(),
            focal_certs::ALPN_GRPC,
            self.policy.clone(),
        )
        .map_err(RelayError::certs("TLS server config"))?;
        let federation = self.federation();
        if let Some(fed) = &federation {
            fed.set_credentials(&creds).map_err(|e| RelayError::Other(format!("federation: {e}")))?;
        }
        let dated = expiry::scan(&creds, &store, &self.config.tls.crls);
        let relay_not_after = dated.first().map(|d| d.not_after_unix).unwrap_or(0);

        self.trust.replace(store);
        // The new config's CA hints come from the trust as it was when it was
        // built: rebuild now that the new store is in force.
        let server_config = focal_certs::server_config(
            &creds,
            self.trust.clone(),
            focal_certs::ALPN_GRPC,
            self.policy.clone(),
        )
        .unwrap_or(server_config);
        self.acceptor.replace(tokio_rustls::TlsAcceptor::from(server_config));

        if let Some(fed) = &federation {
            // Again, so the QUIC server config's CA hints follow the new trust.
            let _ = fed.set_credentials(&creds);
        }
        let closed = self.sweep("after reload");

        let expiring_soon = expiry::warn(&dated, expiry::unix_now());
        *self.dated.write().unwrap_or_else(|e| e.into_inner()) = dated;
        self.creds.send_replace(Arc::new(creds));
        Ok(ReloadReport {
            relay_not_after,
            networks,
            crls: self.config.tls.crls.len(),
            closed,
            expiring_soon,
        })
    }
}

/// Reloads each time `triggers` yields (SIGHUP), until it closes or `stop` turns true.
pub(crate) async fn on_triggers(
    reloader: Arc<Reloader>,
    mut triggers: mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            t = triggers.recv() => match t {
                Some(()) => {
                    tracing::info!("reload requested (SIGHUP)");
                    let _ = reloader.reload().await;
                }
                None => break,
            },
            () = stopped(&mut stop) => break,
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}
