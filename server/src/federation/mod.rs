//! Relay-to-relay federation transport: QUIC (quinn) with mutual TLS,
//! ALPN `focal-fed/1`, one connection per configured peer, length-prefixed
//! `pb::Frame`s on bidirectional streams. This module moves bytes and
//! checks who is talking; it does not store, route or sign anything. The
//! relay's driver connects it to the store and the routing core.
//!
//! # Driver API
//!
//! ```text
//! let fed = Federation::start(udp_socket, &creds, trust, my_hello, &config.peers,
//!                             handler /* Arc<dyn InboundHandler> */, Tuning::default())?;
//! let mut events = fed.subscribe();            // broadcast::Receiver<LinkEvent>
//! let link = fed.link("relay-gfp").unwrap();   // LinkHandle, Some for every configured peer
//! link.wait_connected().await?;                // or watch link.watch()
//! let ack: pb::TransferAck = link.send_envelope(header, payload_reader).await?;
//! let ack: pb::ReceiptAck = link.send_receipt(receipt_transfer).await?;
//! let answer = link.query_directory(query).await?;
//! let cosig = link.request_cosign(request).await?;
//! fed.link_reports().set_source(driver);       // own link states for link reports
//! let remote = fed.link_reports().snapshot(now_ms); // peers' reports (federation view)
//! fed.close().await;                           // finish inbound streams, close, wait_idle
//! ```
//!
//! * [`Federation::start`] binds a quinn endpoint on the given UDP socket
//!   (server side: relay certificates of any bundled network; mapping to a
//!   configured peer happens after the handshake by the certificate's
//!   `(network, name)`), spawns one acceptor task and one link task per peer,
//!   and returns at once. Links come up in the background.
//! * [`InboundHandler`] receives what peers send: envelopes (header + a
//!   streamed [`InboundPayload`]), receipts, directory queries, cosign
//!   requests. What it returns is sent back on the same stream, so the
//!   handler persists first and acks after. It also gets every
//!   [`LinkEvent`] synchronously (`event`), for peer-refused and
//!   violation audit records.
//! * Link reports (`reports.rs`): every `REPORT_EVERY` and shortly after a
//!   link change, each connected peer gets this relay's own links in a
//!   `LinkReport` alone on a unidirectional stream (requests use
//!   bidirectional streams only); what peers report is checked against
//!   their certificate and kept per network in [`LinkReports`].
//! * [`LinkEvent`]s: `Connected` (a new current connection: reset outbox
//!   backoff and resume), `Disconnected` (with reason), `Refused` (inbound
//!   or outbound, with the certificate identity when known), `Violation`.
//!
//! # Ordering and delivery guarantees
//!
//! * Each call on a [`LinkHandle`] is one stream; calls in flight at the same
//!   time are independent (no order between them, one slow transfer does not
//!   hold up another). A [`TransferStream`]
//!   (`LinkHandle::open_transfer_stream`, see `pipeline.rs`) carries several
//!   envelopes that the peer handles in order and answers in order: the
//!   driver pipelines small envelopes on one, so several of one (sender,
//!   recipient) lane may be in flight at once; anything else waits for its
//!   lane's ack (the outbox decides).
//! * `send_envelope` returns `Ok(ack)` only with the peer's `TransferAck`.
//!   Any `Err` means the outcome is unknown: keep the envelope and retry
//!   (the receiver de-duplicates on (sender, msg id)). The receiver never
//!   sees a short payload as complete: size, chunking and stream end are
//!   checked before `InboundPayload::next_chunk` returns `Ok(None)`.
//! * On one link, events arrive in order: `Connected`, then the
//!   `Disconnected` of that connection, then the next `Connected`.
//!   `LinkHandle::status().generation` grows with each new connection.
//!   When both relays dial at once, a side may announce the losing
//!   connection and, milliseconds later, `Disconnected` (duplicate) and
//!   `Connected` (winner); a transfer started in between fails and is retried.
//! * `LinkEvent::Refused` from a misconfigured peer repeats at every attempt
//!   (at most one per `Tuning::redial_max` per peer once backoff is capped).
//! * A slow or dead peer never blocks others: each peer has its own link
//!   task, each stream its own task, and no lock is held across an await.
//!
//! # Connection rules
//!
//! * Hello (see `handshake.rs`): the dialler sends `Hello` on the first stream,
//!   the acceptor answers with its own; `relay` must equal the certificate
//!   name and `networks` exactly the certificate's network, else the
//!   connection is closed with `HELLO_REFUSED`.
//! * Peers are recognised by their verified certificate (network + relay
//!   name), never by source address. Unconfigured relays are refused with
//!   `UNCONFIGURED`; other roles than `relay` fail the TLS handshake (server
//!   policy). When dialling, the peer's certificate must be a relay of its
//!   configured network (TLS) with its configured name (`IDENTITY_MISMATCH`).
//! * Dialling: at start at once, then only while the link has no current
//!   connection, after a capped exponential backoff with jitter
//!   (`Tuning::redial_base` to `redial_max`), reset when a connection is
//!   adopted (dialled or accepted).
//! * Both sides dial each other; exactly one connection stays
//!   ([`policy::resolve_duplicate`]): if both dialled at once, the one dialled
//!   by the relay with the smaller `(name, network)` wins; a newer dial from
//!   the same side replaces the older connection; a losing new connection
//!   still wins if the current one does not answer a ping within
//!   `Tuning::probe_timeout` (the peer restarted and the current connection is
//!   stale).
//! * Framing errors (oversized, malformed, unexpected frame, chunk or size
//!   mismatch) close that connection with `PROTOCOL_VIOLATION` and are
//!   reported; other links are unaffected. Inbound frames per peer are
//!   rate-limited (`Tuning::frames_per_second`): above the rate we stop
//!   reading and QUIC flow control slows the peer down.
//! * Close codes: [`close_code`]; stream codes: [`stream_code`].

