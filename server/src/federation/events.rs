//! What the federation layer reports to its driver: link events (connected,
//! disconnected, refused, protocol violation) and the facts about a linked
//! peer. Events go to `InboundHandler::event` synchronously (for the audit
//! log; never lost) and to a bounded broadcast channel (for anyone else; a
//! subscriber that lags is told so by `RecvError::Lagged`).

use std::net::SocketAddr;
use std::sync::Arc;

use focal_proto::{Identity, NetworkId, pb};
use tokio::sync::broadcast;

use super::inbound::InboundHandler;

/// A peer on an established link (hello exchanged and checked).
#[derive(Clone, Debug)]
pub struct RemotePeer {
    /// Verified certificate identity (`focal://<network>/relay/<name>`).
    pub identity: Identity,
    /// The hello it sent (networks = its certificate's network; audit-log
    /// origin and key for checkpoint cosigning).
    pub hello: pb::Hello,
    /// Its UDP address on this connection.
    pub address: SocketAddr,
    /// True if this relay dialled the connection.
    pub dialled_by_us: bool,
    /// quinn's `stable_id` of the connection, distinct per connection.
    pub connection_id: usize,
}

impl RemotePeer {
    /// The peer relay's name.
    pub fn name(&self) -> &str {
        &self.identity.name
    }
    /// The peer relay's network.
    pub fn network(&self) -> &NetworkId {
        &self.identity.network
    }
}

/// Which way a refused connection went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Someone dialled us and we refused.
    Inbound,
    /// We dialled a configured peer and the connection was refused (by us,
    /// after checking its certificate or hello, or by the peer).
    Outbound,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// QUIC/TLS handshake failed: wrong ALPN, certificate refused by the
    /// verifier (wrong role, unknown CA, revoked, expired…), or timeout.
    Handshake,
    /// A valid relay certificate of a relay that is not a configured peer.
    Unconfigured,
    /// The dialled peer's certificate names a different relay.
    IdentityMismatch,
    /// The hello did not match the certificate (or was missing/garbled).
    BadHello,
    /// The peer refused our connection (closed it with a reason).
    ByPeer,
}

/// A refused connection, for the audit log (peer-refused).
#[derive(Clone, Debug)]
pub struct Refusal {
    /// Inbound or outbound.
    pub direction: Direction,
    /// The other side's UDP address.
    pub remote: SocketAddr,
    /// The certificate identity, when the handshake got that far.
    pub identity: Option<Identity>,
    /// The configured peer name, for outbound refusals.
    pub peer: Option<String>,
    /// Category.
    pub kind: RefusalKind,
    /// Human-readable reason (also the QUIC close reason we sent, if any).
    pub reason: String,
}

/// Something that happened to a federation link.
#[derive(Clone, Debug)]
pub enum LinkEvent {
    /// A connection to a configured peer became the current one. Sends on
    /// its `LinkHandle` now use it. A driver resets its outbox backoff here.
    Connected(Arc<RemotePeer>),
    /// The current connection to `peer` ended (or was replaced by another
    /// connection, which is then announced by a `Connected`).
    Disconnected {
        /// Configured peer name.
        peer: String,
        /// Connection that ended (`RemotePeer::connection_id`).
        connection_id: usize,
        /// Why.
        reason: String,
    },
    /// A connection attempt was refused (see `Refusal`).
    Refused(Refusal),
    /// A linked peer broke the protocol (oversized or malformed frame,
    /// unexpected frame, size mismatch); its connection is closed with
    /// `close_code::PROTOCOL_VIOLATION`. Other peers are unaffected.
    Violation {
        /// Configured peer name.
        peer: String,
        /// Verified identity.
        identity: Identity,
        /// Connection closed.
        connection_id: usize,
        /// What was wrong.
        detail: String,
    },
}

/// Delivers events to the handler callback and the broadcast channel.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) handler: Arc<dyn InboundHandler>,
    pub(crate) events: broadcast::Sender<LinkEvent>,
}

impl Reporter {
    pub(crate) fn emit(&self, event: LinkEvent) {
        match &event {
            LinkEvent::Connected(p) => tracing::info!(
                peer = %p.identity, remote = %p.address, dialled_by_us = p.dialled_by_us, "federation link up"
            ),
            LinkEvent::Disconnected { peer, reason, .. } => {
                tracing::info!(peer, reason, "federation link down")
            }
            LinkEvent::Refused(r) => tracing::warn!(
                direction = ?r.direction, remote = %r.remote, identity = ?r.identity.as_ref().map(|i| i.uri()),
                kind = ?r.kind, reason = r.reason, "federation connection refused"
            ),
            LinkEvent::Violation { peer, detail, .. } => {
                tracing::warn!(peer, detail, "federation peer violated the protocol; disconnected")
            }
        }
        self.handler.event(&event);
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}
