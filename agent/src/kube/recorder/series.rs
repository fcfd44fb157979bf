//! Which Event request each death turns into. Deaths of one container with one verdict form a
//! series: the first creates an Event, later ones raise its `series.count` (the note of an
//! events.k8s.io/v1 Event is immutable, so a series keeps its first note). Requests are rate
//! limited per container and per node; what is held back stays counted in the series and
//! reaches the API server with its next request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;

use super::ratelimit::{Limiter, Rate};

/// One death, ready for the Event.
#[derive(Clone, Debug, PartialEq)]
pub struct Death {
    pub regarding: ObjectReference,
    pub pod_uid: String,
    /// The container's name (or id when the name is unknown).
    pub container: String,
    pub reason: &'static str,
    pub warning: bool,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub pod_uid: String,
    pub container: String,
    pub reason: &'static str,
}

type BucketKey = (String, String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub namespace: String,
    pub name: String,
    /// Deaths the Event on the server accounts for.
    pub count: u32,
    synced: Instant,
}

#[derive(Debug)]
struct Series {
    latest: Death,
    posted: Option<Posted>,
    /// Deaths not on the server yet.
    unreported: u32,
    last_seen: Instant,
}

/// A request to make for a series.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A new Event standing for `count` deaths (`latest` is the newest).
    Create {
        key: SeriesKey,
        latest: Box<Death>,
        count: u32,
    },
    /// Raise the series count of an Event already posted.
    Patch {
        key: SeriesKey,
        namespace: String,
        name: String,
        count: u32,
    },
}

/// How a request went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created {
        namespace: String,
        name: String,
    },
    Patched,
    /// The Event to patch is gone (the API server expires Events): start a new one.
    Gone,
    Failed,
}

#[derive(Debug)]
pub struct SeriesBook {
    series: HashMap<SeriesKey, Series>,
    limiter: Limiter<BucketKey>,
    window: Duration,
    max_series: usize,
}

/// Deaths that will never reach the API server, from [`SeriesBook::settle`] or eviction.
pub type Lost = u64;

impl SeriesBook {
    #[must_use]
    pub fn new(
        per_container: Rate,
        global: Rate,
        window: Duration,
        max_series: usize,
        now: Instant,
    ) -> Self {
        Self {
            series: HashMap::new(),
            limiter: Limiter::new(per_container, global, max_series, now),
            window,
            max_series: max_series.max(1),
        }
    }

    /// Books a death; returns the deaths lost to make room (series held back and evicted).
    pub fn record(&mut self, death: Death, now: Instant) -> (SeriesKey, Lost) {
        let key = SeriesKey {
            pod_uid: death.pod_uid.clone(),
            container: death.container.clone(),
            reason: death.reason,
        };
        let lost = if self.series.contains_key(&key) {
            0
        } else {
            self.make_room(now)
        };
        let window = self.window;
        let series = self.series.entry(key.clone()).or_insert_with(|| Series {
            latest: death.clone(),
            posted: None,
            unreported: 0,
            last_seen: now,
        });
        if series
            .posted
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.synced) >= window)
        {
            series.posted = None;
        }
        series.latest = death;
        series.unreported += 1;
        series.last_seen = now;
        if series.unreported == 1 {
            self.limiter.want(&bucket_of(&key));
        }
        (key, lost)
    }

    /// The request for `key` if it has deaths to report and a token.
    pub fn request_for(&mut self, key: &SeriesKey, now: Instant) -> Option<Request> {
        let series = self.series.get(key).filter(|s| s.unreported > 0)?;
        if !self.limiter.try_acquire(&bucket_of(key), now) {
            return None;
        }
        Some(Self::request(key, series))
    }

    /// Requests for every series with deaths held back, as far as tokens go (oldest first).
    pub fn due(&mut self, now: Instant) -> Vec<Request> {
        let mut pending: Vec<(Instant, SeriesKey)> = self
            .series
            .iter()
            .filter(|(_, s)| s.unreported > 0)
            .map(|(k, s)| (s.last_seen, k.clone()))
            .collect();
        pending.sort_by_key(|(at, _)| *at);
        pending
            .into_iter()
            .filter_map(|(_, key)| self.request_for(&key, now))
            .collect()
    }

    /// When the next held-back death could go out; `None` when nothing is held back.
    /// O(log n) amortized: the limiter keeps the containers with deaths held back in a heap
    /// of when their buckets refill.
    pub fn next_due(&mut self, now: Instant) -> Option<Instant> {
        self.limiter.next_ready(now)
    }

    /// Records how a request went; a `Gone` series asks for a create right away (no new
    /// token: it is the same report).
    pub fn settle(
        &mut self,
        request: &Request,
        outcome: Outcome,
        now: Instant,
    ) -> (Lost, Option<Request>) {
        let key = match request {
            Request::Create { key, .. } | Request::Patch { key, .. } => key,
        };
        let Some(series) = self.series.get_mut(key) else {
            return (0, None);
        };
        let held_back = series.unreported > 0;
        let settled = Self::settle_series(key, series, request, outcome, now);
        if held_back && series.unreported == 0 {
            self.limiter.unwant(&bucket_of(key));
        }
        settled
    }

    fn settle_series(
        key: &SeriesKey,
        series: &mut Series,
        request: &Request,
        outcome: Outcome,
        now: Instant,
    ) -> (Lost, Option<Request>) {
        let sent = match request {
            Request::Create { count, .. } => *count,
            Request::Patch { count, .. } => {
                count - series.posted.as_ref().map_or(0, |p| p.count.min(*count))
            }
        };
        match outcome {
            Outcome::Created { namespace, name } => {
                series.unreported -= sent.min(series.unreported);
                series.posted = Some(Posted {
                    namespace,
                    name,
                    count: sent,
                    synced: now,
                });
                (0, None)
            }
            Outcome::Patched => {
                series.unreported -= sent.min(series.unreported);
                if let Some(p) = &mut series.posted {
                    p.count += sent;
                    p.synced = now;
                }
                (0, None)
            }
            Outcome::Gone => {
                series.posted = None;
                (0, Some(Self::request(key, series)))
            }
            Outcome::Failed => {
                series.unreported -= sent.min(series.unreported);
                (u64::from(sent), None)
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.series.len()
    }

    fn request(key: &SeriesKey, series: &Series) -> Request {
        match &series.posted {
            Some(p) => Request::Patch {
                key: key.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                count: p.count + series.unreported,
            },
            None => Request::Create {
                key: key.clone(),
                latest: Box::new(series.latest.clone()),
                count: series.unreported,
            },
        }
    }

    /// Series with nothing held back and no live Event go first, then the one seen longest
    /// ago (its held-back deaths are lost).
    fn make_room(&mut self, now: Instant) -> Lost {
        if self.series.len() < self.max_series {
            return 0;
        }
        let window = self.window;
        self.series.retain(|_, s| {
            s.unreported > 0
                || s.posted
                    .as_ref()
                    .is_some_and(|p| now.saturating_duration_since(p.synced) < window)
        });
        if self.series.len() < self.max_series {
            return 0;
        }
        let oldest = self
            .series
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| k.clone());
        let Some((key, evicted)) = oldest.and_then(|k| self.series.remove_entry(&k)) else {
            return 0;
        };
        if evicted.unreported > 0 {
            self.limiter.unwant(&bucket_of(&key));
        }
        u64::from(evicted.unreported)
    }
}

/// The rate limit bucket of a series: its container's.
fn bucket_of(key: &SeriesKey) -> BucketKey {
    (key.pod_uid.clone(), key.container.clone())
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