// The crate root allows these for its contract stubs; this module is complete.
#![warn(dead_code, unused_variables, missing_docs)]

mod conn;
mod events;
mod handshake;
mod inbound;
mod link;
mod outbound;
mod pipeline;
pub mod policy;
mod reload;
mod reports;
mod tuning;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use focal_certs::{Credentials, SharedTrust};
use focal_proto::{Identity, NetworkId, Role, pb};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use events::{Direction, LinkEvent, Refusal, RefusalKind, RemotePeer};
pub use inbound::{BoxFuture, EnvelopeAnswer, InboundHandler, InboundPayload};
pub use link::LinkStatus;
pub use outbound::LinkHandle;
pub use pipeline::{MAX_PENDING_ANSWERS, SKIP_MAX, TransferAcks, TransferStream, TransferWriter};
pub use reload::FederationControl;
pub use reports::{LinkReports, MIN_GAP, REPORT_EVERY, SEND_TIMEOUT};
pub use tuning::{MAX_CHUNK, Tuning, client_config, server_config};
pub use wire::{close_code, stream_code};

use crate::config::PeerConfig;
use conn::InFlight;
use events::Reporter;
use link::PeerSlot;

/// Errors of the federation layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// Bad configuration (peers, own hello, tuning); names the field.
    #[error("federation config: {0}")]
    Config(String),
    /// The TLS/QUIC configuration could not be built.
    #[error("federation TLS: {0}")]
    Tls(String),
    /// Socket or endpoint error.
    #[error("federation endpoint: {0}")]
    Io(#[from] std::io::Error),
    /// No current connection to that peer.
    #[error("peer {peer} is not connected")]
    NotConnected {
        /// Configured peer name.
        peer: String,
    },
    /// The connection or stream went away before the answer arrived.
    #[error("link to {peer} lost: {detail}")]
    LinkLost {
        /// Configured peer name.
        peer: String,
        /// What happened.
        detail: String,
    },
    /// The peer broke the protocol; its connection was closed.
    #[error("peer {peer} violated the protocol: {detail}")]
    Protocol {
        /// Configured peer name.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// No answer within `Tuning::response_timeout`.
    #[error("no {what} from {peer} in time")]
    Timeout {
        /// Configured peer name.
        peer: String,
        /// The answer awaited.
        what: &'static str,
    },
    /// Our own frame could not be encoded (e.g. larger than `max_frame`).
    #[error("cannot send: {0}")]
    Encode(String),
    /// Reading the payload source failed; the transfer was abandoned.
    #[error("payload source: {0}")]
    PayloadSource(std::io::Error),
    /// The payload source gave another size than the header's payload_size.
    #[error("payload source gave {actual} bytes (or more), header declares {declared}")]
    PayloadSize {
        /// Header `payload_size`.
        declared: u64,
        /// Bytes the source gave before we stopped.
        actual: u64,
    },
    /// The federation is closed.
    #[error("federation is closed")]
    Closed,
}

impl From<FederationError> for crate::RelayError {
    fn from(e: FederationError) -> Self {
        crate::RelayError::Other(e.to_string())
    }
}

/// State shared by the acceptor, link and connection tasks.
pub(crate) struct Shared {
    pub(crate) me: Identity,
    pub(crate) hello: pb::Hello,
    pub(crate) tuning: Arc<Tuning>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) handler: Arc<dyn InboundHandler>,
    pub(crate) reporter: Reporter,
    pub(crate) peers: HashMap<(NetworkId, String), Arc<PeerSlot>>,
    pub(crate) inflight: InFlight,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) trust: SharedTrust,
    pub(crate) reports: LinkReports,
}

