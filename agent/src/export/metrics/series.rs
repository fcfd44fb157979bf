//! The per-pod series (terminations, OOM kills, exec failures, memory gauges), stored compactly
//! and bounded: what keeps `/metrics` cheap at 100k series and cardinality bounded.
//!
//! A pod's label block (`namespace="…",pod="…",uid="…"`) is escaped once and is the pod's key;
//! each container's and each workload's label block likewise, once per pod. A series is then a
//! few bytes of what varies (verdict, scope, errno), its value and when it was born, next to its
//! siblings, so a scrape copies pre-escaped blocks and walks memory in order.
//!
//! A pod's series live while the pod index has the pod, and for the retention after the last
//! sweep that found it there; without an index (standalone, the watch down, a pod without a
//! uid) for the retention after its last death. Forgetting a pod (so, or pushed out by the
//! cap) drops its entry, and with it every series it had.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::text::{push_escaped, push_label, unix_seconds};
use crate::record::{Initiator, OomScope, Reason, TerminationRecord};

#[derive(Debug)]
pub(super) struct TerminationCount {
    /// Index into the pod's workloads.
    pub workload: u32,
    pub reason: Reason,
    pub main_process: bool,
    /// An enum of 17 values: the label stays bounded.
    pub initiator: Initiator,
    /// The verdict of the child's death that explains an init's exit: 11 values or none.
    pub cause: Option<Reason>,
    pub count: u64,
    /// Unix seconds of the death that made the series: its `OpenMetrics` `_created`.
    pub created: f64,
}

#[derive(Debug)]
pub(super) struct OomCount {
    pub workload: u32,
    pub scope: OomScope,
    pub count: u64,
    pub created: f64,
}

#[derive(Debug)]
pub(super) struct ExecFailureCount {
    /// Escaped.
    pub errno: Box<str>,
    pub count: u64,
    pub created: f64,
}

/// One container's series; unknown metadata is the empty string.
#[derive(Debug)]
pub(super) struct ContainerSeries {
    /// `container="…"`, escaped.
    pub label: Box<str>,
    pub terminations: Vec<TerminationCount>,
    pub oom_kills: Vec<OomCount>,
    pub exec_failures: Vec<ExecFailureCount>,
    pub oom_victim_rss: Option<i64>,
    pub memory_peak: Option<i64>,
    pub memory_limit: Option<i64>,
}

#[derive(Debug)]
pub(super) struct PodSeries {
    /// The pod's uid as the record has it (unescaped), asked of the pod index; empty when
    /// unknown.
    uid: Box<str>,
    /// When the last death was counted.
    last_death: Instant,
    /// When the pod was last known to exist: its last death, or the last sweep that found it
    /// in the pod index. The retention runs from here.
    seen: Instant,
    /// `workload_kind="…",workload_name="…"` blocks, escaped; usually one, two when the
    /// workload became known after the first death.
    workloads: Vec<Box<str>>,
    pub containers: Vec<ContainerSeries>,
}

impl PodSeries {
    pub fn workload(&self, index: u32) -> &str {
        self.workloads.get(index as usize).map_or("", |o| o)
    }

    fn workload_index(&mut self, block: &str) -> u32 {
        let at = self
            .workloads
            .iter()
            .position(|o| **o == *block)
            .unwrap_or_else(|| {
                self.workloads.push(block.into());
                self.workloads.len() - 1
            });
        // Four billion workloads of one pod would not fit in memory first.
        u32::try_from(at).unwrap_or(u32::MAX)
    }

    fn container(&mut self, label: &str) -> &mut ContainerSeries {
        let at = self
            .containers
            .iter()
            .position(|c| *c.label == *label)
            .unwrap_or_else(|| {
                self.containers.push(ContainerSeries {
                    label: label.into(),
                    terminations: Vec::new(),
                    oom_kills: Vec::new(),
                    exec_failures: Vec::new(),
                    oom_victim_rss: None,
                    memory_peak: None,
                    memory_limit: None,
                });
                self.containers.len() - 1
            });
        &mut self.containers[at]
    }

    /// Whether the pod stays at a sweep at `now`: asks the pod index, else the retention.
    fn stays(
        &mut self,
        present: &dyn Fn(&str) -> Option<bool>,
        now: Instant,
        cutoff: Option<Instant>,
    ) -> bool {
        if !self.uid.is_empty() && present(&self.uid) == Some(true) {
            self.seen = self.seen.max(now);
            return true;
        }
        cutoff.is_none_or(|cutoff| self.seen >= cutoff)
    }

    /// How many series the pod has.
    #[cfg(test)]
    pub fn series(&self) -> usize {
        self.containers
            .iter()
            .map(|c| {
                c.terminations.len()
                    + c.oom_kills.len()
                    + c.exec_failures.len()
                    + [c.oom_victim_rss, c.memory_peak, c.memory_limit]
                        .iter()
                        .flatten()
                        .count()
            })
            .sum()
    }
}

fn bytes_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// All pods with series, bounded by `max_pods`.
#[derive(Debug)]
pub(super) struct SeriesIndex {
    /// By the pod's label block, `namespace="…",pod="…",uid="…"` escaped; shared with scrapes
    /// under way, which name the pods they have yet to write by it.
    pods: HashMap<Arc<str>, PodSeries>,
    max_pods: usize,
}

