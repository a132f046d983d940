//! A loopback TCP proxy that cuts its first connection once a given number
//! of bytes has flowed from the server to the client (both sockets are
//! dropped: the client sees the connection break mid-stream). Later
//! connections pass through untouched, so a client that reconnects resumes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct CutProxy {
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    cuts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Proxies to `target`, cutting the first connection after `cut_after`
    /// bytes from the server.
    pub(crate) async fn start(target: SocketAddr, cut_after: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cuts = Arc::new(AtomicU32::new(0));
        let c = cuts.clone();
        let task = tokio::spawn(async move {
            let mut first = true;
            while let Ok((client, _)) = listener.accept().await {
                let limit = if first { Some(cut_after) } else { None };
                first = false;
                tokio::spawn(pipe(client, target, limit, c.clone()));
            }
        });
        Ok(CutProxy { addr, cuts, task })
    }

    /// Connections cut so far.
    pub(crate) fn cuts(&self) -> u32 {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, target: SocketAddr, limit: Option<u64>, cuts: Arc<AtomicU32>) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::io::copy(&mut cr, &mut sw);
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut passed = 0u64;
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
            passed += n as u64;
            if limit.is_some_and(|l| passed >= l) {
                cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        () = down => {}
    }
    // Dropping both halves of both sockets closes the connections.
}
