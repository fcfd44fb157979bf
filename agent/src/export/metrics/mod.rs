//! The Prometheus registry: what deaths, losses and the agent's health look like at `/metrics`.
//!
//! Per-pod series (terminations, OOM kills, exec failures, memory gauges) are remembered by pod
//! and removed by [`Metrics::sweep`] once the pod has been quiet for the retention, or when the
//! pod cap pushes them out; the rest have closed label sets and live for the whole run.

mod classic;
#[cfg(test)]
pub(crate) mod exposition;
mod families;
mod labels;
#[cfg(test)]
mod lint_tests;
mod series;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use families::{CauseLabels, Families};
use labels::{
    ContainerLabels, ExecFailureLabels, KindLabels, OomLabels, ProbeLabels, SignalLabels,
    StageLabels, TerminationLabels, VersionLabels,
};
pub use labels::{EventKind, FilteredKind, LossStage};
use series::{PodKey, SeriesIndex};

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
    /// Held while a record's series are updated and while a sweep removes them, so a series is
    /// never removed between being noted and being incremented.
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

fn bytes_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
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
        let container = ContainerLabels::of(record);
        let owner_kind = record.owner_kind.clone().unwrap_or_default();
        let owner_name = record.owner_name.clone().unwrap_or_default();
        let key = PodKey {
            namespace: container.namespace.clone(),
            pod: container.pod.clone(),
        };

        let mut index = lock(&self.inner.series);
        let (pod, evicted) = index.touch(key, now);

        let termination = TerminationLabels {
            container: container.clone(),
            owner_kind: owner_kind.clone(),
            owner_name: owner_name.clone(),
            reason: record.reason.as_str(),
            main_process: if record.main_process { "true" } else { "false" },
        };
        f.terminations.get_or_create(&termination).inc();
        pod.terminations.insert(termination);

        let mut container_gauges = false;
        if let Some(oom) = &record.oom {
            let labels = OomLabels {
                container: container.clone(),
                owner_kind,
                owner_name,
                scope: oom.scope.as_str(),
            };
            f.oom_kills.get_or_create(&labels).inc();
            pod.oom_kills.insert(labels);
            f.oom_victim_rss
                .get_or_create(&container)
                .set(bytes_gauge(oom.victim_rss_bytes));
            container_gauges = true;
        }
        if let Some(peak) = record.container_memory_peak_bytes {
            f.container_memory_peak
                .get_or_create(&container)
                .set(bytes_gauge(peak));
            container_gauges = true;
        }
        if let Some(limit) = record.container_memory_limit_bytes {
            f.container_memory_limit
                .get_or_create(&container)
                .set(bytes_gauge(limit));
            container_gauges = true;
        }
        if let Some(failure) = &record.exec_failure {
            let labels = ExecFailureLabels {
                container: container.clone(),
                errno: failure.errno.clone(),
            };
            f.exec_failures.get_or_create(&labels).inc();
            pod.exec_failures.insert(labels);
        }
        if container_gauges {
            pod.containers.insert(container);
        }
        for gone in &evicted {
            f.forget(gone);
        }
        drop(index);
        if !evicted.is_empty() {
            f.pod_series_dropped
                .get_or_create(&CauseLabels { cause: "capacity" })
                .inc_by(evicted.len() as u64);
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
        let f = &self.inner.families;
        let mut index = lock(&self.inner.series);
        let expired = index.expire(cutoff);
        for pod in &expired {
            f.forget(pod);
        }
        drop(index);
        f.pod_series_dropped
            .get_or_create(&CauseLabels { cause: "expired" })
            .inc_by(expired.len() as u64);
        expired.len()
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
        let mut text = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            // Writing into a String cannot fail; a metric's own encoder could. Say so rather
            // than serve half an exposition silently.
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }

    /// [`Metrics::encode`] in the classic text format, for clients that do not accept
    /// OpenMetrics.
    #[must_use]
    pub fn encode_classic(&self) -> String {
        classic::to_classic_text(&self.encode())
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
