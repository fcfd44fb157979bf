//! Which per-pod series exist and when each pod was last seen: what keeps cardinality bounded.
//!
//! Every per-pod label set handed to a family is noted here under its pod, so that forgetting a
//! pod (deleted long ago, or pushed out by the cap) removes every series it had, in all
//! families, and nothing else.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::labels::{ContainerLabels, ExecFailureLabels, OomLabels, TerminationLabels};

/// A pod as metrics see it; deaths without metadata share the key of empty strings.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub(super) struct PodKey {
    pub namespace: String,
    pub pod: String,
}

/// The label sets one pod has put into the families.
#[derive(Debug, Default)]
pub(super) struct PodSeries {
    pub last_touched: Option<Instant>,
    pub terminations: HashSet<TerminationLabels>,
    pub oom_kills: HashSet<OomLabels>,
    /// Keys of the per-container gauges (victim RSS, peak, limit).
    pub containers: HashSet<ContainerLabels>,
    pub exec_failures: HashSet<ExecFailureLabels>,
}

/// All pods with series, bounded by `max_pods`.
#[derive(Debug)]
pub(super) struct SeriesIndex {
    pods: HashMap<PodKey, PodSeries>,
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

    /// The pod's entry, touched at `now`, and the pods pushed out to make room for it (their
    /// series must be removed by the caller).
    pub fn touch(&mut self, key: PodKey, now: Instant) -> (&mut PodSeries, Vec<PodSeries>) {
        let mut evicted = Vec::new();
        if !self.pods.contains_key(&key) {
            // A linear scan per new pod at the cap: the cap is thousands, new pods are rare
            // next to the scrape and sweep work, and it keeps a single map to get right.
            while self.pods.len() >= self.max_pods {
                let Some(oldest) = self
                    .pods
                    .iter()
                    .min_by_key(|(_, series)| series.last_touched)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(series) = self.pods.remove(&oldest) {
                    evicted.push(series);
                }
            }
        }
        let entry = self.pods.entry(key).or_default();
        entry.last_touched = Some(now);
        (entry, evicted)
    }

    /// Removes and returns every pod untouched since `cutoff`.
    pub fn expire(&mut self, cutoff: Instant) -> Vec<PodSeries> {
        let stale: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, series)| series.last_touched.is_none_or(|t| t < cutoff))
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|k| self.pods.remove(&k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(pod: &str) -> PodKey {
        PodKey {
            namespace: "ns".into(),
            pod: pod.into(),
        }
    }

    #[test]
    fn the_least_recently_touched_pod_makes_room() {
        let t0 = Instant::now();
        let mut index = SeriesIndex::new(2);
        index.touch(key("a"), t0);
        index.touch(key("b"), t0 + Duration::from_secs(1));
        // a is touched again: b is now the oldest.
        index.touch(key("a"), t0 + Duration::from_secs(2));
        let (_, evicted) = index.touch(key("c"), t0 + Duration::from_secs(3));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].last_touched, Some(t0 + Duration::from_secs(1)));
        assert_eq!(index.len(), 2);
        assert!(index.pods.contains_key(&key("a")));
        assert!(index.pods.contains_key(&key("c")));
    }

    #[test]
    fn expire_keeps_what_was_touched_after_the_cutoff() {
        let t0 = Instant::now();
        let mut index = SeriesIndex::new(10);
        index.touch(key("old"), t0);
        index.touch(key("fresh"), t0 + Duration::from_secs(100));
        let gone = index.expire(t0 + Duration::from_secs(50));
        assert_eq!(gone.len(), 1);
        assert_eq!(index.len(), 1);
        assert!(index.pods.contains_key(&key("fresh")));
    }
}
