//! [`UdpProxy`]: a loopback UDP forwarder that a test switches at run time
//! between passing, cutting, delaying and dropping datagrams.
//!
//! The proxy listens on `127.0.0.1:<os port>` and forwards each datagram to
//! one fixed target. Every client source address gets its own upstream
//! socket (bound on `127.0.0.1:<os port>`, connected to the target), so the
//! target's answers come back on that socket and are relayed to that client
//! from the listening address, the way a NAT would. Both directions go
//! through the same [`Impairment`]: a cut drops everything either way.
//!
//! Delays keep the order of datagrams: each direction of each client has
//! one queue (bounded; a datagram that finds it full is dropped, like a
//! router queue would). Losses are drawn from an RNG seeded by the test
//! ([`Impairment::seed`]), reseeded at each [`UdpProxy::set`]; which
//! datagram is dropped still depends on how the traffic interleaves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Datagrams waiting in one delay queue before new ones are dropped.
const QUEUE: usize = 4096;
/// Largest datagram relayed (QUIC stays far below it).
const MAX_DATAGRAM: usize = 65_535;

/// What the proxy does to the datagrams it relays, in both directions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Drop everything.
    pub cut: bool,
    /// Hold each datagram this long before sending it on (order kept).
    pub delay: Duration,
    /// Fraction of datagrams dropped at random (0.0 to 1.0).
    pub loss: f64,
    /// Seed of the loss RNG.
    pub seed: u64,
}

impl Impairment {
    /// Everything passes at once.
    pub const PASS: Impairment = Impairment { cut: false, delay: Duration::ZERO, loss: 0.0, seed: 0 };

    /// Nothing passes.
    pub fn cut() -> Self {
        Impairment { cut: true, ..Self::PASS }
    }

    /// Every datagram held `ms` milliseconds.
    pub fn delay_ms(ms: u64) -> Self {
        Impairment { delay: Duration::from_millis(ms), ..Self::PASS }
    }

    /// A fraction `rate` of datagrams dropped, drawn from an RNG seeded with `seed`.
    pub fn drop(rate: f64, seed: u64) -> Self {
        Impairment { loss: rate.clamp(0.0, 1.0), seed, ..Self::PASS }
    }

    /// The same, with every datagram that passes also held `ms` milliseconds.
    pub fn with_delay_ms(self, ms: u64) -> Self {
        Impairment { delay: Duration::from_millis(ms), ..self }
    }
}

/// Datagrams relayed and dropped so far (both directions together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Sent on (after any delay).
    pub forwarded: u64,
    /// Dropped by a cut, by the loss rate or by a full delay queue.
    pub dropped: u64,
}

struct State {
    imp: Impairment,
    rng: StdRng,
}

struct Shared {
    state: Mutex<State>,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// `Some(delay)` to send the datagram after `delay`, `None` to drop it.
    fn fate(&self) -> Option<Duration> {
        let mut st = self.state.lock().expect("proxy state");
        let imp = st.imp;
        let lost = imp.cut || (imp.loss > 0.0 && st.rng.random_bool(imp.loss));
        drop(st);
        if lost {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            Some(imp.delay)
        }
    }

    fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().expect("proxy tasks");
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(f));
    }
}

/// Where one direction of one client's traffic goes.
#[derive(Clone)]
enum Dest {
    /// An upstream socket connected to the target.
    Connected(Arc<UdpSocket>),
    /// The listening socket, back to a client.
    To(Arc<UdpSocket>, SocketAddr),
}

impl Dest {
    async fn send(&self, buf: &[u8]) {
        // A failed send is a lost datagram, which UDP allows.
        let _ = match self {
            Dest::Connected(s) => s.send(buf).await,
            Dest::To(s, to) => s.send_to(buf, to).await,
        };
    }
}

/// One direction of one client: datagrams in order, each sent at its time.
#[derive(Clone)]
struct Lane {
    tx: mpsc::Sender<(Instant, Vec<u8>)>,
    shared: Arc<Shared>,
}

