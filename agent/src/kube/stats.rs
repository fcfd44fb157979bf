//! Counters of the Kubernetes side, read by the exporter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A snapshot of the counters (monotonic, except `watch_up` and `pods_indexed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KubeStats {
    /// The pod watch is listed and streaming (a gauge for metrics).
    pub watch_up: bool,
    /// Pods in the index, deleted ones kept for retention included.
    pub pods_indexed: u64,
    /// Errors from the watch (each followed by a backoff).
    pub watch_errors: u64,
    /// Full lists of the node's pods: the first, and one after each `410 Gone`.
    pub relists: u64,
    /// Pods the object model could not read whole (only their metadata was used).
    pub pods_undecodable: u64,
    /// New pods not indexed because the index was full of live pods.
    pub index_full: u64,
    pub lookups: u64,
    /// Lookups that had to wait for the pod or container to appear.
    pub lookups_waited: u64,
    /// Answered with the pod but without the container (the container id never showed up).
    pub lookups_pod_only: u64,
    /// Answered without anything: the pod is unknown.
    pub lookups_unknown: u64,
    /// Lookups that could not wait because too many were already waiting.
    pub waiters_rejected: u64,
    /// GETs of a `ReplicaSet` or `Job` to find the workload.
    pub owner_fetches: u64,
    pub owner_fetch_failures: u64,
    /// `Deployment` named by the `pod-template-hash` convention (its `ReplicaSet` was gone).
    pub owners_inferred: u64,
    /// Lists of one pod's Events, to tell who decided a death (the kubelet's `Killing`).
    pub initiator_event_reads: u64,
    /// Of those, lists or watches that failed: the initiator was decided without the Events.
    pub initiator_event_read_failures: u64,
    /// Events created.
    pub events_posted: u64,
    /// Series updates (PATCH) of Events already posted.
    pub events_series_updates: u64,
    /// Deaths held back by the rate limit; they reach the API server later in a series count.
    pub events_suppressed: u64,
    /// Crash-loop Events created.
    pub crash_loop_events: u64,
    /// Updates of crash-loop Events (a new count and line).
    pub crash_loop_updates: u64,
    /// Deaths told by their container's crash-loop Event instead of an Event of their own.
    pub crash_loop_deaths: u64,
    /// Crash-loop Event writes the API server did not take (tried again an interval later).
    pub crash_loop_write_failures: u64,
    /// Deaths whose Event was dropped: the queue was full.
    pub events_lost_queue_full: u64,
    /// Deaths whose Event the API server did not take (error or timeout).
    pub events_lost_post_failed: u64,
    /// Deaths without a namespace and pod name: nothing to attach an Event to.
    pub events_lost_unlabelled: u64,
    /// Deaths still held back when their series was evicted (too many series at once).
    pub events_lost_evicted: u64,
    /// Deaths that get no Event of their own by `--events` (a `Completed` one by default).
    pub events_filtered_type: u64,
    /// Deaths that get no Event by `--namespaces` / `--exclude-namespaces`.
    pub events_filtered_namespace: u64,
    /// Deaths in pods annotated `coroner.io/ignore: "true"`: no record, metric or Event.
    pub records_ignored: u64,
}

impl KubeStats {
    /// Everything counted in `coroner_events_lost_total{stage="kube_event"}`.
    #[must_use]
    pub fn events_lost(&self) -> u64 {
        self.events_lost_queue_full
            + self.events_lost_post_failed
            + self.events_lost_unlabelled
            + self.events_lost_evicted
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub watch_up: AtomicBool,
    pub pods_indexed: AtomicU64,
    pub watch_errors: AtomicU64,
    pub relists: AtomicU64,
    pub index_full: AtomicU64,
    pub pods_undecodable: AtomicU64,
    pub lookups: AtomicU64,
    pub lookups_waited: AtomicU64,
    pub lookups_pod_only: AtomicU64,
    pub lookups_unknown: AtomicU64,
    pub waiters_rejected: AtomicU64,
    pub owner_fetches: AtomicU64,
    pub owner_fetch_failures: AtomicU64,
    pub owners_inferred: AtomicU64,
    pub initiator_event_reads: AtomicU64,
    pub initiator_event_read_failures: AtomicU64,
    pub events_posted: AtomicU64,
    pub events_series_updates: AtomicU64,
    pub events_suppressed: AtomicU64,
    pub crash_loop_events: AtomicU64,
    pub crash_loop_updates: AtomicU64,
    pub crash_loop_deaths: AtomicU64,
    pub crash_loop_write_failures: AtomicU64,
    pub events_lost_queue_full: AtomicU64,
    pub events_lost_post_failed: AtomicU64,
    pub events_lost_unlabelled: AtomicU64,
    pub events_lost_evicted: AtomicU64,
    pub events_filtered_type: AtomicU64,
    pub events_filtered_namespace: AtomicU64,
    pub records_ignored: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> KubeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        KubeStats {
            watch_up: self.watch_up.load(Ordering::Relaxed),
            pods_indexed: get(&self.pods_indexed),
            watch_errors: get(&self.watch_errors),
            relists: get(&self.relists),
            index_full: get(&self.index_full),
            pods_undecodable: get(&self.pods_undecodable),
            lookups: get(&self.lookups),
            lookups_waited: get(&self.lookups_waited),
            lookups_pod_only: get(&self.lookups_pod_only),
            lookups_unknown: get(&self.lookups_unknown),
            waiters_rejected: get(&self.waiters_rejected),
            owner_fetches: get(&self.owner_fetches),
            owner_fetch_failures: get(&self.owner_fetch_failures),
            owners_inferred: get(&self.owners_inferred),
            initiator_event_reads: get(&self.initiator_event_reads),
            initiator_event_read_failures: get(&self.initiator_event_read_failures),
            events_posted: get(&self.events_posted),
            events_series_updates: get(&self.events_series_updates),
            events_suppressed: get(&self.events_suppressed),
            crash_loop_events: get(&self.crash_loop_events),
            crash_loop_updates: get(&self.crash_loop_updates),
            crash_loop_deaths: get(&self.crash_loop_deaths),
            crash_loop_write_failures: get(&self.crash_loop_write_failures),
            events_lost_queue_full: get(&self.events_lost_queue_full),
            events_lost_post_failed: get(&self.events_lost_post_failed),
            events_lost_unlabelled: get(&self.events_lost_unlabelled),
            events_lost_evicted: get(&self.events_lost_evicted),
            events_filtered_type: get(&self.events_filtered_type),
            events_filtered_namespace: get(&self.events_filtered_namespace),
            records_ignored: get(&self.records_ignored),
        }
    }
}
