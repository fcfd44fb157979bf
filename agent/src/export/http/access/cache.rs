//! The answers of the API server, kept briefly: a scrape every 15 s or a person's few requests
//! would otherwise cost two reviews each. Bounded (the least recently used answer makes room),
//! each answer with its own expiry; errors are never kept.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

pub struct TtlCache<K: Hash + Eq, V: Clone> {
    entries: Mutex<LruCache<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The answer kept for `key`, unless it expired by `now` (it is then forgotten).
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some((expires, value)) if *expires > now => Some(value.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: K, value: V, now: Instant, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(key, (now + ttl, value));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_lives_for_its_ttl_only() {
        let cache = TtlCache::new(4);
        let t0 = Instant::now();
        cache.put("a", 1, t0, Duration::from_secs(10));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(9)), Some(1));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(10)), None);
        assert_eq!(cache.len(), 0, "an expired answer is forgotten when met");
    }

    #[test]
    fn the_least_recently_used_answer_makes_room() {
        let cache = TtlCache::new(2);
        let t0 = Instant::now();
        let ttl = Duration::from_mins(1);
        cache.put("a", 1, t0, ttl);
        cache.put("b", 2, t0, ttl);
        assert_eq!(cache.get(&"a", t0), Some(1));
        cache.put("c", 3, t0, ttl);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"b", t0), None, "b was the least recently used");
        assert_eq!(cache.get(&"a", t0), Some(1));
        assert_eq!(cache.get(&"c", t0), Some(3));
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = TtlCache::new(2);
        cache.put("a", 1, Instant::now(), Duration::ZERO);
        assert_eq!(cache.len(), 0);
    }
}
