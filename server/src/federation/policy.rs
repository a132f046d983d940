//! Federation decisions that need no socket: hello validation, which of two
//! connections to the same peer survives, re-dial backoff, the per-peer frame
//! rate limiter and peer-address parsing. Everything takes `now` (or a seed)
//! as an argument so the unit tests below drive it directly.

use std::time::{Duration, Instant};

use focal_proto::{Identity, pb};

/// Protocol version spoken by this code (`Hello.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Checks a hello received on a link against the peer's verified
/// certificate identity: protocol version 1, `relay` equal to the
/// certificate's name, and `networks` equal to exactly the certificate's
/// network (a relay serves one network; its CA can only vouch for that one).
/// The error names what was wrong; it becomes the close reason.
pub fn check_hello(hello: &pb::Hello, cert: &Identity) -> Result<(), String> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "hello protocol_version {} is not supported (expected {PROTOCOL_VERSION})",
            hello.protocol_version
        ));
    }
    if hello.relay != cert.name {
        return Err(format!(
            "hello relay {:?} does not match the certificate name {:?}",
            hello.relay, cert.name
        ));
    }
    if hello.networks.len() != 1 || hello.networks[0] != cert.network.as_str() {
        return Err(format!(
            "hello announces networks {:?} but the certificate is of network {:?} only",
            hello.networks,
            cert.network.as_str()
        ));
    }
    Ok(())
}

/// The key by which relays are ordered for the duplicate-connection rule:
/// relay name first, then network (names may repeat across networks).
pub fn relay_order_key(identity: &Identity) -> (&str, &str) {
    (identity.name.as_str(), identity.network.as_str())
}

/// True if, between `me` and `peer`, the connection that `me` dials is the
/// one both sides keep when each has dialled the other.
pub fn my_dial_wins(me: &Identity, peer: &Identity) -> bool {
    relay_order_key(me) < relay_order_key(peer)
}

/// What to do when a connection to a peer completes its hello while another
/// connection to the same peer is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Close the current connection and adopt the new one.
    ReplaceCurrent,
    /// Keep the current connection if it still answers a probe (then close
    /// the new one); if it does not, it is stale: replace it.
    KeepCurrentIfAlive,
}

/// The duplicate-connection rule (both sides compute the same answer):
///
/// 1. Two connections dialled by the same side: the newer wins. A relay only
///    dials when it holds no connection, so a second dial from the same side
///    means that side has lost the first one (restart, timeout).
/// 2. One dialled by each side (simultaneous dial): the connection dialled by
///    the relay with the smaller `(name, network)` wins. If the winner is the
///    current connection it must still answer a ping; otherwise the peer has
///    restarted and the current connection is stale, so the new one wins.
pub fn resolve_duplicate(
    current_dialled_by_me: bool,
    candidate_dialled_by_me: bool,
    my_dial_wins: bool,
) -> Resolution {
    if current_dialled_by_me == candidate_dialled_by_me {
        return Resolution::ReplaceCurrent;
    }
    let candidate_wins = candidate_dialled_by_me == my_dial_wins;
    if candidate_wins { Resolution::ReplaceCurrent } else { Resolution::KeepCurrentIfAlive }
}

/// Capped exponential backoff for re-dialling a peer, with ±25 % jitter so
/// that relays restarted together do not dial in lockstep. `reset` after a
/// link comes up.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, doubles per failure, never exceeds `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max: max.max(base), attempt: 0 }
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Forgets past failures (the next delay is `base` again).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt; `jitter` is any random value.
    pub fn next_delay(&mut self, jitter: u64) -> Duration {
        let exp = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        // Scale by a factor in [0.75, 1.25), then cap again.
        let factor = 0.75 + (jitter % 1000) as f64 / 2000.0;
        raw.mul_f64(factor).min(self.max)
    }
}

/// Token bucket limiting the frames a peer may make this relay process.
/// A frame always takes a token; when the bucket is empty the caller is told
/// how long to wait (the reader then stops reading the stream, and QUIC flow
/// control pushes the wait back to the sender).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `per_second` sustained, `burst` at once; starts full.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let rate = f64::from(per_second.max(1));
        let burst = f64::from(burst.max(1));
        TokenBucket { rate, burst, tokens: burst, last: now }
    }

    /// Takes one token; returns how long the caller must wait before acting
    /// on the frame (zero when a token was available).
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.rate) }
    }
}

