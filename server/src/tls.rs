//! The gRPC listener's TLS layer: accepts TCP, runs the TLS 1.3 handshake
//! (tokio-rustls, config from `focal_certs::server_config`) in its own task
//! under a timeout so a slow client never blocks `accept`, and hands tonic a
//! [`RelayStream`] whose `ConnectInfo` is the verified [`PeerInfo`].
//!
//! A semaphore permit per connection (`limits.max_connections`) is taken
//! before `accept`, held through the handshake and released when the
//! connection closes. After shutdown's grace period a kill signal makes every
//! remaining stream fail its next read or write, so their connections end.
//!
//! Reload (see `crate::reload`): each new connection takes the acceptor in
//! force from an [`AcceptorCell`], so a reloaded certificate and key serve
//! the next handshake; each authenticated connection is registered in
//! [`LiveConnections`] with its certificate chain and a cancel handle that
//! fails the stream like the kill signal does, so a reload can close the
//! connections of revoked certificates.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use crate::connections::{LiveConnections, NotRegistered, Registration};
use crate::peer::PeerInfo;

/// The TLS acceptor for new connections; replaced on reload (connections
/// already open keep the session they have).
#[derive(Clone)]
pub struct AcceptorCell(Arc<std::sync::RwLock<TlsAcceptor>>);

impl AcceptorCell {
    /// A cell holding `acceptor`.
    pub fn new(acceptor: TlsAcceptor) -> Self {
        AcceptorCell(Arc::new(std::sync::RwLock::new(acceptor)))
    }
    /// The acceptor in force.
    pub fn current(&self) -> TlsAcceptor {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Makes `acceptor` serve every later handshake.
    pub fn replace(&self, acceptor: TlsAcceptor) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
    }
}

/// Settings of the accept loop.
#[derive(Clone, Debug)]
pub struct AcceptOptions {
    /// `limits.max_connections`.
    pub max_connections: usize,
    /// `limits.handshake_timeout_secs`.
    pub handshake_timeout: Duration,
    /// `limits.max_connections_per_identity`.
    pub max_per_identity: usize,
}

/// An authenticated connection as tonic sees it.
pub struct RelayStream {
    io: TlsStream<TcpStream>,
    info: PeerInfo,
    kill: Pin<Box<dyn Future<Output = ()> + Send>>,
    killed: bool,
    _permit: OwnedSemaphorePermit,
    _registration: Option<Registration>,
}

/// How long a refused connection stays open to answer with the reason.
const REFUSED_LINGER: Duration = Duration::from_secs(2);

impl RelayStream {
    /// Ready with an error once the kill signal fired.
    fn poll_kill(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if !self.killed && self.kill.as_mut().poll(cx).is_ready() {
            self.killed = true;
        }
        self.killed.then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "relay shut down"))
    }
}

impl tonic::transport::server::Connected for RelayStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for RelayStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.poll_kill(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for RelayStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.poll_kill(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.poll_kill(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        tracing::debug!(peer = %self.info.identity, remote = %self.info.remote, "connection closed");
    }
}

/// Starts the accept loop on `listener`; returns the stream of
/// authenticated connections for `serve_with_incoming_shutdown`. The loop
/// stops (and the listening socket closes) when `stop` turns true.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    opts: AcceptOptions,
    stop: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<Result<RelayStream, io::Error>> {
    incoming_live(listener, AcceptorCell::new(acceptor), LiveConnections::default(), opts, stop, kill)
}

/// [`incoming`] with a swappable acceptor and a registry of the live
/// connections (both kept by the caller for reloads).
pub fn incoming_live(
    listener: TcpListener,
    acceptor: AcceptorCell,
    live: LiveConnections,
    opts: AcceptOptions,
    stop: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<Result<RelayStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let sem = Arc::new(Semaphore::new(opts.max_connections));
    tokio::spawn(accept_loop(listener, acceptor, live, opts, sem, stop, kill, tx).in_current_span());
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    acceptor: AcceptorCell,
    live: LiveConnections,
    opts: AcceptOptions,
    sem: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<RelayStream, io::Error>>,
) {
    loop {
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stopped(&mut stop) => break,
        };
        if sem.available_permits() == 0 {
            tracing::warn!(max = opts.max_connections, "connection limit reached; next accept waits");
        }
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let span = tracing::info_span!("conn", %remote, peer = tracing::field::Empty);
        // Read before the acceptor is taken: a reload in between makes the
        // registration refuse the connection (see `LiveConnections::register`).
        let generation = live.trust_generation();
        let task = handshake(
            tcp,
            remote,
            acceptor.current(),
            Admission { live: live.clone(), generation, per_identity: opts.max_per_identity },
            opts.handshake_timeout,
            permit,
            kill.clone(),
            tx.clone(),
        );
        tokio::spawn(task.instrument(span));
    }
    tracing::debug!("accept loop stopped; listening socket closed");
}

