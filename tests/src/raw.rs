//! Talking to a relay below the client library: raw bytes on a gRPC method
//! (for malformed protobuf), and hand-made envelopes (spoofed sender, bad
//! signature, expired, oversized, reused msg id) sent on the real `Send` RPC.

use std::time::Duration;

use bytes::{Buf, BufMut};
use focal_client::plaintext::content_prefix;
use focal_proto::envelope::{self, ContextParams, RecipientPublicKey};
use focal_proto::{Address, pb};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// A codec that sends and receives message bodies as raw bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEncoder;

/// Decoder half of [`RawCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Calls a client-streaming method (e.g. `/focal.v1.Relay/Send`) with raw
/// message bodies.
pub async fn raw_client_streaming(
    channel: Channel,
    path: &'static str,
    messages: Vec<Vec<u8>>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let req = tonic::Request::new(futures::stream::iter(messages));
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.client_streaming(req, path, RawCodec).await.map(|r| r.into_inner())
}

/// Calls a unary method with a raw body.
pub async fn raw_unary(
    channel: Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|r| r.into_inner())
}

/// How to make a hand-made envelope.
#[derive(Clone, Debug)]
pub struct CraftOptions {
    /// Message id (random by default).
    pub msg_id: [u8; 16],
    /// Created (unix ms).
    pub created_at_ms: i64,
    /// Expires (unix ms).
    pub expires_at_ms: i64,
    /// Plaintext body size in bytes (filled with a pattern).
    pub body_len: usize,
}

impl Default for CraftOptions {
    fn default() -> Self {
        let now = focal_client::util::now_ms();
        CraftOptions {
            msg_id: envelope::new_msg_id(),
            created_at_ms: now,
            expires_at_ms: now + Duration::from_secs(86_400).as_millis() as i64,
            body_len: 100,
        }
    }
}

/// Seals and signs a whole envelope in memory (small messages only) claiming
/// `sender`, signed with `signer`'s key and certificate.
pub fn craft(
    sender: &Address,
    signer: &focal_certs::Credentials,
    recipients: &[(Address, RecipientPublicKey)],
    opts: &CraftOptions,
) -> anyhow::Result<pb::Envelope> {
    let context = envelope::build_context(&ContextParams {
        msg_id: opts.msg_id,
        sender: sender.clone(),
        recipients: recipients.iter().map(|(a, _)| a.clone()).collect(),
        created_at_ms: opts.created_at_ms,
        expires_at_ms: opts.expires_at_ms,
        handling: pb::HandlingCode::H1,
        priority: pb::Priority::Normal,
        forward_of: None,
        broadcast_network: None,
    })?;
    let content = pb::Content {
        version: 1,
        subject: "crafted".into(),
        body: "x".repeat(opts.body_len),
        kind: pb::MessageKind::General as i32,
        ..Default::default()
    };
    let plaintext = content_prefix(&content)?;
    let keys: Vec<RecipientPublicKey> = recipients.iter().map(|(_, k)| *k).collect();
    Ok(envelope::seal_envelope(&context, &keys, &plaintext, &signer.signing_key()?, signer.cert_der())?)
}

/// Sends an envelope with the `Send` RPC: header, then the payload in
/// `chunk`-byte pieces.
pub async fn send_envelope(
    channel: Channel,
    env: &pb::Envelope,
    chunk: usize,
) -> Result<pb::SendResponse, tonic::Status> {
    let header = env.header.clone().expect("crafted envelopes have a header");
    let mut parts = vec![pb::SendRequest { part: Some(pb::send_request::Part::Header(header)) }];
    for c in env.payload.chunks(chunk.max(1)) {
        parts.push(pb::SendRequest { part: Some(pb::send_request::Part::Chunk(c.to_vec())) });
    }
    pb::relay_client::RelayClient::new(channel)
        .send(futures::stream::iter(parts))
        .await
        .map(|r| r.into_inner())
}
