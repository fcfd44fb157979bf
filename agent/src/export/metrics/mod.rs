//! The Prometheus registry: what deaths, losses and the agent's health look like at `/metrics`.
//!
//! Per-pod series (terminations, OOM kills, exec failures, memory gauges) are remembered by pod
//! and removed by [`Metrics::sweep`] once the pod has been quiet for the retention, or when the
//! pod cap pushes them out; the rest have closed label sets and live for the whole run.
//!
//! The per-pod families are the cardinality (100k series on a busy node), so they are not
//! prometheus-client `Family`s: `series` keeps them compactly (label blocks escaped once per
//! pod and container, a series is its varying label and value), `text` writes them straight
//! in the format the client asked for, and `scrape` streams the exposition in pieces. The
//! registry keeps the closed-set families. `oracle_tests` holds the hand-written lines to what
//! `Family` would write.

mod classic;
#[cfg(test)]
mod cost_tests;
#[cfg(test)]
pub(crate) mod exposition;
mod families;
mod labels;
#[cfg(test)]
mod lint_tests;
#[cfg(test)]
mod oracle_tests;
mod scrape;
mod series;
#[cfg(test)]
mod tests;
mod text;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use families::{CauseLabels, Families};
pub use labels::{EventKind, FilteredKind, LossStage};
use labels::{KindLabels, ProbeLabels, SignalLabels, StageLabels, VersionLabels};
pub use scrape::Scrape;
use series::SeriesIndex;
pub use text::Format;

use crate::record::TerminationRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// How long a pod's series stay after its last death.
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

/// The kernel's per-CPU counters, summed over CPUs: totals since the programs were loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events dropped in the kernel: ring buffer full (all kinds), exec path stash full.
    pub lost: u64,
    pub exit_filtered: u64,
    pub signal_filtered: u64,
    /// Events that reached the ring buffer.
    pub emitted: u64,
}

impl KernelCounters {
    /// From the `COUNTERS` map, indexed by `agent_ebpf::counter::*`; missing slots count 0.
    #[must_use]
    pub fn from_slots(slots: &[u64]) -> Self {
        use agent_ebpf::counter;
        let slot = |i: u32| slots.get(i as usize).copied().unwrap_or(0);
        Self {
            lost: [
                counter::LOST_EXIT,
                counter::LOST_SIGNAL,
                counter::LOST_OOM,
                counter::LOST_EXEC_FAILURE,
                counter::EXEC_STASH_FULL,
                counter::LOST_CGROUP_MKDIR,
            ]
            .into_iter()
            .map(slot)
            .fold(0u64, u64::saturating_add),
            exit_filtered: slot(counter::EXIT_FILTERED),
            signal_filtered: slot(counter::SIGNAL_FILTERED),
            emitted: slot(counter::EMITTED),
        }
    }
}

struct Inner {
    registry: Registry,
    families: Families,
    /// The per-pod families: high cardinality, so not prometheus-client `Family`s (see
    /// `series`); the registry holds the rest.
    series: Mutex<SeriesIndex>,
    kernel_seen: Mutex<KernelCounters>,
    retention: Duration,
}

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
        // Closed label sets exist from the start: absent is not zero to a PromQL rate().
        for stage in LossStage::ALL {
            let _ = families.events_lost.get_or_create(&StageLabels {
                stage: stage.as_str(),
            });
        }
        for kind in EventKind::ALL {
            let _ = families.events.get_or_create(&KindLabels {
                kind: kind.as_str(),
            });
        }
        for kind in FilteredKind::ALL {
            let _ = families.kernel_filtered.get_or_create(&KindLabels {
                kind: kind.as_str(),
            });
        }
        for cause in ["expired", "capacity"] {
            let _ = families
                .pod_series_dropped
                .get_or_create(&CauseLabels { cause });
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
                kernel_seen: Mutex::new(KernelCounters::default()),
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
        let evicted = lock(&self.inner.series).observe(record, now);
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

    /// Removes the series of every pod without a death for longer than the retention; returns
    /// how many pods were forgotten.
    #[expect(
        clippy::must_use_candidate,
        reason = "called for its effect; the count is for logs"
    )]
    pub fn sweep(&self, now: Instant) -> usize {
        let Some(cutoff) = now.checked_sub(self.inner.retention) else {
            return 0;
        };
        let expired = lock(&self.inner.series).expire(cutoff);
        self.inner
            .families
            .pod_series_dropped
            .get_or_create(&CauseLabels { cause: "expired" })
            .inc_by(expired as u64);
        expired
    }

    /// How many pods currently have series.
    #[must_use]
    pub fn tracked_pods(&self) -> usize {
        lock(&self.inner.series).len()
    }

    /// Counts `n` events dropped at `stage`.
    pub fn lost(&self, stage: LossStage, n: u64) {
        self.inner
            .families
            .events_lost
            .get_or_create(&StageLabels {
                stage: stage.as_str(),
            })
            .inc_by(n);
    }

    /// Counts one kernel event handled by user space.
    pub fn event_handled(&self, kind: EventKind) {
        self.inner
            .families
            .events
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Takes the kernel's counter totals; what grew since the last call is added (a total that
    /// went down means the programs were reloaded, and it counts from zero).
    pub fn kernel_counters(&self, totals: KernelCounters) {
        let f = &self.inner.families;
        let mut seen = lock(&self.inner.kernel_seen);
        let grown = |now: u64, before: u64| if now >= before { now - before } else { now };
        self.lost(LossStage::Kernel, grown(totals.lost, seen.lost));
        for (kind, now, before) in [
            (FilteredKind::Exit, totals.exit_filtered, seen.exit_filtered),
            (
                FilteredKind::Signal,
                totals.signal_filtered,
                seen.signal_filtered,
            ),
        ] {
            f.kernel_filtered
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .inc_by(grown(now, before));
        }
        f.kernel_emitted.inc_by(grown(totals.emitted, seen.emitted));
        *seen = totals;
    }

    /// Counts deaths outside any container (not recorded).
    pub fn deaths_outside_containers(&self, n: u64) {
        self.inner.families.deaths_outside_containers.inc_by(n);
    }

    pub fn set_kube_watch_up(&self, up: bool) {
        self.inner.families.kube_watch_up.set(i64::from(up));
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
        self.inner
            .families
            .events_lost
            .get_or_create(&StageLabels {
                stage: stage.as_str(),
            })
            .get()
    }
}
