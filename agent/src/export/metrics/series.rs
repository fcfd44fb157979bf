//! The per-pod series (terminations, OOM kills, exec failures, memory gauges), stored compactly
//! and bounded: what keeps `/metrics` cheap at 100k series and cardinality bounded.
//!
//! A pod's label block (`namespace="…",pod="…"`) is escaped once and is the pod's key; each
//! container's and each owner's label block likewise, once per pod. A series is then a few
//! bytes of what varies (verdict, scope, errno) and its value, next to its siblings, so a scrape
//! copies pre-escaped blocks and walks memory in order. Forgetting a pod (quiet for the
//! retention, or pushed out by the cap) drops its entry, and with it every series it had.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::text::{push_escaped, push_label};
use crate::record::{Initiator, OomScope, Reason, TerminationRecord};

#[derive(Debug)]
pub(super) struct TerminationCount {
    /// Index into the pod's owners.
    pub owner: u32,
    pub reason: Reason,
    pub main_process: bool,
    /// An enum of 17 values: the label stays bounded.
    pub initiator: Initiator,
    /// The verdict of the child's death that explains an init's exit: 11 values or none.
    pub cause: Option<Reason>,
    pub count: u64,
}

#[derive(Debug)]
pub(super) struct OomCount {
    pub owner: u32,
    pub scope: OomScope,
    pub count: u64,
}

#[derive(Debug)]
pub(super) struct ExecFailureCount {
    /// Escaped.
    pub errno: Box<str>,
    pub count: u64,
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
    pub last_touched: Instant,
    /// `owner_kind="…",owner_name="…"` blocks, escaped; usually one, two when the workload
    /// became known after the first death.
    owners: Vec<Box<str>>,
    pub containers: Vec<ContainerSeries>,
}

impl PodSeries {
    pub fn owner(&self, index: u32) -> &str {
        self.owners.get(index as usize).map_or("", |o| o)
    }

