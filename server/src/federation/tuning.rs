//! Limits and timers of federation links, and the quinn configurations built
//! from them and from `focal_certs`' rustls configs.
//!
//! Every limit says what it costs. The memory a peer can make this relay
//! hold is bounded by `receive_window` (QUIC data not yet read, whole
//! connection) plus, per open inbound stream (at most
//! `max_inbound_streams`), one partly received frame of at most
//! `max_frame`, a 64 KiB read buffer and one decoded chunk of at most
//! 64 KiB. With the defaults: 8 MiB + 32 × 1.1 MiB ≈ 44 MiB per peer, worst
//! case; an honest peer uses a fraction of it.

use std::sync::Arc;
use std::time::Duration;

use focal_certs::{ClientPolicy, Credentials, ExpectedServer, SharedTrust};
use focal_proto::{NetworkId, Role};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::FederationError;

/// Limits and timers of the federation transport. `Tuning::default()` is
/// what a relay runs with; tests shorten timers.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Largest frame body accepted or sent (bytes). Costs up to this much
    /// buffer per open inbound stream. Default: `frame::DEFAULT_MAX_FRAME` (1 MiB).
    pub max_frame: usize,
    /// Payload bytes per `PayloadChunk` (at most 64 KiB; larger chunks from a
    /// peer are a protocol violation). Also the sender's read buffer per transfer.
    pub chunk_size: usize,
    /// Bidirectional streams a peer may have open towards us at once
    /// (quinn `max_concurrent_bidi_streams`): concurrent transfers and
    /// requests per link. Each costs a task and up to `max_frame` of buffer.
    /// Further `open_bi` calls on the peer wait for a slot. Default 32.
    pub max_inbound_streams: u32,
    /// Per-stream flow-control window (bytes we accept unread on one stream).
    /// Throughput of one transfer ≤ window / RTT: 2 MiB at 100 ms RTT ≈ 20 MiB/s.
    pub stream_receive_window: u32,
    /// Whole-connection flow-control window: the memory one peer can make
    /// quinn buffer for us. Default 8 MiB.
    pub receive_window: u32,
    /// Bytes we buffer unacknowledged towards one peer. Default 8 MiB.
    pub send_window: u64,
    /// QUIC keep-alive (PING) interval: keeps NAT bindings and detects a dead
    /// peer well within `idle_timeout`. Costs one small packet per interval.
    pub keep_alive: Duration,
    /// A connection silent this long is dead (negotiated: the smaller of
    /// both sides' values applies).
    pub idle_timeout: Duration,
    /// QUIC + TLS handshake plus the hello exchange must finish within this.
    pub handshake_timeout: Duration,
    /// An inbound stream that makes no progress for this long is reset (a
    /// stalled transfer must not hold a stream slot forever).
    pub stream_idle_timeout: Duration,
    /// How long a sender waits for the answer (ack, receipt ack, directory
    /// answer, cosignature) after its request is complete. The receiver
    /// persists and fsyncs before acking, so leave room for a slow disk.
    pub response_timeout: Duration,
    /// Frames per second one peer may make us process (all its streams
    /// together); above it we stop reading and flow control slows the peer.
    /// 16,384 frames/s is about 5,400 small envelopes/s (three frames
    /// each) or 1 GiB/s of 64 KiB chunks.
    pub frames_per_second: u32,
    /// Frames a peer may send at once before the rate applies.
    pub frame_burst: u32,
    /// First re-dial delay after a failure or a lost link.
    pub redial_base: Duration,
    /// Longest re-dial delay: a peer that comes back is reached within this
    /// (plus jitter). Each attempt costs one handshake; 5 s is no busy loop.
    pub redial_max: Duration,
    /// How long the current connection may take to answer a ping when the
    /// peer opens a second one (see `policy::resolve_duplicate`).
    pub probe_timeout: Duration,
    /// Inbound handshakes in progress at once; more are refused at once.
    pub max_handshakes: usize,
    /// Capacity of the link-event broadcast channel; a subscriber that
    /// falls further behind gets `RecvError::Lagged`.
    pub event_capacity: usize,
    /// On `close`, how long in-flight inbound streams may take to finish.
    pub close_grace: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            max_frame: focal_proto::frame::DEFAULT_MAX_FRAME,
            chunk_size: MAX_CHUNK,
            max_inbound_streams: 32,
            stream_receive_window: 2 * 1024 * 1024,
            receive_window: 8 * 1024 * 1024,
            send_window: 8 * 1024 * 1024,
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
            frames_per_second: 16_384,
            frame_burst: 32_768,
            redial_base: Duration::from_millis(200),
            redial_max: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            max_handshakes: 64,
            event_capacity: 1024,
            close_grace: Duration::from_secs(5),
        }
    }
}

