//! Shared fixtures for the focal-certs integration tests: throwaway CAs,
//! hand-made (deliberately bad) certificates, and a real TLS handshake over
//! loopback with tokio-rustls.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use focal_certs::{
    CertRefusal, ClientPolicy, Credentials, ExpectedServer, IssueRequest, NetworkCa, SharedTrust,
    TrustBundle, TrustStore, client_config, identity_of_cert, server_config,
};
use focal_proto::{Identity, NetworkId, Role};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn net(id: &str) -> NetworkId {
    NetworkId::new(id).unwrap()
}

pub fn ca(id: &str) -> NetworkCa {
    NetworkCa::generate(&net(id), 30).unwrap()
}

/// Credentials issued by `ca`; relays get DNS `localhost` and IP 127.0.0.1.
pub fn creds(ca: &NetworkCa, role: Role, name: &str) -> Credentials {
    let mut req = IssueRequest::new(role, name);
    if role == Role::Relay {
        req.dns = vec!["localhost".into()];
        req.ips = vec!["127.0.0.1".parse().unwrap()];
    }
    creds_for(ca, &req)
}

pub fn creds_for(ca: &NetworkCa, req: &IssueRequest) -> Credentials {
    let issued = ca.issue(req).unwrap();
    Credentials::from_pem(&issued.cert_pem, &issued.key_pem).unwrap()
}

pub fn store(cas: &[&NetworkCa], crls: Vec<CertificateRevocationListDer<'static>>) -> TrustStore {
    let mut bundle = TrustBundle::default();
    for ca in cas {
        bundle.insert(ca.network().clone(), ca.cert_der());
    }
    TrustStore::new(bundle, crls).unwrap()
}

pub fn crl_der(pem: &str) -> CertificateRevocationListDer<'static> {
    CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A trust handle that records every refusal its verifiers report.
pub fn recording(store: TrustStore) -> (SharedTrust, Arc<Mutex<Vec<CertRefusal>>>) {
    let trust = SharedTrust::new(store);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    trust.set_refusal_hook(Arc::new(move |r: &CertRefusal| sink.lock().unwrap().push(r.clone())));
    (trust, seen)
}

pub fn policy(roles: &[Role]) -> ClientPolicy {
    ClientPolicy { roles: roles.to_vec(), networks: None }
}

pub fn expect_relay(network: &str) -> ExpectedServer {
    ExpectedServer { network: net(network), role: Role::Relay }
}

// ---------------------------------------------------------------- raw certificates

/// A certificate and key made by hand, outside `NetworkCa::issue`.
pub struct RawCert {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub key_pair: KeyPair,
}

/// The parameters `NetworkCa::issue` would use for a client leaf (`uri` as SAN).
pub fn leaf_params(uri: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "hand-made");
    if let Some(uri) = uri {
        p.subject_alt_names.push(SanType::URI(uri.try_into().unwrap()));
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
    let now = SystemTime::now();
    p.not_before = (now - HOUR).into();
    p.not_after = (now + DAY).into();
    p
}

fn finish(cert: rcgen::Certificate, key_pair: KeyPair) -> RawCert {
    let key = PrivateKeyDer::try_from(key_pair.serialize_der()).unwrap();
    RawCert { cert: cert.der().clone(), key, key_pair }
}

/// A leaf signed by `ca` with arbitrary parameters.
pub fn signed_by_ca(ca: &NetworkCa, params: &CertificateParams) -> RawCert {
    let ca_key = KeyPair::from_pem(&ca.key_pem()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem(), ca_key).unwrap();
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = params.signed_by(&key_pair, &issuer).unwrap();
    finish(cert, key_pair)
}

/// A leaf signed by another leaf (which is not a CA).
pub fn signed_by_leaf(parent: &RawCert, params: &CertificateParams) -> RawCert {
    let parent_key = KeyPair::from_pem(&parent.key_pair.serialize_pem()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&parent.cert, parent_key).unwrap();
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = params.signed_by(&key_pair, &issuer).unwrap();
    finish(cert, key_pair)
}