    fn owner_index(&mut self, block: &str) -> u32 {
        let at = self
            .owners
            .iter()
            .position(|o| **o == *block)
            .unwrap_or_else(|| {
                self.owners.push(block.into());
                self.owners.len() - 1
            });
        // Four billion owners of one pod would not fit in memory first.
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
    /// By the pod's label block, `namespace="…",pod="…"` escaped; shared with scrapes under
    /// way, which name the pods they have yet to write by it.
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

    /// Counts the record in its pod's series, touched at `now`; returns how many pods were
    /// pushed out to make room for it.
    pub fn observe(&mut self, record: &TerminationRecord, now: Instant) -> usize {
        let text = Option::unwrap_or_default;
        let mut key = String::new();
        push_label(&mut key, "namespace", text(record.namespace.as_deref()));
        key.push(',');
        push_label(&mut key, "pod", text(record.pod.as_deref()));
        let mut evicted = 0;
        if !self.pods.contains_key(key.as_str()) {
            evicted = self.make_room();
            let pod = PodSeries {
                last_touched: now,
                owners: Vec::new(),
                containers: Vec::new(),
            };
            self.pods.insert(Arc::from(key.as_str()), pod);
        }
        let Some(pod) = self.pods.get_mut(key.as_str()) else {
            return evicted;
        };
        pod.last_touched = now;

        let mut block = String::new();
        push_label(&mut block, "owner_kind", text(record.owner_kind.as_deref()));
        block.push(',');
        push_label(&mut block, "owner_name", text(record.owner_name.as_deref()));
        let owner = pod.owner_index(&block);
        block.clear();
        push_label(&mut block, "container", text(record.container.as_deref()));
        let c = pod.container(&block);

        let (reason, main_process, initiator) =
            (record.reason, record.main_process, record.initiator);
        let cause = record.cause.as_ref().map(|c| c.reason);
        let found = c.terminations.iter_mut().find(|t| {
            t.owner == owner
                && t.reason == reason
                && t.main_process == main_process
                && t.initiator == initiator
                && t.cause == cause
        });
        match found {
            Some(t) => t.count += 1,
            None => c.terminations.push(TerminationCount {
                owner,
                reason,
                main_process,
                initiator,
                cause,
                count: 1,
            }),
        }
        if let Some(oom) = &record.oom {
            let scope = oom.scope;
            match c
                .oom_kills
                .iter_mut()
                .find(|o| o.owner == owner && o.scope == scope)
            {
                Some(o) => o.count += 1,
                None => c.oom_kills.push(OomCount {
                    owner,
                    scope,
                    count: 1,
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
                }),
            }
        }
        evicted
    }

    /// Removes the least recently touched pods until one more fits.
    fn make_room(&mut self) -> usize {
        let mut evicted = 0;
        while self.pods.len() >= self.max_pods {
            // A linear scan per new pod at the cap: the cap is thousands, new pods are rare
            // next to the scrape and sweep work, and it keeps a single map to get right.
            let Some(oldest) = self
                .pods
                .iter()
                .min_by_key(|(_, pod)| pod.last_touched)
                .map(|(k, _)| Arc::clone(k))
            else {
                break;
            };
            self.pods.remove(&oldest);
            evicted += 1;
        }
        evicted
    }

    /// Removes every pod untouched since `cutoff`; returns how many.
    pub fn expire(&mut self, cutoff: Instant) -> usize {
        let before = self.pods.len();
        self.pods.retain(|_, pod| pod.last_touched >= cutoff);
        before - self.pods.len()
    }

    #[cfg(test)]
    pub fn pod(&self, namespace: &str, pod: &str) -> Option<&PodSeries> {
        self.pods
            .get(format!("namespace=\"{namespace}\",pod=\"{pod}\"").as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::export::recent::tests::record;

    fn death(pod: &str) -> TerminationRecord {
        record(Some("ns"), Some(pod), 1)
    }

    #[test]
    fn the_least_recently_touched_pod_makes_room() {
        let t0 = Instant::now();
        let mut index = SeriesIndex::new(2);
        assert_eq!(index.observe(&death("a"), t0), 0);
        assert_eq!(index.observe(&death("b"), t0 + Duration::from_secs(1)), 0);
        // a is touched again: b is now the oldest.
        assert_eq!(index.observe(&death("a"), t0 + Duration::from_secs(2)), 0);
        assert_eq!(index.observe(&death("c"), t0 + Duration::from_secs(3)), 1);
        assert_eq!(index.len(), 2);
        assert!(index.pod("ns", "a").is_some());
        assert!(index.pod("ns", "b").is_none());
        assert!(index.pod("ns", "c").is_some());
    }

    #[test]
    fn expire_keeps_what_was_touched_after_the_cutoff() {
        let t0 = Instant::now();
        let mut index = SeriesIndex::new(10);
        index.observe(&death("old"), t0);
        index.observe(&death("fresh"), t0 + Duration::from_secs(100));
        assert_eq!(index.expire(t0 + Duration::from_secs(50)), 1);
        assert_eq!(index.len(), 1);
        assert!(index.pod("ns", "fresh").is_some());
    }

    #[test]
    fn a_series_is_counted_once_per_distinct_label_set() {
        let t0 = Instant::now();
        let mut index = SeriesIndex::new(10);
        let mut r = death("p");
        index.observe(&r, t0);
        index.observe(&r, t0);
        r.main_process = false;
        index.observe(&r, t0);
        // The workload became known: a new series, as a new label value would make.
        r.owner_kind = Some("Deployment".into());
        index.observe(&r, t0);
        r.container = Some("sidecar".into());
        index.observe(&r, t0);
        let pod = index.pod("ns", "p").expect("pod p");
        assert_eq!(pod.series(), 4);
        assert_eq!(pod.containers[0].terminations[0].count, 2);
        assert_eq!(pod.owner(pod.containers[1].terminations[0].owner), {
            "owner_kind=\"Deployment\",owner_name=\"\""
        });
    }
}