/// Entry point; see the module docs.
#[derive(Debug)]
pub struct Federation;

impl Federation {
    /// Starts the federation endpoint on `socket` (must be called inside a
    /// Tokio runtime). `hello` is what this relay announces: its `relay`
    /// must be the certificate name of `creds` and `networks` exactly its
    /// network. Fails, naming the field, on a bad peer list (duplicate
    /// names, bad address, the relay itself) or TLS configuration.
    pub fn start(
        socket: std::net::UdpSocket,
        creds: &Credentials,
        trust: SharedTrust,
        hello: pb::Hello,
        peers: &[PeerConfig],
        handler: Arc<dyn InboundHandler>,
        tuning: Tuning,
    ) -> Result<FederationHandle, FederationError> {
        tokio::runtime::Handle::try_current().map_err(|_| {
            FederationError::Config("Federation::start must run inside a Tokio runtime".into())
        })?;
        tuning.validate()?;
        let me = creds.identity.clone();
        if me.role != Role::Relay {
            return Err(FederationError::Config(format!(
                "credentials are {}, not a relay certificate",
                me.uri()
            )));
        }
        policy::check_hello(&hello, &me).map_err(|e| FederationError::Config(format!("own hello: {e}")))?;
        let tuning = Arc::new(tuning);

        let (events, _) = broadcast::channel(tuning.event_capacity);
        let reporter = Reporter { handler: handler.clone(), events };
        let mut slots = HashMap::new();
        let mut receivers = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, p) in peers.iter().enumerate() {
            let field =
                |what: &str, why: String| FederationError::Config(format!("peers[{i}].{what}: {why}"));
            let identity = Identity::new(p.network.clone(), Role::Relay, &p.name)
                .map_err(|e| field("name", e.to_string()))?;
            if identity == me {
                return Err(field("name", "is this relay itself".into()));
            }
            if !names.insert(p.name.clone()) {
                return Err(field("name", format!("{:?} is configured twice", p.name)));
            }
            let (host, port) = policy::split_host_port(&p.address).map_err(|e| field("address", e))?;
            let client_config = tuning::client_config(creds, trust.clone(), &p.network, &tuning)?;
            let (tx, rx) = mpsc::channel(8);
            let slot = Arc::new(PeerSlot {
                config: p.clone(),
                identity: identity.clone(),
                host,
                port,
                client_config: std::sync::RwLock::new(client_config),
                status: watch::Sender::new(LinkStatus::default()),
                candidates: tx,
                limiter: Arc::new(std::sync::Mutex::new(policy::TokenBucket::new(
                    tuning.frames_per_second,
                    tuning.frame_burst,
                    std::time::Instant::now(),
                ))),
            });
            receivers.push((slot.clone(), rx));
            slots.insert((p.network.clone(), p.name.clone()), slot);
        }