tokio::task_local! {
    /// The remote address of the handshake being run, for the trust's
    /// refusal hook (the certificate verifier is called inside the
    /// handshake's poll and is not told who is connecting).
    pub static HANDSHAKE_REMOTE: SocketAddr;
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// What registering an authenticated connection needs.
struct Admission {
    live: LiveConnections,
    /// The trust generation when the handshake's acceptor was taken.
    generation: u64,
    per_identity: usize,
}

#[allow(clippy::too_many_arguments)]
async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    admission: Admission,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
    mut kill: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<RelayStream, io::Error>>,
) {
    let accept = HANDSHAKE_REMOTE.scope(remote, acceptor.accept(tcp));
    let io = match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(timeout_secs = timeout.as_secs_f64(), "TLS handshake timed out");
            return;
        }
    };
    let identity = {
        let (_, conn) = io.get_ref();
        let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
            tracing::warn!("TLS session without a client certificate; closing");
            return;
        };
        match focal_certs::identity_of_cert(cert.as_ref()) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "verified client certificate carries no focal identity; closing");
                return;
            }
        }
    };
    tracing::Span::current().record("peer", tracing::field::display(&identity));
    tracing::info!("connection authenticated");
    let chain = io.get_ref().1.peer_certificates().map(|c| c.to_vec()).unwrap_or_default();
    let registered = admission.live.register(
        identity.clone(),
        remote,
        chain,
        admission.generation,
        admission.per_identity,
    );
    let (kill, registration, refused): (Pin<Box<dyn Future<Output = ()> + Send>>, _, _) = match registered {
        Ok(registration) => {
            let mut cancelled = registration.cancelled.clone();
            let kill = Box::pin(async move {
                tokio::select! {
                    _ = kill.wait_for(|k| *k) => {}
                    _ = cancelled.wait_for(|c| *c) => tracing::info!("connection closed: its certificate is no longer accepted"),
                }
            });
            (kill, Some(registration), None)
        }
        Err(e) => {
            // Served just long enough for the client's first RPC to get the
            // reason (see `peer::caller`), then closed.
            tracing::warn!(error = %e, "connection refused; closing");
            let code = match e {
                NotRegistered::TrustChanged => tonic::Code::Unavailable,
                _ => tonic::Code::ResourceExhausted,
            };
            let kill = Box::pin(async move {
                tokio::select! {
                    _ = kill.wait_for(|k| *k) => {}
                    () = tokio::time::sleep(REFUSED_LINGER) => {}
                }
            });
            (kill, None, Some((code, e.to_string())))
        }
    };
    let stream = RelayStream {
        io,
        info: PeerInfo { identity, remote, refused },
        kill,
        killed: false,
        _permit: permit,
        _registration: registration,
    };
    // If the server stopped taking connections, the stream is dropped here.
    let _ = tx.send(Ok(stream)).await;
}
