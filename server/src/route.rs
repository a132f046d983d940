//! THE FEDERATION ROUTING SEAM. Everything that leaves this relay's network
//! goes through the relay core held by [`Routes`]: envelopes for recipients
//! of other networks (Send, via `Store::route`), receipts for senders of
//! other networks (Ack, expiry: routed by the store's writer through the
//! core into a peer outbox), and directory lookups of other networks
//! (Lookup, ListMembers: [`Routes::remote_directory`]).
//!
//! [`route_remote`] answers "is there any next hop for this network" (direct
//! peer serving it, else the default route). A Send with a recipient whose
//! network has no next hop here is refused FAILED_PRECONDITION "no
//! federation route to `<net>`" before its payload is read; otherwise it is
//! ACCEPTED and any recipient refused later (policy or loop here, or at
//! another relay, e.g. a network the hub does not know) gets a signed
//! REFUSED non-delivery receipt.

use std::sync::Arc;

use focal_proto::{Address, NetworkId, pb};

use crate::core::routing::NextHop;
use crate::relaying::Relaying;

/// Where an item for another network goes: the peer whose outbox takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRoute {
    /// Peer relay name (`peers[].name`).
    pub peer: String,
    /// True when no direct peer serves the network (the default route).
    pub via_default: bool,
}

/// No peer serves the network and there is no default route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no federation route to {network}")]
pub struct NoRoute {
    /// The network that cannot be reached.
    pub network: NetworkId,
}

/// What routing decisions need: the federation driver (relay core, links).
#[derive(Clone, Debug)]
pub struct Routes {
    relaying: Arc<Relaying>,
}

impl Routes {
    /// Over the running driver.
    pub fn new(relaying: Arc<Relaying>) -> Self {
        Routes { relaying }
    }

    /// The driver.
    pub fn relaying(&self) -> &Arc<Relaying> {
        &self.relaying
    }

    /// Verified directory entries of `address` in another network, through
    /// the federation (cached). Err: a message for the client.
    pub async fn remote_directory(&self, address: &Address) -> Result<Vec<pb::DirectoryEntry>, String> {
        self.relaying.directory.remote(&self.relaying, address, None).await
    }
}

/// The next hop for `network` (never this relay's own network).
pub fn route_remote(routes: &Routes, network: &NetworkId) -> Result<PeerRoute, NoRoute> {
    match routes.relaying.core().table().next_hop(network) {
        NextHop::Peer { name, via_default } => Ok(PeerRoute { peer: name.to_owned(), via_default }),
        NextHop::Local | NextHop::Unknown => Err(NoRoute { network: network.clone() }),
    }
}
