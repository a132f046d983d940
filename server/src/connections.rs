//! The gRPC listener's live connections, so that a reload can close those
//! whose client certificate the new trust (bundle, CRLs) no longer accepts,
//! and so that metrics can count them. The TLS acceptor registers each
//! authenticated connection with its certificate chain and a cancel handle;
//! the registration is removed when the connection closes.
//!
//! Registration is refused when the identity already holds
//! `limits.max_connections_per_identity` connections, and when the trust
//! changed (a reload's sweep ran) since the handshake took its acceptor:
//! that handshake was checked against the old trust and the sweep missed it.
//!
//! Cancelling a connection makes its stream's next read or write fail (see
//! `tls::RelayStream`), so hyper ends the connection and every RPC on it,
//! including a live `Inbox` stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use focal_proto::Identity;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

/// One authenticated connection.
#[derive(Debug)]
struct Entry {
    identity: Identity,
    remote: SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    cancel: watch::Sender<bool>,
}

/// Registry of live connections; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LiveConnections {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: AtomicU64,
    map: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    entries: HashMap<u64, Entry>,
    /// Connections per identity.
    per_identity: HashMap<Identity, usize>,
    /// Trust changes so far ([`LiveConnections::close_refused`] calls).
    trust_changes: u64,
}

/// Why a connection was not registered (it is closed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotRegistered {
    /// The identity holds its share of connections already.
    #[error("{identity} already has {limit} connections open (limits.max_connections_per_identity)")]
    TooMany {
        /// Who.
        identity: Identity,
        /// The limit.
        limit: usize,
    },
    /// The trust changed while the handshake ran, so the certificate was
    /// checked against the old trust and the reload's sweep missed it.
    #[error("the trust bundle or CRLs were reloaded during the TLS handshake; reconnect")]
    TrustChanged,
}

/// Held by the connection; removes its registration when dropped.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    live: LiveConnections,
    /// Turns true when the connection must close.
    pub cancelled: watch::Receiver<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = self.live.inner.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = live.entries.remove(&self.id)
            && let Some(n) = live.per_identity.get_mut(&e.identity)
        {
            *n -= 1;
            if *n == 0 {
                live.per_identity.remove(&e.identity);
            }
        }
    }
}

/// A connection a reload closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// Its identity.
    pub identity: Identity,
    /// Its remote address.
    pub remote: SocketAddr,
    /// Why its certificate is no longer accepted.
    pub reason: String,
}

impl LiveConnections {
    /// The trust generation: read it before taking the TLS acceptor for a
    /// handshake, and hand it to [`LiveConnections::register`].
    pub fn trust_generation(&self) -> u64 {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner()).trust_changes
    }

    /// Registers a connection whose client presented `chain` (end entity
    /// first) in a handshake that began at trust generation `generation`;
    /// refused when the identity is at `per_identity` connections, or when
    /// the trust changed since (the reload's sweep has not seen it).
    pub fn register(
        &self,
        identity: Identity,
        remote: SocketAddr,
        chain: Vec<CertificateDer<'static>>,
        generation: u64,
        per_identity: usize,
    ) -> Result<Registration, NotRegistered> {
        let mut live = self.inner.map.lock().unwrap_or_else(|e| e.into_inner());
        if live.trust_changes != generation {
            return Err(NotRegistered::TrustChanged);
        }
        let n = live.per_identity.entry(identity.clone()).or_default();
        if *n >= per_identity {
            return Err(NotRegistered::TooMany { identity, limit: per_identity });
        }
        *n += 1;
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (cancel, cancelled) = watch::channel(false);
        live.entries.insert(id, Entry { identity, remote, chain, cancel });
        Ok(Registration { id, live: self.clone(), cancelled })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner()).entries.len()
    }

    /// No connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Identities of the connections open now (tests, status).
    pub fn identities(&self) -> Vec<Identity> {
        self.inner
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .values()
            .map(|e| e.identity.clone())
            .collect()
    }

    /// Closes every connection for which `refuse(identity, chain)` gives a
    /// reason; returns what it closed.
    pub fn close_refused(
        &self,
        refuse: impl Fn(&Identity, &[CertificateDer<'static>]) -> Option<String>,
    ) -> Vec<Closed> {
        let mut live = self.inner.map.lock().unwrap_or_else(|e| e.into_inner());
        // Handshakes still running were checked against the old trust: they
        // are refused when they register (see `register`).
        live.trust_changes += 1;
        let mut closed = Vec::new();
        for e in live.entries.values() {
            if let Some(reason) = refuse(&e.identity, &e.chain) {
                let _ = e.cancel.send(true);
                closed.push(Closed { identity: e.identity.clone(), remote: e.remote, reason });
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Identity {
        Identity::from_uri(&format!("focal://carin/fp/{name}")).unwrap()
    }

    #[test]
    fn per_identity_share_and_trust_changes_during_a_handshake() {
        let live = LiveConnections::default();
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let g = live.trust_generation();
        let a1 = live.register(id("a"), remote, vec![], g, 2).unwrap();
        let _a2 = live.register(id("a"), remote, vec![], g, 2).unwrap();
        let e = live.register(id("a"), remote, vec![], g, 2).unwrap_err();
        assert_eq!(e, NotRegistered::TooMany { identity: id("a"), limit: 2 });
        let _b = live.register(id("b"), remote, vec![], g, 2).unwrap();
        drop(a1);
        let _a3 = live.register(id("a"), remote, vec![], g, 2).unwrap();
        assert_eq!(live.len(), 3);

        // A reload's sweep: a handshake that began before it (old trust)
        // is refused when it registers, one that begins after is not.
        let closed = live.close_refused(|who, _| (*who == id("b")).then(|| "revoked".to_owned()));
        assert_eq!(closed.len(), 1);
        assert_eq!(live.register(id("c"), remote, vec![], g, 2).unwrap_err(), NotRegistered::TrustChanged);
        live.register(id("c"), remote, vec![], live.trust_generation(), 2).unwrap();
    }
}
