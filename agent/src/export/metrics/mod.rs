//! The Prometheus registry: what deaths, losses and the agent's health look like at `/metrics`.
//!
//! Per-pod series (terminations, OOM kills, exec failures, memory gauges) are remembered by pod
//! (namespace, name and uid) and live while the pod index has the pod; [`Metrics::sweep`]
//! removes them the retention after the pod was last known to exist (in the index, or, without
//! one, at its last death), or the pod cap pushes them out; the rest have closed label sets and
//! live for the whole run.
//!
//! The per-pod families are the cardinality (100k series on a busy node), so they are not
//! prometheus-client `Family`s: `series` keeps them compactly (label blocks escaped once per
//! pod and container, a series is its varying label and value), `text` writes them straight
//! in the format the client asked for, and `scrape` streams the exposition in pieces. The
//! registry keeps the closed-set families. `oracle_tests` holds the hand-written lines to what
//! `Family` would write.

mod catalogue;
mod classic;
mod collector;
#[cfg(test)]
pub(crate) mod exposition;
mod families;
#[cfg(test)]
mod inventory_tests;
mod labels;
mod last;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod oracle_tests;
mod scrape;
mod series;
#[cfg(test)]
mod tests;
mod text;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

pub use collector::{EventCounts, KernelStageStats, ReaderStats};
use collector::{Sources, StatsCollector};
use families::{AuthCacheLabels, AuthDecisionLabels, CauseLabels, Families};
pub use labels::{EventKind, FilteredKind, LossStage};
use labels::{ProbeLabels, SignalLabels, VersionLabels};
use last::LastTerminations;
pub use scrape::Scrape;
use series::SeriesIndex;
pub use text::Format;

use crate::record::TerminationRecord;

/// The `decision` label of `coroner_http_auth_decisions_total`.
pub const AUTH_DECISIONS: [&str; 4] = ["allowed", "unauthenticated", "forbidden", "unavailable"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// How long a pod's series stay after the pod was last known to exist: the last sweep that
    /// found it in the pod index, or, when the index cannot tell, its last death.
    pub retention: Duration,
    /// How many pods may have series at once; the least recently seen one makes room.
    pub max_pods: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_mins(15),
            max_pods: 4096,
        }
    }
}

/// The kernel's per-CPU counters, summed over CPUs: totals since the programs were loaded,
/// by `agent_ebpf::counter` slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters([u64; agent_ebpf::counter::COUNT as usize]);

impl KernelCounters {
    /// From the `COUNTERS` map, indexed by `agent_ebpf::counter::*`; missing slots count 0.
    #[must_use]
    pub fn from_slots(slots: &[u64]) -> Self {
        let mut counters = Self::default();
        for (to, from) in counters.0.iter_mut().zip(slots) {
            *to = *from;
        }
        counters
    }

    /// The total of slot `agent_ebpf::counter::*`; 0 for a slot that does not exist.
    #[must_use]
    pub fn slot(&self, slot: u32) -> u64 {
        self.0.get(slot as usize).copied().unwrap_or(0)
    }
}

struct Inner {
    registry: Registry,
    families: Families,
    /// The per-pod families: high cardinality, so not prometheus-client `Family`s (see
    /// `series`); the registry holds the rest.
    series: Mutex<SeriesIndex>,
    /// Each container's last termination, for joins with kube-state-metrics.
    last: Mutex<LastTerminations>,
    /// Whether a pod uid is still in the pod index (`None`: cannot tell); set with the API.
    pods: OnceLock<PodPresence>,
    /// The stages' counters, encoded at scrape time by the registry's one collector.
    sources: Arc<Sources>,
    retention: Duration,
}

type PodPresence = Box<dyn Fn(&str) -> Option<bool> + Send + Sync>;

/// Containers with a last-termination series, per pod the cap allows.
const CONTAINERS_PER_POD: usize = 4;

