//! The metrics listener: plain HTTP/1.1 on `listen.metrics` (keep it on
//! loopback or a management network: it carries no TLS and no
//! authentication, and reveals mailbox addresses and queue depths).
//!
//! `GET /metrics` answers the Prometheus text format and closes the
//! connection; `GET /` a short pointer; anything else 404 or 405. A request
//! head is read up to 8 KiB within 5 seconds; at most 16 scrapes are served
//! at once (more wait in the kernel's accept queue).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::admin::OpsState;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONCURRENT: usize = 16;

/// Serves scrapes on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, ops: Arc<OpsState>, mut stop: watch::Receiver<bool>) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!("metrics listening on http://{addr}/metrics");
    let sem = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stopped(&mut stop) => break,
        };
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let ops = ops.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, ops).await {
                tracing::debug!(%remote, error = %e, "metrics request failed");
            }
            drop(permit);
        });
    }
    tracing::debug!("metrics listener stopped");
}

async fn handle(mut tcp: TcpStream, ops: Arc<OpsState>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HEAD {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request head over 8 KiB"));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request head too slow")),
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            let body = tokio::task::spawn_blocking(move || ops.render_metrics())
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        ("GET", "/") => ("200 OK", "text/plain; charset=utf-8", "focal-relay: metrics at /metrics\n".into()),
        ("GET", _) => {
            ("404 Not Found", "text/plain; charset=utf-8", "not found; metrics are at /metrics\n".into())
        }
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(response.as_bytes()).await?;
    if method != "HEAD" {
        tcp.write_all(body.as_bytes()).await?;
    }
    tcp.shutdown().await
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}