impl Lane {
    fn new(shared: &Arc<Shared>, dest: Dest) -> Lane {
        let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
        let sh = shared.clone();
        shared.spawn(async move {
            while let Some((at, buf)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                dest.send(&buf).await;
                sh.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        });
        Lane { tx, shared: shared.clone() }
    }

    fn push(&self, buf: &[u8]) {
        let Some(delay) = self.shared.fate() else { return };
        if self.tx.try_send((Instant::now() + delay, buf.to_vec())).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running proxy; dropping it stops every task it started.
pub struct UdpProxy {
    listen: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
}

impl UdpProxy {
    /// Starts a proxy to `target` on a fresh loopback port, passing everything.
    pub async fn start(target: SocketAddr) -> Result<UdpProxy> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.context("binding the proxy socket")?);
        let listen = socket.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { imp: Impairment::PASS, rng: StdRng::seed_from_u64(0) }),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        shared.spawn(async move {
            if let Err(e) = accept_loop(sh, socket, target).await {
                tracing::error!(%listen, %target, "udp proxy stopped: {e:#}");
            }
        });
        Ok(UdpProxy { listen, target, shared })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Where datagrams go.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Switches what happens to datagrams from now on (datagrams already
    /// waiting in a delay queue keep their time).
    pub fn set(&self, imp: Impairment) {
        let mut st = self.shared.state.lock().expect("proxy state");
        st.rng = StdRng::seed_from_u64(imp.seed);
        st.imp = imp;
    }

    /// The impairment in force.
    pub fn impairment(&self) -> Impairment {
        self.shared.state.lock().expect("proxy state").imp
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            forwarded: self.shared.forwarded.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        for t in self.shared.tasks.lock().expect("proxy tasks").drain(..) {
            t.abort();
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, target: SocketAddr) -> Result<()> {
    let mut clients: HashMap<SocketAddr, Lane> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // An error here is one lost datagram (or a one-off ICMP report), never permanent.
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        let lane = match clients.get(&from) {
            Some(l) => l.clone(),
            None => {
                let up =
                    Arc::new(UdpSocket::bind("127.0.0.1:0").await.context("binding an upstream socket")?);
                up.connect(target).await.context("connecting an upstream socket")?;
                let back = Lane::new(&shared, Dest::To(socket.clone(), from));
                let reader = up.clone();
                shared.spawn(async move {
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    // Ends when the proxy is dropped (task aborted). A
                    // receive error (e.g. ICMP port unreachable while the
                    // target is down) is just a lost datagram.
                    loop {
                        if let Ok(n) = reader.recv(&mut buf).await {
                            back.push(&buf[..n]);
                        }
                    }
                });
                let lane = Lane::new(&shared, Dest::Connected(up));
                clients.insert(from, lane.clone());
                lane
            }
        };
        lane.push(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for `f` to hold (a failure bound, not a timing assertion).
    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < end, "{what}: not within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn recv_u32(c: &UdpSocket) -> u32 {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(60), c.recv(&mut buf))
            .await
            .expect("an echo within 60 s")
            .expect("recv");
        u32::from_be_bytes(buf[..n].try_into().expect("4 bytes"))
    }

    #[tokio::test]
    async fn passes_delays_in_order_cuts_and_drops() -> Result<()> {
        let echo = UdpSocket::bind("127.0.0.1:0").await?;
        let target = echo.local_addr()?;
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let p = UdpProxy::start(target).await?;
        let c = UdpSocket::bind("127.0.0.1:0").await?;
        c.connect(p.addr()).await?;

        for imp in [Impairment::PASS, Impairment::delay_ms(20)] {
            p.set(imp);
            for i in 0..20u32 {
                c.send(&i.to_be_bytes()).await?;
            }
            for i in 0..20u32 {
                assert_eq!(recv_u32(&c).await, i, "{imp:?}: in order, none lost");
            }
        }

        p.set(Impairment::cut());
        let before = p.stats();
        for i in 100..110u32 {
            c.send(&i.to_be_bytes()).await?;
        }
        until("10 datagrams dropped by the cut", || p.stats().dropped == before.dropped + 10).await;
        p.set(Impairment::PASS);
        c.send(&7u32.to_be_bytes()).await?;
        assert_eq!(recv_u32(&c).await, 7, "nothing sent during the cut comes through");
        until("the marker counted there and back", || p.stats().forwarded == before.forwarded + 2).await;

        p.set(Impairment::drop(0.5, 1));
        let before = p.stats();
        for i in 0..200u32 {
            c.send(&i.to_be_bytes()).await?;
        }
        until("200 datagrams handled", || {
            let s = p.stats();
            s.dropped - before.dropped + s.forwarded - before.forwarded >= 200
        })
        .await;
        let dropped = p.stats().dropped - before.dropped;
        assert!((20..=180).contains(&dropped), "half lost at random, not {dropped}");
        Ok(())
    }
}
