//! A running relay: wires TLS, store, services and background tasks, and
//! shuts them down in order.
//!
//! Shutdown, once the caller's future resolves: health turns NOT_SERVING
//! for every service; the listening socket closes and tonic stops taking
//! requests (in-flight RPCs continue; live inbox streams end with
//! UNAVAILABLE); after `limits.shutdown_grace_secs` any connection still
//! open is closed; then the sweeper and the federation's outbox senders
//! stop, the QUIC endpoint closes (inbound transfers in flight finish,
//! `wait_idle`), and the store's writer applies what is queued, flushes,
//! and stops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use focal_certs::{CertRefusal, ClientPolicy};
use focal_proto::pb::audit_server::AuditServer;
use focal_proto::pb::directory_server::DirectoryServer;
use focal_proto::pb::relay_server::RelayServer;
use focal_proto::{Role, pb};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic_health::ServingStatus;

use crate::audit::AuditService;
use crate::audit::witness::{self, Witness};
use crate::config::RelayConfig;
use crate::core::RelayCore;
use crate::federation::{Federation, Tuning};
use crate::hub::Hub;
use crate::peer::PeerInfo;
use crate::relaying::Relaying;
use crate::relaying::inbound::Inbound;
use crate::route::Routes;
use crate::rpc::{DirectoryService, RelayService, Shared, now_ms};
use crate::store::{ReceiptSigner, Store, StoreOptions};
use crate::tls::AcceptOptions;
use crate::{Listeners, RelayError};

/// Connections still open after the grace period get this long to close
/// once their streams fail.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The witness key file in the data dir (PKCS#8 Ed25519, mode 0600).
pub(crate) const WITNESS_KEY_FILE: &str = "witness.key";
/// Concurrent RPCs per connection (each Send may buffer one decoded
/// message of up to tonic's 4 MiB limit).
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