impl SeriesIndex {
    pub fn new(max_pods: usize) -> Self {
        Self {
            pods: HashMap::new(),
            max_pods: max_pods.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Each pod's label block and its series.
    pub fn pods(&self) -> impl Iterator<Item = (&Arc<str>, &PodSeries)> {
        self.pods.iter()
    }

    pub fn pod_by_key(&self, key: &str) -> Option<&PodSeries> {
        self.pods.get(key)
    }

    /// The pod's entry, made (room first) when it has none; and how many pods made room.
    fn entry(
        &mut self,
        record: &TerminationRecord,
        now: Instant,
    ) -> (Option<&mut PodSeries>, usize) {
        let text = Option::unwrap_or_default;
        let uid = text(record.pod_uid.as_deref());
        let mut key = String::new();
        push_label(&mut key, "namespace", text(record.namespace.as_deref()));
        key.push(',');
        push_label(&mut key, "pod", text(record.pod.as_deref()));
        key.push(',');
        push_label(&mut key, "uid", uid);
        let mut evicted = 0;
        if !self.pods.contains_key(key.as_str()) {
            evicted = self.make_room();
            let pod = PodSeries {
                uid: uid.into(),
                last_death: now,
                seen: now,
                workloads: Vec::new(),
                containers: Vec::new(),
            };
            self.pods.insert(Arc::from(key.as_str()), pod);
        }
        let pod = self.pods.get_mut(key.as_str());
        if let Some(pod) = pod {
            pod.last_death = pod.last_death.max(now);
            pod.seen = pod.seen.max(now);
            return (Some(pod), evicted);
        }
        (None, evicted)
    }

    /// Counts the record in its pod's series, touched at `now`; returns how many pods were
    /// pushed out to make room for it.
    pub fn observe(&mut self, record: &TerminationRecord, now: Instant) -> usize {
        let text = Option::unwrap_or_default;
        let created = unix_seconds(record);
        let (Some(pod), evicted) = self.entry(record, now) else {
            return 0;
        };

        let mut block = String::new();
        let kind = record.owner_kind.as_deref();
        push_label(&mut block, "workload_kind", text(kind));
        block.push(',');
        let name = record.owner_name.as_deref();
        push_label(&mut block, "workload_name", text(name));
        let workload = pod.workload_index(&block);
        block.clear();
        push_label(&mut block, "container", text(record.container.as_deref()));
        let c = pod.container(&block);

        let (reason, main_process, initiator) =
            (record.reason, record.main_process, record.initiator);
        let cause = record.cause.as_ref().map(|c| c.reason);
        let found = c.terminations.iter_mut().find(|t| {
            t.workload == workload
                && t.reason == reason
                && t.main_process == main_process
                && t.initiator == initiator
                && t.cause == cause
        });
        match found {
            Some(t) => t.count += 1,
            None => c.terminations.push(TerminationCount {
                workload,
                reason,
                main_process,
                initiator,
                cause,
                count: 1,
                created,
            }),
        }
        if let Some(oom) = &record.oom {
            let scope = oom.scope;
            match c
                .oom_kills
                .iter_mut()
                .find(|o| o.workload == workload && o.scope == scope)
            {
                Some(o) => o.count += 1,
                None => c.oom_kills.push(OomCount {
                    workload,
                    scope,
                    count: 1,
                    created,
                }),
            }
            // An unknown RSS leaves the last known one: never a 0 that reads as a figure.
            if let Some(rss) = oom.victim_rss_bytes {
                c.oom_victim_rss = Some(bytes_gauge(rss));
            }
        }
        if let Some(peak) = record.container_memory_peak_bytes {
            c.memory_peak = Some(bytes_gauge(peak));
        }
        if let Some(limit) = record.container_memory_limit_bytes {
            c.memory_limit = Some(bytes_gauge(limit));
        }
        if let Some(failure) = &record.exec_failure {
            block.clear();
            push_escaped(&mut block, &failure.errno);
            match c.exec_failures.iter_mut().find(|e| *e.errno == *block) {
                Some(e) => e.count += 1,
                None => c.exec_failures.push(ExecFailureCount {
                    errno: block.into_boxed_str(),
                    count: 1,
                    created,
                }),
            }
        }
        evicted
    }

    /// Removes the pods least recently known to exist until one more fits.
    fn make_room(&mut self) -> usize {
        let mut evicted = 0;
        while self.pods.len() >= self.max_pods {
            // A linear scan per new pod at the cap: the cap is thousands, new pods are rare
            // next to the scrape and sweep work, and it keeps a single map to get right. Pods
            // the index has are all seen at the last sweep: the one quiet longest goes first.
            let Some(oldest) = self
                .pods
                .iter()
                .min_by_key(|(_, pod)| (pod.seen, pod.last_death))
                .map(|(k, _)| Arc::clone(k))
            else {
                break;
            };
            self.pods.remove(&oldest);
            evicted += 1;
        }
        evicted
    }

    /// A sweep at `now`: keeps the pods `present(uid)` says are in the pod index (`None`: it
    /// cannot tell), removes the others not known to exist since `cutoff` (`None`: nothing is
    /// that old); returns how many went.
    pub fn expire(
        &mut self,
        present: &dyn Fn(&str) -> Option<bool>,
        now: Instant,
        cutoff: Option<Instant>,
    ) -> usize {
        let before = self.pods.len();
        self.pods.retain(|_, pod| pod.stays(present, now, cutoff));
        before - self.pods.len()
    }

    #[cfg(test)]
    pub fn pod(&self, namespace: &str, pod: &str, uid: &str) -> Option<&PodSeries> {
        self.pods
            .get(format!("namespace=\"{namespace}\",pod=\"{pod}\",uid=\"{uid}\"").as_str())
    }
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
