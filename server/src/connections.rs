//! The gRPC listener's live connections, so that a reload can close those
//! whose client certificate the new trust (bundle, CRLs) no longer accepts,
//! and so that metrics can count them. The TLS acceptor registers each
//! authenticated connection with its certificate chain and a cancel handle;
//! the registration is removed when the connection closes.
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
    map: Mutex<HashMap<u64, Entry>>,
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
        self.live.inner.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
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
    /// Registers a connection whose client presented `chain` (end entity first).
    pub fn register(
        &self,
        identity: Identity,
        remote: SocketAddr,
        chain: Vec<CertificateDer<'static>>,
    ) -> Registration {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (cancel, cancelled) = watch::channel(false);
        let entry = Entry { identity, remote, chain, cancel };
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner()).insert(id, entry);
        Registration { id, live: self.clone(), cancelled }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner()).len()
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
        let map = self.inner.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = Vec::new();
        for e in map.values() {
            if let Some(reason) = refuse(&e.identity, &e.chain) {
                let _ = e.cancel.send(true);
                closed.push(Closed { identity: e.identity.clone(), remote: e.remote, reason });
            }
        }
        closed
    }
}
