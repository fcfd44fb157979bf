//! Token buckets: one per container, one for the node. A crash-looping container spends its own
//! bucket; a node where everything dies at once spends the global one.
//!
//! The limiter also knows which keys have work waiting ([`Limiter::want`]) and answers "when
//! can the first of them go" ([`Limiter::next_ready`]) from a heap of per-key ready instants,
//! in O(log n) amortized rather than a scan of every key: the poster asks after each request.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
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

    /// From when the bucket holds a token if nothing takes one: a function of its state
    /// alone (not of "now"), so that it can be compared with what was computed earlier.
    /// Refilling keeps it (up to rounding) or, capped at the burst, moves it later; taking a
    /// token moves it later. Only removing the bucket makes it earlier.
    fn ready_at(&self, rate: Rate) -> Instant {
        if self.tokens >= 1.0 {
            return self.updated;
        }
        // Past any representable instant is as good as never; the earlier fallback is still
        // a lower bound, which is all the ready heap needs.
        self.updated
            .checked_add(rate.interval.mul_f64(1.0 - self.tokens))
            .unwrap_or(self.updated)
    }
}

#[derive(Debug)]
pub struct Limiter<K> {
    per_key: Rate,
    global_rate: Rate,
    global: Bucket,
    buckets: HashMap<K, Bucket>,
    max_keys: usize,
    /// Keys with work waiting, and how many pieces each (series, for the Event poster).
    wanted: HashMap<K, u32>,
    /// For every wanted key at least one entry no later than its bucket's ready instant
    /// (`None`: no bucket, so a full one). Entries go stale as buckets are spent; a stale
    /// entry is corrected, or dropped if its key is no longer wanted, when it reaches the top.
    ready: ReadyHeap<K>,
}

/// The ready heap is rebuilt from `wanted` when stale entries outnumber live ones by this
/// factor (plus a constant), so that it stays bounded by the work waiting.
const READY_HEAP_SLACK: usize = 2;

impl<K: Hash + Eq + Clone> Limiter<K> {
    #[must_use]
    pub fn new(per_key: Rate, global: Rate, max_keys: usize, now: Instant) -> Self {
        Self {
            per_key,
            global_rate: global,
            global: Bucket::full(global, now),
            buckets: HashMap::new(),
            max_keys: max_keys.max(1),
            wanted: HashMap::new(),
            ready: ReadyHeap::default(),
        }
    }

    /// `key` has one more piece of work waiting for a token.
    pub fn want(&mut self, key: &K) {
        let count = self.wanted.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.ready.push(self.ready_at(key), key.clone());
            self.bound_ready();
        }
    }

    /// One piece of `key`'s work is done (or given up).
    pub fn unwant(&mut self, key: &K) {
        if let Some(count) = self.wanted.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.wanted.remove(key);
            }
        }
    }

    /// When the first wanted key could acquire: `now` plus its [`Self::wait`], the same as
    /// the least of `now + wait(key)` over every wanted key; `None` when none is wanted.
    pub fn next_ready(&mut self, now: Instant) -> Option<Instant> {
        loop {
            let ReadyEntry { at, key, .. } = self.ready.peek()?;
            if !self.wanted.contains_key(key) {
                self.ready.pop();
                continue;
            }
            let exact = self.ready_at(key);
            if exact == *at {
                // Every other entry is no earlier than this one, and no later than its key's
                // own ready instant: this key is the first to be ready.
                return Some(now + self.wait(key, now));
            }
            if let Some(ReadyEntry { key, .. }) = self.ready.pop() {
                self.ready.push(exact, key);
            }
        }
    }

    /// Entries in the ready heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    fn ready_at(&self, key: &K) -> Option<Instant> {
        self.buckets.get(key).map(|b| b.ready_at(self.per_key))
    }

    fn bound_ready(&mut self) {
        if self.ready.len() <= READY_HEAP_SLACK * self.wanted.len() + 64 {
            return;
        }
        let mut ready = ReadyHeap::default();
        for key in self.wanted.keys() {
            ready.push(self.ready_at(key), key.clone());
        }
        self.ready = ready;
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
        let (wanted, ready) = (&self.wanted, &mut self.ready);
        // A wanted key losing its bucket is ready at once: its entry must say so.
        let mut evicted = |key: &K| {
            if wanted.contains_key(key) {
                ready.push(None, key.clone());
            }
        };
        self.buckets.retain(|key, b| {
            let mut b = *b;
            b.refill(per_key, now);
            let keep = !b.is_full(per_key);
            if !keep {
                evicted(key);
            }
            keep
        });
        if self.buckets.len() >= self.max_keys
            && let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone())
        {
            self.buckets.remove(&oldest);
            evicted(&oldest);
        }
        self.bound_ready();
    }
}

/// Keys by when their buckets are ready, earliest first; ties in the order pushed (cheaper
/// to compare than the keys, and keys need no order).
struct ReadyHeap<K> {
    heap: BinaryHeap<Reverse<ReadyEntry<K>>>,
    pushed: u64,
}

impl<K> Default for ReadyHeap<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            pushed: 0,
        }
    }
}

impl<K> std::fmt::Debug for ReadyHeap<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyHeap")
            .field("len", &self.heap.len())
            .finish_non_exhaustive()
    }
}

impl<K> ReadyHeap<K> {
    fn push(&mut self, at: Option<Instant>, key: K) {
        self.pushed += 1;
        self.heap.push(Reverse(ReadyEntry {
            at,
            order: self.pushed,
            key,
        }));
    }

    fn peek(&self) -> Option<&ReadyEntry<K>> {
        self.heap.peek().map(|Reverse(entry)| entry)
    }

    fn pop(&mut self) -> Option<ReadyEntry<K>> {
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

struct ReadyEntry<K> {
    /// `None`: no bucket, ready now.
    at: Option<Instant>,
    order: u64,
    key: K,
}

impl<K> PartialEq for ReadyEntry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for ReadyEntry<K> {}

impl<K> PartialOrd for ReadyEntry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for ReadyEntry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
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