/// Splits a peer address `host:port` (`[v6]:port` for IPv6 literals) into
/// the host (also the TLS server name) and the port.
pub fn split_host_port(address: &str) -> Result<(String, u16), String> {
    if let Ok(sa) = address.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("peer address {address:?} has no ':port'"));
    };
    if host.is_empty() || host.contains(':') || host.contains('[') {
        return Err(format!("peer address {address:?}: expected host:port or [ipv6]:port"));
    }
    let port: u16 =
        port.parse().map_err(|_| format!("peer address {address:?}: port {port:?} is not a number"))?;
    if port == 0 {
        return Err(format!("peer address {address:?}: port 0"));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use focal_proto::{NetworkId, Role};

    fn relay(net: &str, name: &str) -> Identity {
        Identity::new(NetworkId::new(net).unwrap(), Role::Relay, name).unwrap()
    }

    fn hello(relay: &str, nets: &[&str]) -> pb::Hello {
        pb::Hello {
            protocol_version: 1,
            relay: relay.into(),
            networks: nets.iter().map(|s| s.to_string()).collect(),
            log_origin: "o".into(),
            log_key: vec![],
            witness_key: vec![],
        }
    }

    #[test]
    fn hello_must_match_certificate() {
        let id = relay("carin", "relay-carin");
        assert!(check_hello(&hello("relay-carin", &["carin"]), &id).is_ok());
        let e = check_hello(&hello("relay-carin", &["arinsa"]), &id).unwrap_err();
        assert!(e.contains("arinsa") && e.contains("carin"), "{e}");
        assert!(check_hello(&hello("relay-carin", &["carin", "arinsa"]), &id).is_err());
        assert!(check_hello(&hello("relay-carin", &[]), &id).is_err());
        assert!(check_hello(&hello("relay-gfp", &["carin"]), &id).unwrap_err().contains("certificate name"));
        let mut h = hello("relay-carin", &["carin"]);
        h.protocol_version = 2;
        assert!(check_hello(&h, &id).unwrap_err().contains("protocol_version"));
    }

    #[test]
    fn duplicate_rule_converges_on_both_sides() {
        let carin = relay("carin", "relay-carin");
        let gfp = relay("gfp", "relay-gfp");
        assert!(my_dial_wins(&carin, &gfp));
        assert!(!my_dial_wins(&gfp, &carin));
        // Same name in two networks: the network breaks the tie.
        assert!(my_dial_wins(&relay("a", "relay"), &relay("b", "relay")));

        // Simultaneous dial: A = dialled by carin, B = dialled by gfp.
        // Whatever order each side sees them in, both keep A.
        // carin sees A first (current, by me), then B (candidate, by peer):
        assert_eq!(resolve_duplicate(true, false, true), Resolution::KeepCurrentIfAlive);
        // carin sees B first, then A:
        assert_eq!(resolve_duplicate(false, true, true), Resolution::ReplaceCurrent);
        // gfp sees A first (by peer), then B (by me):
        assert_eq!(resolve_duplicate(false, true, false), Resolution::KeepCurrentIfAlive);
        // gfp sees B first (by me), then A (by peer):
        assert_eq!(resolve_duplicate(true, false, false), Resolution::ReplaceCurrent);
        // Re-dial from the same side: newer wins.
        for wins in [true, false] {
            assert_eq!(resolve_duplicate(true, true, wins), Resolution::ReplaceCurrent);
            assert_eq!(resolve_duplicate(false, false, wins), Resolution::ReplaceCurrent);
        }
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mid = 500; // factor 1.0
        let d: Vec<_> = (0..8).map(|_| b.next_delay(mid)).collect();
        assert_eq!(d[0], Duration::from_millis(100));
        assert_eq!(d[1], Duration::from_millis(200));
        assert_eq!(d[4], Duration::from_millis(1600));
        assert!(d[5..].iter().all(|x| *x == Duration::from_secs(2)));
        assert_eq!(b.attempts(), 8);
        for j in [0, 999, 12345] {
            assert!(b.next_delay(j) <= Duration::from_secs(2));
        }
        b.reset();
        let first = b.next_delay(0);
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
    }

    #[test]
    fn token_bucket_limits_rate() {
        let t0 = Instant::now();
        let mut tb = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(tb.take(t0), Duration::ZERO);
        }
        // Sixth frame at the same instant waits one token's time (100 ms).
        let w = tb.take(t0);
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-9, "{w:?}");
        // The next one waits two tokens' time: waits accumulate.
        let w = tb.take(t0);
        assert!((w.as_secs_f64() - 0.2).abs() < 1e-9, "{w:?}");
        // A second later the debt is repaid and 8 tokens have accrued (capped at 5).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(tb.take(t1), Duration::ZERO);
        // Over a long flood, frames allowed ~= burst + rate * elapsed.
        let mut tb = TokenBucket::new(100, 10, t0);
        let mut allowed = 0;
        let mut t = t0;
        for _ in 0..10_000 {
            t += Duration::from_micros(100); // 10,000 frames/s offered
            if tb.take(t) == Duration::ZERO {
                allowed += 1;
            } else {
                tb = TokenBucket { tokens: tb.tokens + 1.0, ..tb }; // frame dropped, give token back
            }
        }
        assert!((100..=111).contains(&allowed), "{allowed}");
    }

    #[test]
    fn peer_addresses() {
        assert_eq!(split_host_port("127.0.0.1:7401").unwrap(), ("127.0.0.1".into(), 7401));
        assert_eq!(split_host_port("[::1]:7401").unwrap(), ("::1".into(), 7401));
        assert_eq!(split_host_port("relay.gfp.example:7401").unwrap(), ("relay.gfp.example".into(), 7401));
        assert!(split_host_port("relay.gfp.example").unwrap_err().contains("no ':port'"));
        assert!(split_host_port("relay:x").unwrap_err().contains("not a number"));
        assert!(split_host_port("::1:7401").is_err());
        assert!(split_host_port(":7401").is_err());
        assert!(split_host_port("h:0").is_err());
    }
}
