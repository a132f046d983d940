//! Starting the operator side of a node in one call from `node.rs`: the
//! reloader over the gRPC acceptor and its live connections, the Admin
//! service, the metrics listener (if configured), the daily expiry
//! warnings, and the reload trigger (SIGHUP) loop. The tasks stop when the
//! node's stop signal turns true.

use std::sync::Arc;

use focal_certs::ClientPolicy;
use focal_proto::pb::admin_server::AdminServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AdminService, OpsState};
use crate::ServeOptions;
use crate::check::TlsMaterial;
use crate::config::RelayConfig;
use crate::connections::LiveConnections;
use crate::reload::{ReloadParts, Reloader};
use crate::store::Store;
use crate::tls::AcceptorCell;

/// What the node wires in.
pub struct OpsRuntime {
    /// The Admin service, to mount.
    pub admin: AdminServer<AdminService>,
    /// The gRPC listener's acceptor (swapped on reload).
    pub acceptor: AcceptorCell,
    /// The gRPC listener's live connections.
    pub live: LiveConnections,
    /// The shared operator state.
    pub state: Arc<OpsState>,
    /// Background tasks, to join at shutdown.
    pub tasks: OpsTasks,
}

/// The operator side's background tasks.
pub struct OpsTasks(Vec<JoinHandle<()>>);

impl OpsTasks {
    /// Waits for every task (they end once the stop signal is true).
    pub async fn join(self) {
        for t in self.0 {
            let _ = t.await;
        }
    }
}

/// Starts the operator side (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn start(
    config: &RelayConfig,
    tls: &TlsMaterial,
    policy: ClientPolicy,
    server_config: Arc<rustls::ServerConfig>,
    store: &Store,
    metrics_listener: Option<tokio::net::TcpListener>,
    options: ServeOptions,
    stop: &watch::Receiver<bool>,
) -> OpsRuntime {
    let acceptor = AcceptorCell::new(tokio_rustls::TlsAcceptor::from(server_config));
    let live = LiveConnections::default();
    let reloader = Reloader::new(ReloadParts {
        config: config.clone(),
        trust: tls.trust.clone(),
        acceptor: acceptor.clone(),
        live: live.clone(),
        policy,
        metrics: store.metrics().clone(),
        creds: tls.creds.clone(),
    });
    let state = OpsState::new(config.clone(), store.clone(), reloader.clone());
    let mut tasks = vec![
        tokio::spawn(crate::expiry::daily(reloader.dated(), stop.clone())),
        tokio::spawn(reloader.clone().sweep_periodically(stop.clone())),
    ];
    if let Some(listener) = metrics_listener {
        tasks.push(tokio::spawn(crate::metrics::http::serve(listener, state.clone(), stop.clone())));
    }
    if let Some(triggers) = options.reload {
        tasks.push(tokio::spawn(crate::reload::on_triggers(reloader, triggers, stop.clone())));
    }
    if let Some(ready) = options.ready {
        let _ = ready.send(state.clone());
    }
    OpsRuntime {
        admin: AdminService::new(state.clone()).into_server(),
        acceptor,
        live,
        state,
        tasks: OpsTasks(tasks),
    }
}