/// The agent's metrics; clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(MetricsConfig::default())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain bookkeeping behind: keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    #[must_use]
    pub fn new(config: MetricsConfig) -> Self {
        let families = Families::new();
        let mut registry = Registry::with_prefix("coroner");
        families.register(&mut registry);
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(StatsCollector(sources.clone())));
        for cause in ["expired", "capacity"] {
            let _ = families
                .pod_series_dropped
                .get_or_create(&CauseLabels { cause });
        }
        // Every guard's series from the start, at 0 when nothing is guarded: a rate over them
        // needs no `or vector(0)`.
        for review in ["token", "access"] {
            for result in ["hit", "miss"] {
                let _ = families
                    .http_auth_cache
                    .get_or_create(&AuthCacheLabels { review, result });
            }
        }
        for endpoint in ["terminations", "metrics"] {
            for decision in AUTH_DECISIONS {
                let _ = families
                    .http_auth_decisions
                    .get_or_create(&AuthDecisionLabels { endpoint, decision });
            }
        }
        families
            .build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Self {
            inner: Arc::new(Inner {
                registry,
                families,
                series: Mutex::new(SeriesIndex::new(config.max_pods)),
                last: Mutex::new(LastTerminations::new(
                    config.max_pods.saturating_mul(CONTAINERS_PER_POD),
                )),
                pods: OnceLock::new(),
                sources,
                retention: config.retention,
            }),
        }
    }

    /// Counts one recorded death.
    pub fn observe(&self, record: &TerminationRecord) {
        self.observe_at(record, Instant::now());
    }

    /// [`Metrics::observe`] with the pod's series touched at `now`.
    pub fn observe_at(&self, record: &TerminationRecord, now: Instant) {
        let f = &self.inner.families;
        let evicted = lock(&self.inner.series).observe(record, now)
            + lock(&self.inner.last).observe(record, now);
        if evicted > 0 {
            f.pod_series_dropped
                .get_or_create(&CauseLabels { cause: "capacity" })
                .inc_by(evicted as u64);
        }

        if let Some(grace) = record.grace_seconds.filter(|g| g.is_finite() && *g >= 0.0) {
            f.grace_period.observe(grace);
        }
        if let Some(sig) = record.signal {
            let sender_kind = record.sender.as_ref().map_or("", |s| s.kind.as_str());
            f.signals
                .get_or_create(&SignalLabels {
                    signal: crate::record::signal_name(sig),
                    sender_kind,
                })
                .inc();
        }
    }

    /// Removes the series of every pod not known to exist for longer than the retention (not
    /// in the pod index, or, when the index cannot tell, without a death), and the
    /// last-termination series of containers whose pod is gone; returns how many pods were
    /// forgotten.
    #[expect(
        clippy::must_use_candidate,
        reason = "called for its effect; the count is for logs"
    )]
    pub fn sweep(&self, now: Instant) -> usize {
        // None this early after boot: nothing is that old.
        let cutoff = now.checked_sub(self.inner.retention);
        let present = |uid: &str| self.inner.pods.get().and_then(|f| f(uid));
        let expired = lock(&self.inner.series).expire(&present, now, cutoff);
        // Not a drop: these follow their pod, and go with it.
        lock(&self.inner.last).sweep(&present, now, cutoff);
        self.inner
            .families
            .pod_series_dropped
            .get_or_create(&CauseLabels { cause: "expired" })
            .inc_by(expired as u64);
        expired
    }

    /// How long a pod's series outlive what is known of it ([`MetricsConfig::retention`]).
    #[must_use]
    pub fn retention(&self) -> Duration {
        self.inner.retention
    }

    /// How many pods currently have series.
    #[must_use]
    pub fn tracked_pods(&self) -> usize {
        lock(&self.inner.series).len()
    }

    /// Counts `n` events dropped at `stage`, where the stage keeps no counter of its own.
    pub fn lost(&self, stage: LossStage, n: u64) {
        self.inner.sources.lost(stage, n);
    }

    /// Takes the kernel stage's totals (see [`KernelStageStats`]); `/metrics` shows the last
    /// ones taken.
    pub fn publish_kernel_stage(&self, stats: KernelStageStats) {
        *lock(&self.inner.sources.kernel_stage) = stats;
    }

    /// Where the Kubernetes side's counters are read at each scrape; the first call wins.
    pub fn watch_kube(&self, stats: impl Fn() -> crate::kube::KubeStats + Send + Sync + 'static) {
        if self.inner.sources.kube.set(Box::new(stats)).is_err() {
            tracing::warn!("the Kubernetes counters are already watched; ignoring a second source");
        }
    }

    /// Where [`Metrics::sweep`] asks whether a pod is still in the pod index (`None`: the watch
    /// is down): per-pod series live as long as their pod, and the retention after. The first
    /// call wins.
    pub fn watch_pods(&self, present: impl Fn(&str) -> Option<bool> + Send + Sync + 'static) {
        if self.inner.pods.set(Box::new(present)).is_err() {
            tracing::warn!("the pod index is already watched; ignoring a second source");
        }
    }

    /// `probe` is a program name (`agent_ebpf::names`): a closed set.
    pub fn set_probe_attached(&self, probe: &str, attached: bool) {
        self.inner
            .families
            .probe_attached
            .get_or_create(&ProbeLabels {
                probe: probe.to_owned(),
            })
            .set(i64::from(attached));
    }

    /// One review answered from the cache (`hit`) or asked of the API server; `review` is
    /// `token` or `access`.
    pub fn http_auth_cache(&self, review: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.inner
            .families
            .http_auth_cache
            .get_or_create(&AuthCacheLabels { review, result })
            .inc();
    }

    /// One request to a guarded `endpoint` (`terminations`, `metrics`), by [`AUTH_DECISIONS`].
    pub fn http_auth_decision(&self, endpoint: &'static str, decision: &'static str) {
        debug_assert!(AUTH_DECISIONS.contains(&decision), "{decision}");
        self.inner
            .families
            .http_auth_decisions
            .get_or_create(&AuthDecisionLabels { endpoint, decision })
            .inc();
    }

    /// The `OpenMetrics` text exposition, `# EOF` included.
    #[must_use]
    pub fn encode(&self) -> String {
        self.encode_as(Format::OpenMetrics)
    }

    /// [`Metrics::encode`] in the classic text format, for clients that do not accept
    /// `OpenMetrics`.
    #[must_use]
    pub fn encode_classic(&self) -> String {
        self.encode_as(Format::Classic)
    }

    /// The exposition in `format`, in one string.
    fn encode_as(&self, format: Format) -> String {
        let mut text = String::new();
        let mut scrape = self.scrape(format);
        while scrape.write_next(&mut text, usize::MAX) {}
        text
    }

    /// The exposition in `format`, as pieces of a few dozen KiB: what `/metrics` streams.
    #[must_use]
    pub fn scrape(&self, format: Format) -> Scrape {
        Scrape::new(self, format)
    }

    /// The current value of `coroner_events_lost_total{stage}`.
    #[must_use]
    pub fn lost_count(&self, stage: LossStage) -> u64 {
        self.inner.sources.samples().lost(stage)
    }
}
