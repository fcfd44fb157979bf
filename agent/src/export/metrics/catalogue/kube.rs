//! The Kubernetes side's counters on `/metrics`: the pod watch, lookups, the Event poster.

use super::{Entry, Export, Family, LossStage, Samples, counter, gauge};
use crate::kube::KubeStats;

static KUBE_WATCH_UP: Family = gauge(
    "kube_watch_up",
    "1 while the pod watch on the Kubernetes API is synced, else 0",
);
static KUBE_PODS_INDEXED: Family = gauge(
    "kube_pods_indexed",
    "Pods in the index, deleted ones kept for a while included",
);
static KUBE_WATCH_ERRORS: Family = counter(
    "kube_watch_errors",
    "Errors of the pod watch, each followed by a backoff",
);
static KUBE_RELISTS: Family = counter(
    "kube_relists",
    "Full lists of the node's pods: the first, and one after each expired watch",
);
static KUBE_PODS_UNDECODABLE: Family = counter(
    "kube_pods_undecodable",
    "Pods the object model could not read whole (only their metadata was used)",
);
static KUBE_PODS_NOT_INDEXED: Family = counter(
    "kube_pods_not_indexed",
    "New pods not indexed because the index was full of live pods",
);
static KUBE_LOOKUPS: Family = counter("kube_lookups", "Pod metadata lookups for records");
static KUBE_LOOKUPS_WAITED: Family = counter(
    "kube_lookups_waited",
    "Pod metadata lookups that waited for the pod or container to appear",
);
static KUBE_LOOKUPS_POD_ONLY: Family = counter(
    "kube_lookups_pod_only",
    "Pod metadata lookups answered with the pod but without the container",
);
static KUBE_LOOKUPS_UNKNOWN: Family = counter(
    "kube_lookups_unknown",
    "Pod metadata lookups answered without anything: the pod is unknown",
);
static KUBE_LOOKUP_WAITS_REJECTED: Family = counter(
    "kube_lookup_waits_rejected",
    "Pod metadata lookups that could not wait because too many were waiting",
);
static KUBE_OWNER_FETCHES: Family = counter(
    "kube_owner_fetches",
    "GETs of a ReplicaSet or Job to find a pod's workload",
);
static KUBE_OWNER_FETCH_FAILURES: Family = counter(
    "kube_owner_fetch_failures",
    "GETs of a ReplicaSet or Job that failed",
);
static KUBE_OWNERS_INFERRED: Family = counter(
    "kube_owners_inferred",
    "Deployments named from the pod-template-hash because their ReplicaSet was gone",
);
static KUBE_INITIATOR_EVENT_READS: Family = counter(
    "kube_initiator_event_reads",
    "Lists of one pod's Events to tell who decided a death",
);
static KUBE_INITIATOR_EVENT_READ_FAILURES: Family = counter(
    "kube_initiator_event_read_failures",
    "Lists or watches of a pod's Events that failed; the initiator was decided without them",
);
static KUBE_EVENTS_POSTED: Family = counter("kube_events_posted", "Kubernetes Events created");
static KUBE_EVENT_SERIES_UPDATES: Family = counter(
    "kube_event_series_updates",
    "Series updates of Kubernetes Events already posted",
);
static KUBE_EVENTS_SUPPRESSED: Family = counter(
    "kube_events_suppressed",
    "Deaths held back by the Event rate limit; they reach the API server in a series count",
);
static KUBE_CRASH_LOOP_WRITES: Family = counter(
    "kube_crash_loop_writes",
    "Writes of crash-loop Events, by result: created, updated, failed (tried again later)",
);
static KUBE_CRASH_LOOP_DEATHS: Family = counter(
    "kube_crash_loop_deaths",
    "Deaths told by their container's crash-loop Event instead of an Event of their own",
);
static KUBE_EVENTS_FILTERED: Family = counter(
    "kube_events_filtered",
    "Deaths that get no Event by the operator's choice, by reason: type (--events), namespace",
);
static RECORDS_IGNORED: Family = counter(
    "records_ignored",
    "Deaths in pods annotated coroner.io/ignore: \"true\": no record, metric or Event",
);
static KUBE_EVENTS_LOST: Family = counter(
    "kube_events_lost",
    "Deaths whose Kubernetes Event was dropped, by cause (in stage kube_event)",
);

/// The Kubernetes side: the pod watch, lookups, the Event poster.
pub(in crate::export::metrics) fn kube(stats: &KubeStats, out: &mut Samples) {
    let lost = |cause| Entry::by(&KUBE_EVENTS_LOST, "cause", cause).lost_at(LossStage::KubeEvent);
    export!(out, *stats, KubeStats {
        watch_up => Entry::of(&KUBE_WATCH_UP),
        pods_indexed => Entry::of(&KUBE_PODS_INDEXED),
        watch_errors => Entry::of(&KUBE_WATCH_ERRORS),
        relists => Entry::of(&KUBE_RELISTS),
        pods_undecodable => Entry::of(&KUBE_PODS_UNDECODABLE),
        index_full => Entry::of(&KUBE_PODS_NOT_INDEXED),
        lookups => Entry::of(&KUBE_LOOKUPS),
        lookups_waited => Entry::of(&KUBE_LOOKUPS_WAITED),
        lookups_pod_only => Entry::of(&KUBE_LOOKUPS_POD_ONLY),
        lookups_unknown => Entry::of(&KUBE_LOOKUPS_UNKNOWN),
        waiters_rejected => Entry::of(&KUBE_LOOKUP_WAITS_REJECTED),
        owner_fetches => Entry::of(&KUBE_OWNER_FETCHES),
        owner_fetch_failures => Entry::of(&KUBE_OWNER_FETCH_FAILURES),
        owners_inferred => Entry::of(&KUBE_OWNERS_INFERRED),
        initiator_event_reads => Entry::of(&KUBE_INITIATOR_EVENT_READS),
        initiator_event_read_failures => Entry::of(&KUBE_INITIATOR_EVENT_READ_FAILURES),
        events_posted => Entry::of(&KUBE_EVENTS_POSTED),
        events_series_updates => Entry::of(&KUBE_EVENT_SERIES_UPDATES),
        events_suppressed => Entry::of(&KUBE_EVENTS_SUPPRESSED),
        crash_loop_events => Entry::by(&KUBE_CRASH_LOOP_WRITES, "result", "created"),
        crash_loop_updates => Entry::by(&KUBE_CRASH_LOOP_WRITES, "result", "updated"),
        crash_loop_write_failures => Entry::by(&KUBE_CRASH_LOOP_WRITES, "result", "failed"),
        crash_loop_deaths => Entry::of(&KUBE_CRASH_LOOP_DEATHS),
        events_lost_queue_full => lost("queue_full"),
        events_lost_post_failed => lost("post_failed"),
        events_lost_unlabelled => lost("unlabelled"),
        events_lost_evicted => lost("evicted"),
        events_filtered_type => Entry::by(&KUBE_EVENTS_FILTERED, "reason", "type"),
        events_filtered_namespace => Entry::by(&KUBE_EVENTS_FILTERED, "reason", "namespace"),
        records_ignored => Entry::of(&RECORDS_IGNORED),
    });
}
