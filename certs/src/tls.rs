//! rustls configurations for the gRPC client API (ALPN `h2`) and relay
//! federation over QUIC (ALPN `focal-fed/1`).
//!
//! Both sides: the ring provider (explicitly, never the process default),
//! TLS 1.3 only, mutual authentication, session resumption off (a resumed
//! session would skip certificate verification and so outlive a CRL reload),
//! and custom verifiers that read the [`SharedTrust`] store in force at each
//! handshake and report every refusal to its hook.
//!
//! - Server ([`server_config`]): a client certificate is mandatory; it must
//!   pass [`verify_peer`](crate::verify_peer) (chain to the CA of the network
//!   it names, validity, that network's CRL, clientAuth) and the listener's
//!   [`ClientPolicy`] (role, network).
//! - Client ([`client_config`]): the server certificate must name a
//!   `server.network` identity with `server.role`, chain to that network's CA
//!   (serverAuth), and carry a DNS/IP SAN matching the name dialled.
//!
//! Existing connections are not re-checked when trust is replaced; closing
//! them is the caller's decision. The CA names a server sends as a hint in its
//! CertificateRequest are taken from the store when the config is built.
//! A client sending no certificate is refused by rustls itself (mandatory
//! client auth) before any verifier runs, so the refusal hook does not see it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use focal_proto::{NetworkId, Role};

use crate::bundle::{CertRefusal, SharedTrust};
use crate::credentials::Credentials;
use crate::error::{CertsError, Result};
use crate::verify::{CertInfo, Usage, identity_of_cert, verify_at};

/// ALPN of the gRPC client API.
pub const ALPN_GRPC: &[u8] = b"h2";
/// ALPN of relay-to-relay federation links.
pub const ALPN_FEDERATION: &[u8] = b"focal-fed/1";

/// Which clients a listener accepts.
#[derive(Clone, Debug)]
pub struct ClientPolicy {
    /// Roles accepted (must not be empty).
    pub roles: Vec<Role>,
    /// `None` = any network in the bundle.
    pub networks: Option<Vec<NetworkId>>,
}

impl ClientPolicy {
    /// Checks a verified identity against the policy.
    pub fn check(&self, identity: &focal_proto::Identity) -> Result<()> {
        if !self.roles.contains(&identity.role) {
            return Err(CertsError::WrongRole {
                identity: identity.clone(),
                role: identity.role,
                expected: join(&self.roles),
            });
        }
        if let Some(nets) = &self.networks
            && !nets.contains(&identity.network)
        {
            return Err(CertsError::NetworkNotAllowed {
                identity: identity.clone(),
                network: identity.network.clone(),
                expected: join(nets),
            });
        }
        Ok(())
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
}

/// The relay a client expects to reach.
#[derive(Clone, Debug)]
pub struct ExpectedServer {
    /// Its network: the only CA its certificate may chain to.
    pub network: NetworkId,
    /// Its role (normally [`Role::Relay`]).
    pub role: Role,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3-only server config requiring a client certificate that passes
/// `verify_peer` and `policy`; ALPN set to `alpn`.
pub fn server_config(
    creds: &Credentials,
    trust: SharedTrust,
    alpn: &[u8],
    policy: ClientPolicy,
) -> Result<Arc<rustls::ServerConfig>> {
    if policy.roles.is_empty() {
        return Err(CertsError::request("client policy accepts no role"));
    }
    let provider = provider();
    let verifier = Arc::new(FocalClientVerifier {
        hints: trust.current().root_hints(),
        algs: provider.signature_verification_algorithms,
        trust,
        policy,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// TLS 1.3-only client config presenting `creds`, accepting only a server
/// certificate of `server.network`'s CA with `server.role`, valid for the
/// name dialled.
pub fn client_config(
    creds: &Credentials,
    trust: SharedTrust,
    alpn: &[u8],
    server: ExpectedServer,
) -> Result<Arc<rustls::ClientConfig>> {
    let provider = provider();
    let verifier =
        Arc::new(FocalServerVerifier { algs: provider.signature_verification_algorithms, trust, server });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Reports a refusal and turns it into the rustls error (and alert).
fn refuse(trust: &SharedTrust, end_entity: &CertificateDer<'_>, err: &CertsError) -> rustls::Error {
    let claimed =
        err.claimed().map(|i| i.uri()).or_else(|| identity_of_cert(end_entity).ok().map(|i| i.uri()));
    trust.report(&CertRefusal { claimed, reason: err.to_string() });
    err.to_rustls()
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// Server side: mandatory client certificate, checked against the current trust.
#[derive(Debug)]
struct FocalClientVerifier {
    trust: SharedTrust,
    policy: ClientPolicy,
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for FocalClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let store = self.trust.current();
        verify_at(&store, end_entity, intermediates, now, Usage::Client)
            .and_then(|peer| self.policy.check(&peer.identity))
            .map(|()| ClientCertVerified::assertion())
            .map_err(|e| refuse(&self.trust, end_entity, &e))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Client side: the server must be `server.role` of `server.network`, valid
/// for the name dialled.
#[derive(Debug)]
struct FocalServerVerifier {
    trust: SharedTrust,
    server: ExpectedServer,
    algs: WebPkiSupportedAlgorithms,
}

impl FocalServerVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<()> {
        // The claim first: a certificate naming another network is refused
        // before any CA is consulted, so only `server.network`'s CA can vouch.
        let info = CertInfo::parse(end_entity)?;
        let want =
            ClientPolicy { roles: vec![self.server.role], networks: Some(vec![self.server.network.clone()]) };
        want.check(&info.identity)?;
        let peer = verify_at(&self.trust.current(), end_entity, intermediates, now, Usage::Server)?;
        let ee =
            webpki::EndEntityCert::try_from(end_entity).map_err(|e| CertsError::Malformed(e.to_string()))?;
        ee.verify_is_valid_for_subject_name(server_name).map_err(|_| CertsError::WrongServerName {
            identity: peer.identity,
            name: server_name.to_str().into_owned(),
        })
    }
}

impl ServerCertVerifier for FocalServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, server_name, now)
            .map(|()| ServerCertVerified::assertion())
            .map_err(|e| refuse(&self.trust, end_entity, &e))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