pub(crate) async fn run(
    config: RelayConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: crate::ServeOptions,
) -> Result<(), RelayError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let limits = config.limits.clone();
    let tls = crate::check::load_tls(&config)?;
    let policy = ClientPolicy {
        roles: vec![Role::Fp, Role::Auditor, Role::Admin],
        networks: Some(vec![config.network.clone()]),
    };
    let server_config =
        focal_certs::server_config(&tls.creds, tls.trust.clone(), focal_certs::ALPN_GRPC, policy.clone())
            .map_err(RelayError::certs("TLS server config"))?;

    let key = tls.creds.signing_key().map_err(RelayError::certs("tls.key"))?;
    let cert = tls.creds.cert_der().to_vec();
    let signer: ReceiptSigner = Arc::new(move |body: &pb::ReceiptBody| pb::Receipt {
        signed: Some(focal_proto::signed::sign_blob(
            focal_proto::signed::TAG_RECEIPT,
            body.encode_to_vec(),
            &key,
            &cert,
        )),
    });
    let hub = Arc::new(Hub::new(limits.inbox_live_buffer));
    let relay_uri = config.relay_identity().uri();
    let core = RelayCore::from_config(&config, seed(), now_ms())
        .map_err(|e| RelayError::Server(format!("relay core: {e}")))?;
    let core = Arc::new(std::sync::Mutex::new(core));
    let store = Store::open_with_core(
        StoreOptions {
            data_dir: config.data_dir.clone(),
            network: config.network.clone(),
            relay_uri: relay_uri.clone(),
            audit_origin: config.audit_origin(),
            checkpoint_interval_secs: config.audit.checkpoint_interval_secs,
            max_mailbox_messages: limits.max_mailbox_messages,
            max_store_bytes: limits.max_store_bytes,
            write_queue_depth: limits.write_queue_depth,
            hub: hub.clone(),
            signer,
        },
        Some(core.clone()),
    )?;
    // This relay as a witness of its peers' logs (key created on first start).
    let witness_signer = Witness::load_or_create_key(
        &config.data_dir.join(WITNESS_KEY_FILE),
        &witness::witness_name(store.audit_log().origin()),
    )?;
    let witness = Arc::new(
        Witness::open(store.tree().clone(), witness_signer)?.with_durable_files(store.durable_files()),
    );
    let witness_key = witness.verifier_key();
    let own_origin = crate::audit::relay_origin(&config.relay_identity());
    if store.audit_log().origin() != own_origin && !config.peers.is_empty() {
        tracing::warn!(
            audit_origin = %store.audit_log().origin(),
            expected = %own_origin,
            "audit.origin is not the one peers derive from this relay's certificate: they will not cosign its checkpoints"
        );
    }
    for line in crate::check::peers_without_trust(&config, &tls.trust.current().bundle().networks) {
        tracing::warn!("{line}");
    }
    let relaying = Arc::new(
        Relaying::new(config.clone(), store.clone(), core, tls.trust.clone()).with_witness(witness.clone()),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (kill_tx, kill_rx) = watch::channel(false);

    // Certificates refused by the TLS layer are audited (through a bounded
    // queue, so a flood of bad handshakes cannot grow memory).
    let (refused_tx, refused_rx) = mpsc::channel::<(CertRefusal, Option<SocketAddr>)>(256);
    tls.trust.set_refusal_hook(Arc::new(move |r: &CertRefusal| {
        // Known for gRPC handshakes; QUIC handshakes run in quinn's driver.
        let remote = crate::tls::HANDSHAKE_REMOTE.try_with(|a| *a).ok();
        let _ = refused_tx.try_send((r.clone(), remote));
    }));
    let refusals = tokio::spawn(audit_refusals(store.clone(), refused_rx, stop_rx.clone()));

    let shared = Arc::new(Shared::new(
        config.clone(),
        store.clone(),
        hub,
        tls.trust.clone(),
        Routes::new(relaying.clone()),
        stop_rx.clone(),
    ));
    let relay = RelayServer::new(RelayService::new(shared.clone()))
        .max_decoding_message_size(crate::rpc::send::MAX_REQUEST_BYTES);
    let directory = DirectoryServer::new(DirectoryService::new(shared.clone()));
    let audit = AuditService::new(store.audit_log().clone(), config.network.clone()).into_server();
    drop(shared);
    // OPS (issue 7): reload, admin service, metrics listener, expiry warnings.
    let ops = crate::admin::start(
        &config,
        &tls,
        policy,
        server_config.clone(),
        &store,
        listeners.metrics,
        options,
        &stop_rx,
    );
    ops.state.set_witness(witness);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RelayServer<RelayService>>().await;
    health.set_serving::<DirectoryServer<DirectoryService>>().await;
    health.set_serving::<AuditServer<AuditService>>().await;
    health.set_serving::<pb::admin_server::AdminServer<crate::admin::AdminService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RelayError::Server(format!("reflection service: {e}")))?;

    let grpc_addr = listeners.grpc.local_addr().map_err(|e| RelayError::Server(e.to_string()))?;
    let federation_addr = listeners.federation.as_ref().and_then(|s| s.local_addr().ok());
    // The QUIC federation endpoint, and one outbox sender per peer.
    let mut federation = None;
    let mut driver_tasks = Vec::new();
    match listeners.federation {
        Some(socket) => {
            let hello = pb::Hello {
                protocol_version: 1,
                relay: config.name.clone(),
                networks: vec![config.network.to_string()],
                log_origin: store.audit_log().origin().to_owned(),
                log_key: log_key(&store.audit_log().verifier_key()),
                witness_key: witness::hello_witness_key(&witness_key)?,
            };
            let handler = Arc::new(Inbound::new(relaying.clone()));
            let fed = Federation::start(
                socket,
                &tls.creds,
                tls.trust.clone(),
                hello,
                &config.peers,
                handler,
                Tuning::default(),
            )?;
            driver_tasks = relaying.start(fed.links(), stop_rx.clone());
            // Federation view: own link states go out in link reports; peers' reports show in Admin.Status.
            fed.link_reports().set_source(relaying.clone());
            ops.state.set_link_reports(fed.link_reports());
            ops.state.set_peer_control(relaying.clone()); // OPS: Admin peer control
            ops.state.reloader.set_federation(fed.control()); // OPS: reload QUIC cert, close revoked peers
            federation = Some(fed);
        }
        None if !config.peers.is_empty() => tracing::warn!(
            peers = config.peers.len(),
            "peers are configured but listen.federation is not: copies for other networks wait in their outboxes"
        ),
        None => {}
    }
    ops.state.set_peer_status(relaying.clone()); // OPS: Admin.Status peers, peer metrics
    let accept = AcceptOptions {
        max_connections: limits.max_connections,
        handshake_timeout: Duration::from_secs(limits.handshake_timeout_secs),
        max_per_identity: limits.max_connections_per_identity,
    };
    let incoming = crate::tls::incoming_live(
        listeners.grpc,
        ops.acceptor.clone(),
        ops.live.clone(),
        accept,
        stop_rx.clone(),
        kill_rx,
    );
    // Validated when the config was loaded.
    let retention = config.retention.policy().unwrap_or_default();
    let sweeper =
        tokio::spawn(crate::sweeper::run(store.clone(), stop_rx.clone(), Duration::from_secs(1), retention));

    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .trace_fn(|req| {
            let peer = req.extensions().get::<PeerInfo>();
            tracing::info_span!(
                "rpc",
                path = %req.uri().path(),
                peer = %peer.map(|p| p.identity.uri()).unwrap_or_default(),
                remote = %peer.map(|p| p.remote.to_string()).unwrap_or_default(),
            )
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(relay)
        .add_service(directory)
        .add_service(audit)
        .add_service(ops.admin);
    let mut signal = stop_rx.clone();
    let server = router.serve_with_incoming_shutdown(incoming, async move {
        let _ = signal.wait_for(|s| *s).await;
    });
    tokio::pin!(server);

    // Poll the shutdown future once before announcing that we listen, so a
    // signal handler inside it is installed by then (a SIGTERM sent right
    // after the "listening" line is then a graceful stop, not a kill).
    let mut shutdown = Box::pin(shutdown);
    let early_stop = futures::FutureExt::now_or_never(&mut shutdown).is_some();
    let shutdown = async move {
        if !early_stop {
            shutdown.await
        }
    };
    let fed = federation_addr.map(|a| a.to_string()).unwrap_or_else(|| "none".into());
    tracing::info!(
        relay = %relay_uri,
        audit_origin = %store.audit_log().origin(),
        audit_log_key = %store.audit_log().verifier_key(),
        witness_key = %witness_key,
        "focal-relay listening grpc={grpc_addr} federation={fed}"
    );

    let failed_store = store.clone();
    let mut store_failure = None;
    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown => {
            tracing::info!("shutdown: health NOT_SERVING, draining in-flight requests");
            finish(&mut server, &health, &stop_tx, &kill_tx, limits.shutdown_grace_secs).await
        }
        reason = failed_store.failed() => {
            tracing::error!(%reason, "the store failed; shutting down");
            store_failure = Some(reason);
            finish(&mut server, &health, &stop_tx, &kill_tx, limits.shutdown_grace_secs).await
        }
    };
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    let _ = refusals.await;
    ops.tasks.join().await;
    // Senders stop first, then the QUIC endpoint closes (inbound transfers
    // in flight finish), then the store flushes.
    for t in driver_tasks {
        let _ = t.await;
    }
    if let Some(fed) = federation {
        fed.close().await;
    }
    store.close().await;
    if let Some(reason) = store_failure {
        return Err(RelayError::Commit(reason));
    }
    tracing::info!("focal-relay stopped; store flushed");
    result.map_err(|e| RelayError::Server(e.to_string()))
}