        let server = tuning::server_config(creds, trust.clone(), &tuning)?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let reports = reports::new_view(slots.keys().map(|(network, _)| network.clone()));
        let shared = Arc::new(Shared {
            me: me.clone(),
            hello,
            tuning,
            endpoint,
            handler,
            reporter,
            peers: slots,
            inflight: InFlight::default(),
            shutdown,
            trust,
            reports: reports.clone(),
        });
        let relay_span = tracing::info_span!("federation", relay = %me.name, network = %me.network);
        let mut tasks = vec![tokio::spawn(run_acceptor(shared.clone()).instrument(relay_span.clone()))];
        tasks.push(tokio::spawn(
            reports::run_reporter(shared.clone(), reports).instrument(relay_span.clone()),
        ));
        for (slot, rx) in receivers {
            let span = tracing::info_span!(parent: &relay_span, "link", peer = %slot.config.name);
            tasks.push(tokio::spawn(link::run_link(shared.clone(), slot, rx).instrument(span)));
        }
        Ok(FederationHandle { shared, shutdown_tx, tasks })
    }
}

/// Resolves once shutdown is signalled (or the signal's sender is gone).
pub(crate) async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn run_acceptor(sh: Arc<Shared>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(sh.tuning.max_handshakes));
    let mut shutdown = sh.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = sh.endpoint.accept() => i,
            _ = shutdown_signalled(&mut shutdown) => break,
        };
        let Some(incoming) = incoming else { break };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let sh = sh.clone();
                let span = tracing::debug_span!("fed_accept", remote = %incoming.remote_address());
                tokio::spawn(
                    async move {
                        handshake::accept(sh, incoming).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(_) => {
                let remote = incoming.remote_address();
                incoming.refuse();
                sh.reporter.emit(LinkEvent::Refused(Refusal {
                    direction: Direction::Inbound,
                    remote,
                    identity: None,
                    peer: None,
                    kind: RefusalKind::Handshake,
                    reason: "too many handshakes in progress".into(),
                }));
            }
        }
    }
}

/// A running federation endpoint. Dropping it without [`close`] closes the
/// endpoint abruptly (peers see the connection closed with `SHUTDOWN`).
///
/// [`close`]: FederationHandle::close
pub struct FederationHandle {
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FederationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationHandle").field("relay", &self.shared.me.uri()).finish()
    }
}

impl FederationHandle {
    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// This relay's identity.
    pub fn identity(&self) -> &Identity {
        &self.shared.me
    }

    /// The handle of a configured peer (by its configured name), whether or
    /// not the link is up; `None` for an unknown name.
    pub fn link(&self, peer_name: &str) -> Option<LinkHandle> {
        self.shared
            .peers
            .values()
            .find(|s| s.config.name == peer_name)
            .map(|slot| LinkHandle { slot: slot.clone() })
    }

    /// Handles of all configured peers.
    pub fn links(&self) -> Vec<LinkHandle> {
        self.shared.peers.values().map(|slot| LinkHandle { slot: slot.clone() }).collect()
    }

    /// The link reports received from peers (federation view), and the
    /// seam through which this relay's own link states reach its reports.
    pub fn link_reports(&self) -> LinkReports {
        self.shared.reports.clone()
    }

    /// A new subscriber to link events (bounded: `Tuning::event_capacity`).
    pub fn subscribe(&self) -> broadcast::Receiver<LinkEvent> {
        self.shared.reporter.events.subscribe()
    }

    /// QUIC connections the endpoint holds (established or in handshake).
    pub fn open_connections(&self) -> usize {
        self.shared.endpoint.open_connections()
    }

    /// Graceful shutdown: refuse new connections, let inbound streams in
    /// flight finish (at most `Tuning::close_grace`), close every link with
    /// `SHUTDOWN`, then `wait_idle` (at most `close_grace` again) so the
    /// closes reach the peers.
    /// Stop sending on the `LinkHandle`s first.
    pub async fn close(mut self) {
        let sh = self.shared.clone();
        sh.endpoint.set_server_config(None);
        let _ = tokio::time::timeout(sh.tuning.close_grace, sh.inflight.idle()).await;
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        sh.endpoint.close(quinn::VarInt::from_u32(close_code::SHUTDOWN), b"relay shutting down");
        // The closes are sent at once; waiting lets them be repeated to
        // peers whose packets cross them. A dial aborted mid-handshake
        // would hold this for 3 PTOs (~3 s): bound it.
        let _ = tokio::time::timeout(sh.tuning.close_grace, sh.endpoint.wait_idle()).await;
    }
}

impl Drop for FederationHandle {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if !self.tasks.is_empty() {
            self.shared.endpoint.close(quinn::VarInt::from_u32(close_code::SHUTDOWN), b"relay shutting down");
        }
    }
}
