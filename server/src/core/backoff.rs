//! Exponential backoff with jitter, and the small seeded RNG that drives the
//! jitter.
//!
//! Delays start at [`BackoffConfig::initial_ms`] (1 s) and double on each
//! consecutive failure up to [`BackoffConfig::max_ms`] (60 s). Jitter takes
//! up to `jitter_permille` thousandths OFF the nominal delay, so a delay is
//! never above the cap and never below `(1 - jitter) * nominal`; relays that
//! lost the same peer at the same moment therefore do not redial in lockstep.
//! [`Backoff::reset`] goes back to the first step: the outbox calls it as soon
//! as the peer reconnects or sends anything, so a peer that comes back after
//! a long outage is served at once instead of after the next long timer.
//!
//! The RNG is injected (a seed), so tests and the simulator are
//! deterministic; the driver seeds it from anything unpredictable enough for
//! spreading redials (not for cryptography).

/// Backoff parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// First delay after a failure (ms).
    pub initial_ms: i64,
    /// Cap on the delay (ms).
    pub max_ms: i64,
    /// Largest share of the nominal delay taken off at random, in
    /// thousandths (200 = up to 20 % shorter). 0 disables jitter.
    pub jitter_permille: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { initial_ms: 1_000, max_ms: 60_000, jitter_permille: 200 }
    }
}

/// SplitMix64: a tiny, fast, seedable generator (not cryptographic).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64 }
    }

    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u32) -> bool {
        self.below(1000) < u64::from(permille)
    }
}

/// Derives an independent seed for `label` from `seed` (e.g. one per peer).
pub fn derive_seed(seed: u64, label: &str) -> u64 {
    // FNV-1a over the label, mixed with the seed through SplitMix64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    SplitMix64::new(seed ^ h).next_u64()
}

/// Backoff state: how many consecutive failures, and the jitter RNG.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// Fresh state (next delay is the initial one).
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Backoff { config, failures: 0, rng: SplitMix64::new(seed) }
    }

    /// Nominal (jitter-free) delay of the next failure.
    pub fn nominal_ms(&self) -> i64 {
        let initial = self.config.initial_ms.max(1);
        let max = self.config.max_ms.max(initial);
        let shift = self.failures.min(62);
        initial.checked_mul(1_i64 << shift).map_or(max, |d| d.min(max))
    }

    /// Records a failure and returns the delay to wait before the next
    /// attempt (nominal minus jitter).
    pub fn next_delay_ms(&mut self) -> i64 {
        let nominal = self.nominal_ms();
        let spread = nominal as u64 * u64::from(self.config.jitter_permille.min(1000)) / 1000;
        let delay = nominal - self.rng.below(spread + 1) as i64;
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the first step.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_and_caps_at_sixty() {
        let mut b = Backoff::new(BackoffConfig { jitter_permille: 0, ..BackoffConfig::default() }, 7);
        let got: Vec<i64> = (0..9).map(|_| b.next_delay_ms()).collect();
        assert_eq!(got, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
        for _ in 0..100 {
            b.next_delay_ms();
        }
        assert_eq!(b.next_delay_ms(), 60_000, "no overflow after many failures");
        b.reset();
        assert_eq!(b.next_delay_ms(), 1_000);
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_seeded() {
        let cfg = BackoffConfig::default();
        let mut a = Backoff::new(cfg, 42);
        let mut b = Backoff::new(cfg, 42);
        let mut c = Backoff::new(cfg, 43);
        let (mut same, mut differs) = (true, false);
        for _ in 0..12 {
            let nominal = a.nominal_ms();
            let (da, db, dc) = (a.next_delay_ms(), b.next_delay_ms(), c.next_delay_ms());
            assert!(da <= nominal && da >= nominal * 8 / 10, "{da} vs {nominal}");
            same &= da == db;
            differs |= da != dc;
        }
        assert!(same, "same seed, same delays");
        assert!(differs, "another seed, other delays");
    }

    #[test]
    fn rng_helpers() {
        let mut r = SplitMix64::new(1);
        assert_eq!(r.below(0), 0);
        assert!((0..1000).all(|_| r.below(10) < 10));
        let hits = (0..10_000).filter(|_| r.chance(300)).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert_ne!(derive_seed(1, "relay.gfp"), derive_seed(1, "relay.carin"));
    }
}