/// Seed for the core's backoff jitter.
fn seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_be_bytes(b)
}

/// The raw Ed25519 key of a signed-note verifier key
/// (`<name>+<hash>+base64(0x01 || key)`); empty if it does not parse.
fn log_key(vkey: &str) -> Vec<u8> {
    use base64::Engine;
    // The base64 part may itself contain '+': split off name and id only.
    vkey.splitn(3, '+')
        .nth(2)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|k| k.len() == 33)
        .map(|k| k[1..].to_vec())
        .unwrap_or_default()
}

/// Drains: NOT_SERVING, stop accepting, wait for in-flight RPCs up to the
/// grace period, then close what is left.
async fn finish<F>(
    server: &mut std::pin::Pin<&mut F>,
    health: &tonic_health::server::HealthReporter,
    stop: &watch::Sender<bool>,
    kill: &watch::Sender<bool>,
    grace_secs: u64,
) -> Result<(), tonic::transport::Error>
where
    F: Future<Output = Result<(), tonic::transport::Error>>,
{
    drain(health, stop).await;
    match tokio::time::timeout(Duration::from_secs(grace_secs), server.as_mut()).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(grace_secs, "grace period over; closing remaining connections");
            let _ = kill.send(true);
            tokio::time::timeout(KILL_WAIT, server.as_mut()).await.unwrap_or(Ok(()))
        }
    }
}

/// Health NOT_SERVING for every service, then stop taking requests.
async fn drain(health: &tonic_health::server::HealthReporter, stop: &watch::Sender<bool>) {
    use tonic::server::NamedService;
    for name in [
        "",
        <RelayServer<RelayService> as NamedService>::NAME,
        <DirectoryServer<DirectoryService> as NamedService>::NAME,
        <AuditServer<AuditService> as NamedService>::NAME,
        <pb::admin_server::AdminServer<crate::admin::AdminService> as NamedService>::NAME,
    ] {
        health.set_service_status(name, ServingStatus::NotServing).await;
    }
    let _ = stop.send(true);
}

/// Writes a CERTIFICATE_REFUSED record per refused handshake. The `peer`
/// is the identity the certificate claimed, which nothing verified (the
/// detail says so, with the remote address when known); refusals are
/// rate-limited per remote IP address, so claiming a member's identity does
/// not crowd out that member's own refusals.
async fn audit_refusals(
    store: Store,
    mut rx: mpsc::Receiver<(CertRefusal, Option<SocketAddr>)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some((r, remote)) => {
                    let from = remote.map(|a| format!(" from {}", a.ip())).unwrap_or_default();
                    let detail = format!("certificate not verified{from}: {}", r.reason);
                    let claimed = r.claimed.clone().unwrap_or_default();
                    let source = remote.map_or_else(|| claimed.clone(), |a| a.ip().to_string());
                    store.audit_nowait_from(
                        pb::AuditRecord {
                            version: 1,
                            kind: pb::AuditKind::CertificateRefused as i32,
                            time_ms: now_ms(),
                            peer: claimed,
                            detail: detail.chars().take(240).collect(),
                            ..Default::default()
                        },
                        source,
                    );
                }
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_key_of_a_verifier_key() {
        let der = focal_proto::audit::NoteSigner::generate_pkcs8().unwrap();
        let signer = focal_proto::audit::NoteSigner::from_pkcs8("focal/gfp/relay-gfp", &der).unwrap();
        let vkey = signer.verifier_key();
        assert_eq!(super::log_key(&vkey).len(), 32, "{vkey}");
    }
}
