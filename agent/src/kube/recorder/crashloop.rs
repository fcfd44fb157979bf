//! Crash loops: one Warning Event per container whose init keeps dying, updated in place.
//!
//! A container is in a loop from the `min_deaths`-th death of its init (role `init`) within
//! `window` of each other (3 in 10 minutes by default; the kubelet's back-off reaches its
//! 5-minute cap after about 6 deaths, so a real loop always shows 3 in 10 minutes), until its
//! init has not died for `window`. While it lasts, every death of the container — its init's
//! and its children's — is told by the one loop Event instead of an Event of its own, and the
//! API server sees at most one write about the container per `interval` (one minute by
//! default), the loop's first write included: it waits for `interval` after the container's
//! last per-death Event.
//!
//! The loop Event is a core/v1 Event (`count`, `firstTimestamp`, `lastTimestamp`, `message`),
//! as the kubelet's own "Back-off restarting failed container" is: the API server's
//! `ValidateEventUpdate` (pkg/apis/core/validation/events.go) forbids changing the note of an
//! events.k8s.io/v1 Event, and applies only the legacy checks to a core/v1 update, so a
//! message that says "5×" where it said "3×" is an update only core/v1 accepts.
//!
//! The book is pure (instants are passed in): the poster asks it what to write and tells it
//! how each write went.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use time::OffsetDateTime;

use super::crashloop_line::{LoopCounts, LoopSample, loop_line};
use crate::record::Reason;

/// `reason` of the loop Event.
pub const LOOP_REASON: &str = "CrashLoop";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopOptions {
    /// Deaths of a container's init within this time of each other make a loop; a loop ends
    /// when its init has not died for this long.
    pub window: Duration,
    /// Deaths within the window that make a loop.
    pub min_deaths: u32,
    /// At most one API write per looping container per interval.
    pub interval: Duration,
    /// Containers followed at once.
    pub max_containers: usize,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            window: Duration::from_mins(10),
            min_deaths: 3,
            interval: Duration::from_mins(1),
            max_containers: 2048,
        }
    }
}

/// A container: its pod's uid and its name.
pub type ContainerKey = (String, String);

/// What becomes of a death.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// No loop: the death gets its own Event.
    PerDeath,
    /// The container is in a loop: its loop Event tells this death.
    Folded,
}

/// One write of a loop Event.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopWrite {
    pub key: ContainerKey,
    pub regarding: ObjectReference,
    /// The Event to update; `None`: create one.
    pub target: Option<(String, String)>,
    pub message: String,
    /// Deaths in the loop.
    pub count: u32,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
}

/// How a write went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoopOutcome {
    Created {
        namespace: String,
        name: String,
    },
    Updated,
    /// The Event is gone (expired): the next write creates one.
    Gone,
    Failed,
}

#[derive(Debug)]
struct Loop {
    first: OffsetDateTime,
    last: OffsetDateTime,
    total: u32,
    /// Deaths by verdict, with the latest one's detail.
    verdicts: Vec<(Reason, u32, String)>,
    latest: Reason,
    posted: Option<(String, String)>,
    /// Deaths the server's Event tells.
    on_server: u32,
    /// The latest deaths' uptimes (at most [`UPTIMES_KEPT`]); `None` once a death's was
    /// unknown: a median of some deaths only would not be the loop's.
    uptimes: Option<VecDeque<f64>>,
}

/// The median uptime is of the loop's latest deaths, this many at most.
const UPTIMES_KEPT: usize = 64;

impl Loop {
    fn add(&mut self, sample: LoopSample) {
        match (&mut self.uptimes, sample.uptime_seconds) {
            (Some(u), Some(up)) if up.is_finite() && up >= 0.0 => {
                if u.len() == UPTIMES_KEPT {
                    u.pop_front();
                }
                u.push_back(up);
            }
            _ => self.uptimes = None,
        }
        self.total += 1;
        self.first = self.first.min(sample.time);
        self.last = self.last.max(sample.time);
        self.latest = sample.verdict;
        match self
            .verdicts
            .iter_mut()
            .find(|(r, ..)| *r == sample.verdict)
        {
            Some(v) => {
                v.1 += 1;
                v.2 = sample.detail;
            }
            None => self.verdicts.push((sample.verdict, 1, sample.detail)),
        }
    }

    fn message(&self) -> String {
        let (verdict, count, detail) = self
            .verdicts
            .iter()
            .find(|(r, ..)| *r == self.latest)
            .map_or((self.latest, self.total, ""), |(r, n, d)| {
                (*r, *n, d.as_str())
            });
        let counts = LoopCounts {
            of_verdict: count,
            total: self.total,
            span: (self.last - self.first).unsigned_abs(),
            median_uptime: self.uptimes.as_ref().and_then(median),
        };
        loop_line(verdict, counts, detail)
    }

    fn dirty(&self) -> bool {
        self.posted.is_none() || self.on_server != self.total
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &VecDeque<f64>) -> Option<Duration> {
    let mut sorted: Vec<f64> = values.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let m = match n {
        0 => return None,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    };
    Duration::try_from_secs_f64(m).ok()
}

#[derive(Debug)]
struct Tracked {
    regarding: ObjectReference,
    /// Before a loop: the init's deaths within the window.
    recent: VecDeque<(Instant, LoopSample)>,
    looping: Option<Loop>,
    last_death: Instant,
    /// The last API write about this container, per-death Events included.
    last_write: Option<Instant>,
}

#[derive(Debug)]
pub struct LoopBook {
    options: LoopOptions,
    containers: HashMap<ContainerKey, Tracked>,
}

impl LoopBook {
    #[must_use]
    pub fn new(options: LoopOptions) -> Self {
        Self {
            options,
            containers: HashMap::new(),
        }
    }

