//! The connection to the relay: TCP, then TLS 1.3 with tokio-rustls using
//! `focal_certs::client_config` (this focal point's certificate, a relay
//! certificate of the profile's network required), then HTTP/2 by tonic.
//!
//! tonic runs without its own TLS: the [`TlsConnector`] below is handed to
//! `Endpoint::connect_with_connector`, so every (re)connection of the channel
//! goes through the same checks. When the profile names the relay
//! (`relay_name`), the certificate's identity must be exactly
//! `focal://<relay_network>/relay/<relay_name>`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use focal_certs::{Credentials, ExpectedServer, SharedTrust};
use focal_proto::Role;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{ClientError, Result};
use crate::profile::Profile;

/// How long a TCP connect + TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A tower connector that dials the relay and runs the TLS handshake.
#[derive(Clone)]
pub struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    addr: String,
    server_name: ServerName<'static>,
    expect: Option<focal_proto::Identity>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl TlsConnector {
    /// A connector for `profile`'s relay presenting `creds`.
    pub fn new(profile: &Profile, creds: &Credentials, trust: SharedTrust) -> Result<Self> {
        let expected = ExpectedServer { network: profile.relay_network.clone(), role: Role::Relay };
        let config = focal_certs::client_config(creds, trust, focal_certs::ALPN_GRPC, expected)?;
        let server_name =
            ServerName::try_from(profile.server_name.clone()).map_err(|e| ClientError::Profile {
                path: profile.path.clone(),
                reason: format!("key `relay_server_name`: {e}"),
            })?;
        let expect = match &profile.relay_name {
            Some(name) => Some(focal_proto::Identity::new(profile.relay_network.clone(), Role::Relay, name)?),
            None => None,
        };
        Ok(TlsConnector {
            tls: tokio_rustls::TlsConnector::from(config),
            addr: profile.relay.clone(),
            server_name,
            expect,
        })
    }

    async fn dial(
        self,
    ) -> std::result::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, BoxError> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.tls.connect(self.server_name.clone(), tcp).await?;
        if let Some(want) = &self.expect {
            let (_, conn) = tls.get_ref();
            let cert = conn.peer_certificates().and_then(|c| c.first()).ok_or("relay sent no certificate")?;
            let got = focal_certs::identity_of_cert(cert)?;
            if &got != want {
                return Err(format!("relay certificate is for {got}, the profile expects {want}").into());
            }
        }
        Ok(TokioIo::new(tls))
    }
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        Box::pin(self.clone().dial())
    }
}

/// Connects a tonic channel to the profile's relay. The first connection is
/// made eagerly so that a wrong address or certificate fails here, with the
/// reason; later reconnections happen inside the channel.
pub async fn connect(profile: &Profile, creds: &Credentials, trust: SharedTrust) -> Result<Channel> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The TLS error alone names only a rustls category (say
    // ApplicationVerificationFailure); the verifier's refusal names the
    // certificate's identity and the rule it broke.
    let refused = Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = refused.clone();
    trust.set_refusal_hook(Arc::new(move |r: &focal_certs::CertRefusal| {
        let who = r.claimed.as_deref().unwrap_or("a certificate without a focal identity");
        *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{who}: {}", r.reason));
    }));
    let connector = TlsConnector::new(profile, creds, trust)?;
    // The URI only feeds the HTTP/2 :authority; TLS is done by the connector.
    let uri = format!("http://{}", profile.relay);
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ClientError::Connect { relay: profile.relay.clone(), reason: e.to_string() })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    endpoint.connect_with_connector(connector).await.map_err(|e| {
        let mut reason = error_chain(&e);
        if let Some(r) = refused.lock().unwrap_or_else(|e| e.into_inner()).take() {
            reason = format!("{reason} (the relay's certificate was refused: {r})");
        }
        ClientError::Connect { relay: profile.relay.clone(), reason }
    })
}

/// `e: cause: cause` on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Loads the profile's credentials and trust store.
pub fn load_identity(profile: &Profile) -> Result<(Arc<Credentials>, SharedTrust)> {
    let creds = Credentials::load(&profile.cert, &profile.key)?;
    let crls: Vec<&std::path::Path> = profile.crls.iter().map(|p| p.as_path()).collect();
    let store = focal_certs::TrustStore::load(&profile.trust_bundle, &crls)?;
    Ok((Arc::new(creds), SharedTrust::new(store)))
}
