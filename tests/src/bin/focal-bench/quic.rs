//! Raw QUIC throughput of one quinn connection pair on loopback (the
//! transport's limit for attachments): one unidirectional stream carrying
//! `bytes` bytes, TLS 1.3 with ring, default quinn transport settings.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use quinn::{ClientConfig, Endpoint, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::table::Row;

pub(crate) async fn run(bytes: usize) -> Result<Vec<Row>> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    let cert_der = CertificateDer::from(cert.der().to_vec());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = Endpoint::server(
        ServerConfig::with_single_cert(vec![cert_der.clone()], key_der)?,
        "127.0.0.1:0".parse()?,
    )?;
    let addr = server.local_addr()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let mut client = Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(ClientConfig::with_root_certificates(Arc::new(roots))?);

    let recv = tokio::spawn(async move {
        let conn = server.accept().await.context("no connection")?.await?;
        let mut s = conn.accept_uni().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0usize;
        while let Some(k) = s.read(&mut buf).await? {
            n += k;
        }
        conn.close(0u32.into(), b"done");
        anyhow::Ok(n)
    });
    let conn = client.connect(addr, "localhost")?.await?;
    let t = Instant::now();
    let mut s = conn.open_uni().await?;
    let chunk = vec![7u8; 1 << 20];
    let mut sent = 0;
    while sent < bytes {
        s.write_all(&chunk).await?;
        sent += chunk.len();
    }
    s.finish()?;
    let got = recv.await??;
    let secs = t.elapsed().as_secs_f64();
    client.wait_idle().await;
    Ok(vec![Row::one(
        &format!("raw quinn throughput, one stream on loopback ({} MiB)", got >> 20),
        format!("{:.0} MB/s", got as f64 / 1e6 / secs),
    )])
}
