//! What a reload (SIGHUP, `Admin.Reload`) does to the QUIC federation
//! endpoint, through a [`FederationControl`] (a cheap clone of the running
//! endpoint's shared state, given to the reloader):
//!
//! - [`FederationControl::set_credentials`]: the relay's reloaded
//!   certificate and key serve the NEXT handshakes — a new QUIC server
//!   config (`quinn::Endpoint::set_server_config`) for inbound connections
//!   and a new client config per peer for the next dial. Connections that
//!   are up keep their TLS session and keep running.
//! - [`FederationControl::close_refused`]: the current connection of every
//!   peer whose certificate chain the new trust (bundle, CRLs) refuses is
//!   closed with [`close_code::REVOKED`]; the link then reports it
//!   disconnected and redials, and the handshake verifiers (which consult
//!   the shared trust at each handshake) refuse the peer both ways.

use std::sync::Arc;

use focal_certs::Credentials;
use focal_proto::Identity;
use rustls_pki_types::CertificateDer;

use super::wire::close_code;
use super::{FederationError, FederationHandle, Shared, tuning};
use crate::connections::Closed;

/// Acts on a running federation endpoint for reloads (see the module docs).
#[derive(Clone)]
pub struct FederationControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FederationControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationControl").field("relay", &self.shared.me.uri()).finish()
    }
}

impl FederationHandle {
    /// A handle for reloads (certificate swap, closing revoked peers).
    pub fn control(&self) -> FederationControl {
        FederationControl { shared: self.shared.clone() }
    }
}

impl FederationControl {
    /// Uses `creds` for the next handshakes, inbound and outbound. Builds
    /// every config first: on error nothing changed. The credentials must
    /// keep this relay's identity (peers know it by name).
    pub fn set_credentials(&self, creds: &Credentials) -> Result<(), FederationError> {
        let sh = &self.shared;
        if creds.identity != sh.me {
            return Err(FederationError::Config(format!(
                "reloaded certificate is {}, the federation runs as {}",
                creds.identity.uri(),
                sh.me.uri()
            )));
        }
        let server = tuning::server_config(creds, sh.trust.clone(), &sh.tuning)?;
        let mut clients = Vec::with_capacity(sh.peers.len());
        for slot in sh.peers.values() {
            let c = tuning::client_config(creds, sh.trust.clone(), &slot.config.network, &sh.tuning)?;
            clients.push((slot.clone(), c));
        }
        sh.endpoint.set_server_config(Some(server));
        for (slot, c) in clients {
            *slot.client_config.write().unwrap_or_else(|e| e.into_inner()) = c;
        }
        Ok(())
    }

    /// Closes (with [`close_code::REVOKED`]) the current connection of each
    /// peer for which `refuse(identity, chain)` gives a reason; returns
    /// what it closed.
    pub fn close_refused(
        &self,
        refuse: impl Fn(&Identity, &[CertificateDer<'static>]) -> Option<String>,
    ) -> Vec<Closed> {
        let mut closed = Vec::new();
        for slot in self.shared.peers.values() {
            let Some(ctx) = slot.status.borrow().ctx.clone() else { continue };
            if ctx.conn.close_reason().is_some() {
                continue;
            }
            let Some(reason) = refuse(&ctx.peer.identity, &ctx.peer_chain()) else { continue };
            ctx.close(close_code::REVOKED, &format!("certificate no longer accepted: {reason}"));
            closed.push(Closed { identity: ctx.peer.identity.clone(), remote: ctx.peer.address, reason });
        }
        closed
    }
}
