//! The same rustls configs drive QUIC federation links (quinn, ALPN
//! `focal-fed/1`): a relay of another network is accepted and identified, a
//! focal point is refused, and a dialler refuses a relay of the wrong network.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use focal_certs::{ALPN_FEDERATION, Credentials, SharedTrust, TrustStore, client_config, identity_of_cert};
use focal_proto::{Identity, Role};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::CertificateDer;

fn endpoint(server: &Credentials, trust: SharedTrust) -> quinn::Endpoint {
    let tls = focal_certs::server_config(server, trust, ALPN_FEDERATION, policy(&[Role::Relay])).unwrap();
    let crypto = Arc::new(QuicServerConfig::try_from(tls).unwrap());
    quinn::Endpoint::server(quinn::ServerConfig::with_crypto(crypto), "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Dials `addr`, sends `ping` on a bidirectional stream and reads the answer.
async fn dial(
    me: &Credentials,
    store: TrustStore,
    expect: &str,
    addr: SocketAddr,
) -> Result<Vec<u8>, String> {
    let tls = client_config(me, SharedTrust::new(store), ALPN_FEDERATION, expect_relay(expect)).unwrap();
    let crypto = Arc::new(QuicClientConfig::try_from(tls).unwrap());
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(crypto));
    let conn = ep.connect(addr, "localhost").unwrap().await.map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(b"ping").await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let got = recv.read_to_end(64).await.map_err(|e| e.to_string())?;
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    Ok(got)
}

/// Accepts one connection and answers one stream; returns the peer identity.
async fn serve_one(ep: quinn::Endpoint) -> Result<Identity, String> {
    let incoming = ep.accept().await.ok_or("endpoint closed")?;
    let conn = incoming.await.map_err(|e| e.to_string())?;
    let certs = conn.peer_identity().and_then(|p| p.downcast::<Vec<CertificateDer<'static>>>().ok());
    let identity = identity_of_cert(&certs.ok_or("no peer certificate")?[0]).map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let _ = recv.read_to_end(64).await.map_err(|e| e.to_string())?;
    send.write_all(b"pong").await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    conn.closed().await;
    Ok(identity)
}

#[tokio::test]
async fn quic_federation_link_between_two_networks() {
    install_provider();
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let both = || store(&[&carin, &arinsa], vec![]);
    let ep = endpoint(&creds(&carin, Role::Relay, "relay1"), SharedTrust::new(both()));
    let addr = ep.local_addr().unwrap();
    let server = tokio::spawn(serve_one(ep));
    let got = dial(&creds(&arinsa, Role::Relay, "relay1"), both(), "carin", addr).await;
    assert_eq!(got.as_deref(), Ok(&b"pong"[..]));
    assert_eq!(server.await.unwrap().unwrap().uri(), "focal://arinsa/relay/relay1");
}

#[tokio::test]
async fn quic_listener_refuses_a_focal_point_and_dialler_checks_the_network() {
    install_provider();
    let (carin, arinsa) = (ca("carin"), ca("arinsa"));
    let both = || store(&[&carin, &arinsa], vec![]);
    let (trust, seen) = recording(both());
    let ep = endpoint(&creds(&carin, Role::Relay, "relay1"), trust);
    let addr = ep.local_addr().unwrap();
    let server = tokio::spawn(serve_one(ep.clone()));
    let got = dial(&creds(&carin, Role::Fp, "nl-fiod"), both(), "carin", addr).await;
    assert!(got.is_err(), "{got:?}");
    assert!(server.await.unwrap().is_err());
    let why = seen.lock().unwrap().iter().map(|r| r.reason.clone()).collect::<Vec<_>>().join("\n");
    assert!(why.contains("role fp not accepted here (expected relay)"), "{why}");

    // An ARINSA relay expecting an ARINSA peer refuses the CARIN relay.
    let server = tokio::spawn(serve_one(ep));
    let got = dial(&creds(&arinsa, Role::Relay, "relay2"), both(), "arinsa", addr).await;
    assert!(got.is_err(), "{got:?}");
    assert!(server.await.unwrap().is_err());
}