/// Largest payload chunk on the wire (64 KiB).
pub const MAX_CHUNK: usize = 64 * 1024;

impl Tuning {
    /// Checks the values are usable; the error names the field.
    pub fn validate(&self) -> Result<(), FederationError> {
        let bad = |field: &str, why: &str| Err(FederationError::Config(format!("tuning.{field}: {why}")));
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK {
            return bad("chunk_size", "must be 1..=65536");
        }
        if self.max_frame < self.chunk_size + 64 {
            return bad("max_frame", "must exceed chunk_size by at least 64 bytes");
        }
        if self.max_inbound_streams == 0 {
            return bad("max_inbound_streams", "must be at least 1");
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad("keep_alive", "must be non-zero and shorter than idle_timeout");
        }
        if quinn::IdleTimeout::try_from(self.idle_timeout).is_err() {
            return bad("idle_timeout", "out of range");
        }
        if self.frames_per_second == 0 || self.frame_burst == 0 {
            return bad("frames_per_second", "rate and burst must be at least 1");
        }
        if self.redial_base.is_zero() {
            return bad("redial_base", "must be non-zero");
        }
        if self.max_handshakes == 0 || self.event_capacity == 0 {
            return bad("max_handshakes", "max_handshakes and event_capacity must be at least 1");
        }
        Ok(())
    }

    /// The quinn transport config both directions use.
    pub fn transport_config(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_inbound_streams))
            // Requests use bidirectional streams; unidirectional ones
            // carry link reports only (see reports.rs).
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(super::reports::MAX_REPORT_STREAMS))
            .stream_receive_window(quinn::VarInt::from_u32(self.stream_receive_window))
            .receive_window(quinn::VarInt::from_u32(self.receive_window))
            .send_window(self.send_window)
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(quinn::IdleTimeout::try_from(self.idle_timeout).expect("validated")))
            // No datagrams: nothing may bypass the frame limits.
            .datagram_receive_buffer_size(None);
        t
    }
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> FederationError {
    FederationError::Tls(format!("{what}: {e}"))
}

/// Server side of the federation endpoint: relay certificates of any network
/// in the trust bundle may complete the handshake; mapping to a configured
/// peer happens after it (so that an unconfigured relay can be told why).
pub fn server_config(
    creds: &Credentials,
    trust: SharedTrust,
    tuning: &Tuning,
) -> Result<quinn::ServerConfig, FederationError> {
    let policy = ClientPolicy { roles: vec![Role::Relay], networks: None };
    let tls = focal_certs::server_config(creds, trust, focal_certs::ALPN_FEDERATION, policy)
        .map_err(|e| tls_err("federation server TLS config", e))?;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| tls_err("federation server QUIC config", e))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(tuning.transport_config()));
    // A relay's address is configuration: no need to follow migrations.
    cfg.migration(false);
    Ok(cfg)
}

/// Client side towards one peer: its certificate must be a relay of
/// `network`, valid for the host name dialled.
pub fn client_config(
    creds: &Credentials,
    trust: SharedTrust,
    network: &NetworkId,
    tuning: &Tuning,
) -> Result<quinn::ClientConfig, FederationError> {
    let expected = ExpectedServer { network: network.clone(), role: Role::Relay };
    let tls = focal_certs::client_config(creds, trust, focal_certs::ALPN_FEDERATION, expected)
        .map_err(|e| tls_err("federation client TLS config", e))?;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| tls_err("federation client QUIC config", e))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(tuning.transport_config()));
    Ok(cfg)
}
