//! THE FEDERATION ROUTING SEAM. Everything that leaves this relay's network
//! goes through [`route_remote`]: envelopes for recipients of other networks
//! (Send), receipts for senders of other networks (Ack, expiry), and
//! directory lookups of other networks (Lookup, ListMembers).
//!
//! Today no route exists: Send is refused with FAILED_PRECONDITION
//! "no federation route to `<net>`", directory queries likewise, and receipts
//! for remote senders are logged and dropped. The federation work replaces
//! the body of `route_remote` (direct peer, else the default route) and
//! makes the store's writer stage outbox entries under `o/<peer>\0…`
//! (`store::keys::OUTBOX`) in the same batch as the mailbox changes.

use focal_proto::NetworkId;

use crate::config::RelayConfig;

/// Where an item for another network goes: the peer whose outbox takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRoute {
    /// Peer relay name (`peers[].name`).
    pub peer: String,
}

/// No peer serves the network and there is no default route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no federation route to {network}")]
pub struct NoRoute {
    /// The network that cannot be reached.
    pub network: NetworkId,
}

/// What routing decisions need: the configured peers (and, once wired, the
/// routing core and the links of `crate::federation`).
#[derive(Debug, Default)]
pub struct Routes {
    _peers: Vec<crate::config::PeerConfig>,
}

impl Routes {
    /// Built from the config at start.
    pub fn new(config: &RelayConfig) -> Self {
        Routes { _peers: config.peers.clone() }
    }
}

/// The next hop for `network` (never this relay's own network).
pub fn route_remote(routes: &Routes, network: &NetworkId) -> Result<PeerRoute, NoRoute> {
    let _ = routes;
    Err(NoRoute { network: network.clone() })
}
