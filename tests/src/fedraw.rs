//! Talking to a running relay's federation (QUIC) listener below the relay
//! code: a raw quinn connection with any certificate and ALPN, and a
//! hand-made hello, for the security tests of whole relays (who may not open
//! a federation link, who may not announce what).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use focal_certs::{Credentials, ExpectedServer, SharedTrust};
use focal_proto::{NetworkId, Role, pb};

/// How long to wait for a close before giving up.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

/// Dials `server` (a relay of `server_network`) over QUIC with `creds`.
/// `Err` when the handshake fails (with TLS 1.3 a refused client
/// certificate may instead show up at the first stream).
pub async fn raw_connect(
    creds: &Credentials,
    trust: SharedTrust,
    server_network: &NetworkId,
    server: SocketAddr,
) -> Result<(quinn::Endpoint, quinn::Connection)> {
    let tls = focal_certs::client_config(
        creds,
        trust,
        focal_certs::ALPN_FEDERATION,
        ExpectedServer { network: server_network.clone(), role: Role::Relay },
    )?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let cfg = quinn::ClientConfig::new(Arc::new(quic));
    let conn = endpoint.connect_with(cfg, server, "127.0.0.1")?.await.context("QUIC handshake")?;
    Ok((endpoint, conn))
}

/// The honest hello of `creds` (a relay certificate).
pub fn hello_of(creds: &Credentials) -> pb::Hello {
    pb::Hello {
        protocol_version: 1,
        relay: creds.identity.name.clone(),
        networks: vec![creds.identity.network.to_string()],
        log_origin: format!("focal/{}/{}", creds.identity.network, creds.identity.name),
        log_key: vec![7; 32],
        witness_key: vec![],
    }
}

/// Sends `hello` on the first stream and reads the answer frame.
pub async fn raw_hello(conn: &quinn::Connection, hello: pb::Hello) -> Result<pb::Frame> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let f = pb::Frame { kind: Some(pb::frame::Kind::Hello(hello)) };
    send.write_all(&focal_proto::frame::encode(&f, 1 << 20)?).await?;
    let _ = send.finish();
    let bytes = recv.read_to_end(1 << 20).await?;
    focal_proto::frame::decode_exact(&bytes, 1 << 20).map_err(|e| anyhow!("hello answer: {e}"))
}

/// The application close code once the connection is closed (`None` for
/// another kind of close).
pub async fn close_code_of(conn: &quinn::Connection) -> Result<Option<u64>> {
    let err = tokio::time::timeout(CLOSE_DEADLINE, conn.closed()).await.context("connection not closed")?;
    Ok(match err {
        quinn::ConnectionError::ApplicationClosed(c) => Some(c.error_code.into_inner()),
        _ => None,
    })
}
