//! Helpers for the security tests: hand-made (deliberately bad)
//! certificates, an attacker's rustls client that presents whatever it is
//! given and accepts any server, gRPC channels and QUIC connections over it,
//! and readers of the relay's audit log through an auditor client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use focal_certs::NetworkCa;
use focal_proto::envelope::{self, ContextParams};
use focal_proto::pb::{self};
use focal_proto::{Address, NetworkId};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::Channel;

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);
/// How long an asynchronous effect (an audit record) may take to show.
pub const DEADLINE: Duration = Duration::from_secs(30);

// ------------------------------------------------------------ certificates

/// A certificate made by hand, outside `NetworkCa::issue`.
pub struct RawCert {
    pub cert: CertificateDer<'static>,
    pub key_pair: KeyPair,
}

impl RawCert {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(self.key_pair.serialize_der()).unwrap()
    }

    /// The certificate's key as a ring signing key (for signing envelopes).
    pub fn signing_key(&self) -> ring::signature::Ed25519KeyPair {
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.key_pair.serialize_der()).unwrap()
    }
}

/// What `NetworkCa::issue` puts in a leaf, with `uri` as the SAN (none if `None`).
pub fn leaf_params(uri: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "hand-made");
    if let Some(uri) = uri {
        p.subject_alt_names.push(SanType::URI(uri.try_into().unwrap()));
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = SystemTime::now();
    p.not_before = (now - HOUR).into();
    p.not_after = (now + DAY).into();
    p
}

/// Same as [`leaf_params`] for a relay (serverAuth too, loopback SANs).
pub fn relay_params(uri: &str) -> CertificateParams {
    let mut p = leaf_params(Some(uri));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.subject_alt_names.push(SanType::DnsName("localhost".try_into().unwrap()));
    p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap()
}

/// A leaf signed by `ca` with arbitrary parameters.
pub fn signed_by_ca(ca: &NetworkCa, params: &CertificateParams) -> RawCert {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem(), KeyPair::from_pem(&ca.key_pem()).unwrap()).unwrap();
    let key_pair = new_key();
    let cert = params.signed_by(&key_pair, &issuer).unwrap();
    RawCert { cert: cert.der().clone(), key_pair }
}

/// A leaf signed by another leaf (which is not a CA).
pub fn signed_by_leaf(parent: &RawCert, params: &CertificateParams) -> RawCert {
    let parent_key = KeyPair::from_pem(&parent.key_pair.serialize_pem()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&parent.cert, parent_key).unwrap();
    let key_pair = new_key();
    let cert = params.signed_by(&key_pair, &issuer).unwrap();
    RawCert { cert: cert.der().clone(), key_pair }
}

/// A self-signed leaf.
pub fn self_signed(params: &CertificateParams) -> RawCert {
    let key_pair = new_key();
    let cert = params.self_signed(&key_pair).unwrap();
    RawCert { cert: cert.der().clone(), key_pair }
}

/// A fresh CA for `network` that is in no trust bundle.
pub fn rogue_ca(network: &str) -> NetworkCa {
    NetworkCa::generate(&NetworkId::new(network).unwrap(), 30).unwrap()
}

// ------------------------------------------------------------ the attacker's TLS client

/// A client presenting `chain` (or nothing) with `alpn`, TLS 1.3, accepting
/// any server: it exercises the relay's verifier alone.
pub fn attacker_config(
    chain: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: &[u8],
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
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// The chain of `certs` (leaf first) with the leaf's key.
pub fn chain_of(certs: &[&RawCert]) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    Some((certs.iter().map(|c| c.cert.clone()).collect(), certs[0].key()))
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

/// A gRPC channel over `config` (no retry: one connection attempt).
pub async fn attacker_channel(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Result<Channel, tonic::transport::Error> {
    crate::common::channel_with(config, addr).await
}

/// A signed envelope header from `sender` (certificate `cert`, key of
/// `cert`) to `to`, for a payload `payload`.
pub fn forged_header(cert: &RawCert, sender: &str, to: &[&str], payload: &[u8]) -> pb::EnvelopeHeader {
    let now = crate::common::now_ms();
    let params = ContextParams {
        msg_id: envelope::new_msg_id(),
        sender: Address::parse(sender).unwrap(),
        recipients: to.iter().map(|a| Address::parse(a).unwrap()).collect(),
        created_at_ms: now,
        expires_at_ms: now + 3_600_000,
        handling: pb::HandlingCode::H1,
        priority: pb::Priority::Normal,
        forward_of: None,
        broadcast_network: None,
    };
    let context = envelope::build_context(&params).unwrap();
    let digest = envelope::sha256(payload);
    pb::EnvelopeHeader {
        signature: envelope::sign(&cert.signing_key(), &context, &digest),
        context,
        sender_cert: cert.cert.to_vec(),
        payload_sha256: digest.to_vec(),
        payload_size: payload.len() as u64,
        hops: vec![],
        deliver_to: vec![],
    }
}

/// Tries to send `header` + `payload` over `config`; returns the error at
/// whichever point it came (connect or the RPC), or `Ok` if the relay
/// accepted the message.
pub async fn try_send(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    header: pb::EnvelopeHeader,
    payload: &[u8],
) -> Result<pb::SendResponse, String> {
    let channel = attacker_channel(config, addr).await.map_err(|e| format!("connect: {e:?}"))?;
    let msgs = vec![
        pb::SendRequest { part: Some(pb::send_request::Part::Header(header)) },
        pb::SendRequest { part: Some(pb::send_request::Part::Chunk(payload.to_vec())) },
    ];
    let mut client = pb::relay_client::RelayClient::new(channel);
    client.send(tokio_stream::iter(msgs)).await.map(|r| r.into_inner()).map_err(|s| {
        assert!(
            matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled),
            "refused by the application, not the TLS layer: {s:?}"
        );
        format!("rpc: {s:?}")
    })
}

// ------------------------------------------------------------ the audit log

pub use crate::common::audit_records;

/// Waits until the log holds a CERTIFICATE_REFUSED record matching `pred`;
/// returns the whole log at that moment.
pub async fn wait_refused(
    auditor: &Channel,
    what: &str,
    pred: impl Fn(&pb::AuditRecord) -> bool,
) -> Vec<pb::AuditRecord> {
    let start = Instant::now();
    loop {
        let records = audit_records(auditor).await;
        if records.iter().any(|r| r.kind() == pb::AuditKind::CertificateRefused && pred(r)) {
            return records;
        }
        assert!(start.elapsed() < DEADLINE, "no CERTIFICATE_REFUSED record for {what}: {records:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
