//! A loopback TCP proxy for client connections (gRPC over TLS passes
//! through it untouched) that lets a given number of bytes flow from the
//! server to the client, then either cuts the connection ([`AfterBytes::Cut`],
//! first connection only: a client that reconnects resumes) or holds every
//! connection open in silence ([`AfterBytes::Stall`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does once its byte count from the server has passed.
#[derive(Clone, Copy, Debug)]
pub enum AfterBytes {
    /// Drop both sockets of the first connection after this many bytes;
    /// later connections pass untouched.
    Cut(u64),
    /// Stop forwarding to the client after this many bytes, on every
    /// connection, and keep the connection open.
    Stall(u64),
}

/// A running proxy; stops when dropped.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    cuts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Proxies to `target`.
    pub async fn start(target: SocketAddr, after: AfterBytes) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cuts = Arc::new(AtomicU32::new(0));
        let c = cuts.clone();
        let task = tokio::spawn(async move {
            let mut first = true;
            while let Ok((client, _)) = listener.accept().await {
                let after = match after {
                    AfterBytes::Cut(_) if !first => None,
                    a => Some(a),
                };
                first = false;
                tokio::spawn(pipe(client, target, after, c.clone()));
            }
        });
        Ok(TcpProxy { addr, cuts, task })
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u32 {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, target: SocketAddr, after: Option<AfterBytes>, cuts: Arc<AtomicU32>) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::io::copy(&mut cr, &mut sw);
    let limit = match after {
        Some(AfterBytes::Cut(n) | AfterBytes::Stall(n)) => n,
        None => u64::MAX,
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut passed = 0u64;
        while passed < limit {
            let want = buf.len().min(usize::try_from(limit - passed).unwrap_or(usize::MAX));
            let n = match sr.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
            passed += n as u64;
        }
        match after {
            Some(AfterBytes::Stall(_)) => std::future::pending::<()>().await,
            _ => {
                cuts.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    tokio::select! {
        _ = up => {}
        () = down => {}
    }
    // Dropping both halves of both sockets closes the connections.
}