/// A self-signed leaf.
pub fn self_signed(params: &CertificateParams) -> RawCert {
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = params.self_signed(&key_pair).unwrap();
    finish(cert, key_pair)
}

// ---------------------------------------------------------------- TLS plumbing

/// A client that presents whatever chain it is given and accepts any server:
/// the attacker's side, to exercise the server's verifier alone.
pub fn raw_client(
    chain: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer));
    let mut cfg = match chain {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![focal_certs::ALPN_GRPC.to_vec()];
    Arc::new(cfg)
}

#[derive(Debug)]
struct AcceptAnyServer;

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

/// A relay server of `ca`'s network accepting `roles`, with a recording trust.
pub fn relay_server(
    ca: &NetworkCa,
    store: TrustStore,
    roles: &[Role],
) -> (Arc<rustls::ServerConfig>, SharedTrust, Arc<Mutex<Vec<CertRefusal>>>) {
    let server_creds = creds(ca, Role::Relay, "relay1");
    let (trust, seen) = recording(store);
    let cfg = server_config(&server_creds, trust.clone(), focal_certs::ALPN_GRPC, policy(roles)).unwrap();
    (cfg, trust, seen)
}

/// A well-behaved client presenting `creds` and expecting `server`.
pub fn good_client(
    creds: &Credentials,
    store: TrustStore,
    server: ExpectedServer,
) -> Arc<rustls::ClientConfig> {
    client_config(creds, SharedTrust::new(store), focal_certs::ALPN_GRPC, server).unwrap()
}

/// What each side of one connection saw.
#[derive(Debug)]
pub struct Outcome {
    /// The server: the peer identity after the handshake and one exchange, or its error.
    pub server: Result<Identity, String>,
    /// The client: the application bytes it received, or its error.
    pub client: Result<Vec<u8>, String>,
}

impl Outcome {
    /// Asserts a full success: the server saw `who` and the client got the reply.
    pub fn assert_ok(&self, who: &str) {
        assert_eq!(self.server.as_ref().map(Identity::uri), Ok(who.to_owned()), "{self:?}");
        assert_eq!(self.client.as_deref(), Ok(&b"pong\n"[..]), "{self:?}");
    }

    /// Asserts a refusal: the server errored and no application data reached the client.
    pub fn assert_refused(&self) -> &str {
        let Err(server_err) = &self.server else { panic!("server accepted: {self:?}") };
        assert!(self.client.is_err(), "client received application data: {self:?}");
        server_err
    }
}

/// Runs one connection over loopback: the client sends `ping\n` after its
/// handshake, the server answers `pong\n` after its own and after reading it.
pub async fn handshake(
    server_cfg: Arc<rustls::ServerConfig>,
    client_cfg: Arc<rustls::ClientConfig>,
    dial: &str,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls =
            tokio_rustls::TlsAcceptor::from(server_cfg).accept(tcp).await.map_err(|e| e.to_string())?;
        let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
        let identity = identity_of_cert(&cert.ok_or("no client certificate")?).map_err(|e| e.to_string())?;
        let mut ping = [0u8; 5];
        tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong\n").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(identity)
    });
    let name = ServerName::try_from(dial.to_owned()).unwrap();
    let client = async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(client_cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping\n").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        if got.is_empty() { Err("connection closed without data".to_owned()) } else { Ok(got) }
    };
    let guard = Duration::from_secs(30); // a hang guard, not synchronisation
    let client = tokio::time::timeout(guard, client).await.expect("client side hung");
    let server = tokio::time::timeout(guard, server).await.expect("server side hung").unwrap();
    Outcome { server, client }
}

/// The chain and key of credentials, for `raw_client`.
pub fn chain_of(c: &Credentials) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    Some((c.chain.clone(), c.key.clone_key()))
}

pub fn raw_chain(chain: &[&RawCert]) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    Some((chain.iter().map(|c| c.cert.clone()).collect(), chain[0].key.clone_key()))
}