    /// Books a death of the container; `sample` is `Some` for its init's death. Says whether
    /// the death still gets its own Event.
    pub fn death(
        &mut self,
        key: &ContainerKey,
        regarding: &ObjectReference,
        sample: Option<LoopSample>,
        now: Instant,
    ) -> Fold {
        let window = self.options.window;
        if let Some(t) = self.containers.get_mut(key)
            && now.saturating_duration_since(t.last_death) >= window
        {
            // Quiet for a whole window: whatever loop there was is over.
            t.looping = None;
            t.recent.clear();
        }
        let Some(sample) = sample else {
            return match self.containers.get(key) {
                Some(t) if t.looping.is_some() => Fold::Folded,
                _ => Fold::PerDeath,
            };
        };
        if !self.containers.contains_key(key) {
            self.make_room(now);
        }
        let t = self
            .containers
            .entry(key.clone())
            .or_insert_with(|| Tracked {
                regarding: regarding.clone(),
                recent: VecDeque::new(),
                looping: None,
                last_death: now,
                last_write: None,
            });
        t.last_death = now;
        t.regarding.clone_from(regarding);
        if let Some(l) = &mut t.looping {
            l.add(sample);
            return Fold::Folded;
        }
        while t
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= window)
        {
            t.recent.pop_front();
        }
        t.recent.push_back((now, sample));
        if t.recent.len() < self.options.min_deaths as usize {
            return Fold::PerDeath;
        }
        let mut samples = std::mem::take(&mut t.recent).into_iter().map(|(_, s)| s);
        let Some(first) = samples.next() else {
            return Fold::PerDeath;
        };
        let mut l = Loop {
            first: first.time,
            last: first.time,
            total: 0,
            verdicts: Vec::new(),
            latest: first.verdict,
            posted: None,
            on_server: 0,
            uptimes: Some(VecDeque::new()),
        };
        l.add(first);
        samples.for_each(|s| l.add(s));
        t.looping = Some(l);
        Fold::Folded
    }

    /// The container had a per-death Event written at `now`.
    pub fn wrote(&mut self, key: &ContainerKey, now: Instant) {
        if let Some(t) = self.containers.get_mut(key) {
            t.last_write = Some(now);
        }
    }

    /// Whether the container is in a loop now.
    #[cfg(test)]
    #[must_use]
    pub fn is_looping(&self, key: &ContainerKey) -> bool {
        self.containers
            .get(key)
            .is_some_and(|t| t.looping.is_some())
    }

    /// The writes due at `now`: each looping container with deaths its Event does not tell
    /// yet, whose last write is at least an interval ago.
    pub fn due(&mut self, now: Instant) -> Vec<LoopWrite> {
        let interval = self.options.interval;
        let mut writes: Vec<LoopWrite> = self
            .containers
            .iter()
            .filter(|(_, t)| {
                t.looping.as_ref().is_some_and(Loop::dirty)
                    && t.last_write
                        .is_none_or(|at| now.saturating_duration_since(at) >= interval)
            })
            .filter_map(|(key, t)| {
                let l = t.looping.as_ref()?;
                Some(LoopWrite {
                    key: key.clone(),
                    regarding: t.regarding.clone(),
                    target: l.posted.clone(),
                    message: l.message(),
                    count: l.total,
                    first: l.first,
                    last: l.last,
                })
            })
            .collect();
        writes.sort_by_key(|w| w.last);
        writes
    }

    /// When the next write is due; `None` when no loop has anything to tell. A scan of the
    /// containers followed (thousands at most, once per request the poster makes).
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        self.containers
            .values()
            .filter(|t| t.looping.as_ref().is_some_and(Loop::dirty))
            .map(|t| {
                t.last_write
                    .map_or(t.last_death, |at| at + self.options.interval)
            })
            .min()
    }

    /// Records how a write went. Every outcome counts as a write: a failed or expired Event
    /// is tried again an interval later, not at once.
    pub fn settle(&mut self, write: &LoopWrite, outcome: LoopOutcome, now: Instant) {
        let Some(t) = self.containers.get_mut(&write.key) else {
            return;
        };
        t.last_write = Some(now);
        let Some(l) = &mut t.looping else {
            return;
        };
        match outcome {
            LoopOutcome::Created { namespace, name } => {
                l.posted = Some((namespace, name));
                l.on_server = write.count;
            }
            LoopOutcome::Updated => l.on_server = write.count,
            LoopOutcome::Gone => l.posted = None,
            LoopOutcome::Failed => {}
        }
    }

    /// Containers quiet for a window go first (a loop with nothing left to write, or no loop),
    /// then the one quiet longest.
    fn make_room(&mut self, now: Instant) {
        if self.containers.len() < self.options.max_containers.max(1) {
            return;
        }
        let window = self.options.window;
        self.containers.retain(|_, t| {
            now.saturating_duration_since(t.last_death) < window
                || t.looping.as_ref().is_some_and(Loop::dirty)
        });
        if self.containers.len() < self.options.max_containers.max(1) {
            return;
        }
        if let Some(oldest) = self
            .containers
            .iter()
            .min_by_key(|(_, t)| t.last_death)
            .map(|(k, _)| k.clone())
        {
            self.containers.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.containers.len()
    }
}

#[cfg(test)]
#[path = "crashloop_tests.rs"]
mod tests;
