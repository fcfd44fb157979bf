//! Token buckets: one per container, one for the node. A crash-looping container spends its own
//! bucket; a node where everything dies at once spends the global one.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// `burst` tokens, one more every `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub interval: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = now;
        let gained = if rate.interval.is_zero() {
            f64::INFINITY
        } else {
            elapsed.as_secs_f64() / rate.interval.as_secs_f64()
        };
        self.tokens = (self.tokens + gained).min(f64::from(rate.burst));
    }

    /// How long until one token is there (zero when it is).
    fn wait(&self, rate: Rate) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            rate.interval.mul_f64(1.0 - self.tokens)
        }
    }

    fn is_full(&self, rate: Rate) -> bool {
        self.tokens >= f64::from(rate.burst)
    }
}

#[derive(Debug)]
pub struct Limiter<K> {
    per_key: Rate,
    global_rate: Rate,
    global: Bucket,
    buckets: HashMap<K, Bucket>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    #[must_use]
    pub fn new(per_key: Rate, global: Rate, max_keys: usize, now: Instant) -> Self {
        Self {
            per_key,
            global_rate: global,
            global: Bucket::full(global, now),
            buckets: HashMap::new(),
            max_keys: max_keys.max(1),
        }
    }

    /// Takes a token from `key`'s bucket and the global one, or neither.
    pub fn try_acquire(&mut self, key: &K, now: Instant) -> bool {
        self.global.refill(self.global_rate, now);
        let per_key = self.per_key;
        if !self.buckets.contains_key(key) {
            self.make_room(now);
        }
        let bucket = self
            .buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(per_key, now));
        bucket.refill(per_key, now);
        if bucket.tokens < 1.0 || self.global.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        self.global.tokens -= 1.0;
        true
    }

    /// How long until `key` could acquire (zero when it can now).
    #[must_use]
    pub fn wait(&self, key: &K, now: Instant) -> Duration {
        let mut global = self.global;
        global.refill(self.global_rate, now);
        let own = self.buckets.get(key).map_or(Duration::ZERO, |b| {
            let mut b = *b;
            b.refill(self.per_key, now);
            b.wait(self.per_key)
        });
        own.max(global.wait(self.global_rate))
    }

    /// A full bucket is the same as none: those go first. Failing that, the one idle longest
    /// (its container gets a fresh burst, the global bucket still holds).
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.max_keys {
            return;
        }
        let per_key = self.per_key;
        self.buckets.retain(|_, b| {
            let mut b = *b;
            b.refill(per_key, now);
            !b.is_full(per_key)
        });
        if self.buckets.len() >= self.max_keys
            && let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone())
        {
            self.buckets.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn limiter(now: Instant) -> Limiter<&'static str> {
        Limiter::new(
            Rate {
                burst: 3,
                interval: 10 * SEC,
            },
            Rate {
                burst: 5,
                interval: SEC,
            },
            2,
            now,
        )
    }

    #[test]
    fn a_key_gets_its_burst_then_one_per_interval() {
        let t = Instant::now();
        let mut l = limiter(t);
        assert!((0..3).all(|_| l.try_acquire(&"a", t)));
        assert!(!l.try_acquire(&"a", t));
        assert_eq!(l.wait(&"a", t), 10 * SEC);
        assert!(!l.try_acquire(&"a", t + 9 * SEC));
        assert!(l.try_acquire(&"a", t + 10 * SEC));
        assert!(!l.try_acquire(&"a", t + 10 * SEC));
    }

    #[test]
    fn the_global_cap_holds_across_keys() {
        let t = Instant::now();
        let mut l = limiter(t);
        assert!((0..3).all(|_| l.try_acquire(&"a", t)));
        assert!(l.try_acquire(&"b", t));
        assert!(l.try_acquire(&"b", t));
        assert!(!l.try_acquire(&"b", t), "global burst of 5 spent");
        assert_eq!(l.wait(&"b", t), SEC);
        assert!(l.try_acquire(&"b", t + SEC));
    }

    #[test]
    fn keys_are_bounded() {
        let t = Instant::now();
        let mut l = limiter(t);
        assert!(l.try_acquire(&"a", t));
        assert!(l.try_acquire(&"b", t + SEC));
        assert!(l.try_acquire(&"c", t + 2 * SEC));
        assert_eq!(l.buckets.len(), 2);
        assert!(!l.buckets.contains_key(&"a"), "the idlest went");
    }
}
