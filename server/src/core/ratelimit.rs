//! Token buckets driven by the caller's clock, and a keyed limiter (one
//! bucket per sender or per peer).
//!
//! A bucket rated `per_minute` holds at most `per_minute` tokens (a burst of
//! one minute's allowance) and refills continuously. Arithmetic is exact
//! integers: one token is 60 000 units and a bucket gains `per_minute` units
//! per millisecond. A clock that steps backwards refills nothing.
//!
//! The keyed limiter forgets buckets that have refilled completely
//! ([`RateLimiter::prune`]), since a full bucket is the same as no bucket, so
//! memory follows the number of recently active keys, bounded by
//! `max_keys` (beyond it, new keys are refused until pruning frees room).

use std::collections::BTreeMap;

const UNITS_PER_TOKEN: u64 = 60_000;

/// One token bucket.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_minute: u32,
    units: u64,
    last_ms: i64,
}

impl TokenBucket {
    /// A full bucket allowing `per_minute` takes per minute.
    pub fn new(per_minute: u32, now_ms: i64) -> Self {
        TokenBucket { per_minute, units: Self::capacity(per_minute), last_ms: now_ms }
    }

    fn capacity(per_minute: u32) -> u64 {
        u64::from(per_minute) * UNITS_PER_TOKEN
    }

    fn refill(&mut self, now_ms: i64) {
        let elapsed = (now_ms - self.last_ms).max(0) as u64;
        let cap = Self::capacity(self.per_minute);
        self.units = self.units.saturating_add(elapsed.saturating_mul(u64::from(self.per_minute))).min(cap);
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
        }
    }

    /// Takes one token, or says how many ms until one is available.
    pub fn try_take(&mut self, now_ms: i64) -> Result<(), i64> {
        self.refill(now_ms);
        if self.units >= UNITS_PER_TOKEN {
            self.units -= UNITS_PER_TOKEN;
            Ok(())
        } else if self.per_minute == 0 {
            Err(i64::MAX)
        } else {
            let missing = UNITS_PER_TOKEN - self.units;
            Err(missing.div_ceil(u64::from(self.per_minute)) as i64)
        }
    }

    /// True when the bucket is full at `now_ms` (indistinguishable from new).
    pub fn is_full(&mut self, now_ms: i64) -> bool {
        self.refill(now_ms);
        self.units >= Self::capacity(self.per_minute)
    }
}

/// Buckets per key. `per_minute == 0` means unlimited.
#[derive(Clone, Debug)]
pub struct RateLimiter<K: Ord + Clone> {
    per_minute: u32,
    max_keys: usize,
    buckets: BTreeMap<K, TokenBucket>,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// A limiter of `per_minute` per key (0 = unlimited), tracking at most
    /// `max_keys` keys at once.
    pub fn new(per_minute: u32, max_keys: usize) -> Self {
        RateLimiter { per_minute, max_keys, buckets: BTreeMap::new() }
    }

    /// Takes a token for `key`; on refusal returns ms until one is available.
    pub fn try_take(&mut self, key: &K, now_ms: i64) -> Result<(), i64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= self.max_keys {
                self.prune(now_ms);
            }
            if self.buckets.len() >= self.max_keys {
                return Err(1_000);
            }
            self.buckets.insert(key.clone(), TokenBucket::new(self.per_minute, now_ms));
        }
        self.buckets.get_mut(key).map_or(Ok(()), |b| b.try_take(now_ms))
    }

    /// Forgets buckets that are full again.
    pub fn prune(&mut self, now_ms: i64) {
        self.buckets.retain(|_, b| !b.is_full(now_ms));
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_minute_of_burst_then_refills() {
        let mut b = TokenBucket::new(60, 0);
        for _ in 0..60 {
            b.try_take(0).unwrap();
        }
        assert_eq!(b.try_take(0), Err(1_000), "one token per second at 60/min");
        assert_eq!(b.try_take(999), Err(1));
        b.try_take(1_000).unwrap();
        assert!(b.try_take(1_000).is_err());
        assert!(b.try_take(500).is_err(), "clock going back refills nothing");
        assert!(!b.is_full(30_000));
        assert!(b.is_full(61_000));
    }

    #[test]
    fn limiter_is_per_key_and_prunes() {
        let mut l = RateLimiter::new(2, 2);
        l.try_take(&"a", 0).unwrap();
        l.try_take(&"a", 0).unwrap();
        assert!(l.try_take(&"a", 0).is_err());
        l.try_take(&"b", 0).unwrap();
        assert!(l.try_take(&"c", 0).is_err(), "key table full");
        assert!(l.try_take(&"c", 60_000).is_ok(), "pruned full buckets make room");
        assert_eq!(l.len(), 1);
        let mut unlimited = RateLimiter::new(0, 0);
        assert!((0..1000).all(|_| unlimited.try_take(&1, 0).is_ok()));
        assert!(unlimited.is_empty());
    }
}
