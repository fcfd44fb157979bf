//! The metric families and their registration: names, types, units and help in one place.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::labels::{
    ContainerLabels, ExecFailureLabels, KindLabels, OomLabels, ProbeLabels, SignalLabels,
    StageLabels, TerminationLabels, VersionLabels,
};
use super::series::PodSeries;

/// SIGTERM→SIGKILL: Kubernetes' default grace is 30 s; 30 and 35 tell "the default expired"
/// from "it took a little longer", the tail reaches long `terminationGracePeriodSeconds`.
const GRACE_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CauseLabels {
    pub cause: &'static str,
}

pub(super) struct Families {
    pub terminations: Family<TerminationLabels, Counter>,
    pub oom_kills: Family<OomLabels, Counter>,
    pub events_lost: Family<StageLabels, Counter>,
    pub oom_victim_rss: Family<ContainerLabels, Gauge>,
    pub container_memory_peak: Family<ContainerLabels, Gauge>,
    pub container_memory_limit: Family<ContainerLabels, Gauge>,
    pub grace_period: Histogram,
    pub signals: Family<SignalLabels, Counter>,
    pub exec_failures: Family<ExecFailureLabels, Counter>,
    pub events: Family<KindLabels, Counter>,
    pub kernel_filtered: Family<KindLabels, Counter>,
    pub kernel_emitted: Counter,
    pub deaths_outside_containers: Counter,
    pub kube_watch_up: Gauge,
    pub probe_attached: Family<ProbeLabels, Gauge>,
    pub build_info: Family<VersionLabels, Gauge>,
    pub pod_series_dropped: Family<CauseLabels, Counter>,
}

impl Families {
    pub fn new() -> Self {
        Self {
            terminations: Family::default(),
            oom_kills: Family::default(),
            events_lost: Family::default(),
            oom_victim_rss: Family::default(),
            container_memory_peak: Family::default(),
            container_memory_limit: Family::default(),
            grace_period: Histogram::new(GRACE_BUCKETS),
            signals: Family::default(),
            exec_failures: Family::default(),
            events: Family::default(),
            kernel_filtered: Family::default(),
            kernel_emitted: Counter::default(),
            deaths_outside_containers: Counter::default(),
            kube_watch_up: Gauge::default(),
            probe_attached: Family::default(),
            build_info: Family::default(),
            pod_series_dropped: Family::default(),
        }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "terminations",
            "Recorded deaths of container processes, by verdict",
            self.terminations.clone(),
        );
        r.register(
            "oom_kills",
            "Processes killed by the kernel OOM killer",
            self.oom_kills.clone(),
        );
        r.register(
            "events_lost",
            "Events dropped, by the stage that dropped them",
            self.events_lost.clone(),
        );
        r.register_with_unit(
            "oom_victim_rss",
            "RSS (anon + file + shmem) of the container's last OOM victim at the kill",
            Unit::Bytes,
            self.oom_victim_rss.clone(),
        );
        r.register_with_unit(
            "container_memory_peak",
            "Peak memory usage of the container's memory cgroup, at its last recorded death",
            Unit::Bytes,
            self.container_memory_peak.clone(),
        );
        r.register_with_unit(
            "container_memory_limit",
            "Memory limit of the container's memory cgroup, at its last recorded death",
            Unit::Bytes,
            self.container_memory_limit.clone(),
        );
        r.register_with_unit(
            "grace_period",
            "Time from the first SIGTERM to the SIGKILL of processes killed after a SIGTERM",
            Unit::Seconds,
            self.grace_period.clone(),
        );
        r.register(
            "signals",
            "Fatal signals that killed recorded processes, by who sent them",
            self.signals.clone(),
        );
        r.register(
            "exec_failures",
            "Deaths preceded by a failed execve in the container, by errno",
            self.exec_failures.clone(),
        );
        r.register(
            "events",
            "Kernel events handled by the agent",
            self.events.clone(),
        );
        r.register(
            "kernel_events_filtered",
            "Kernel events the programs did not send to user space, as not needed",
            self.kernel_filtered.clone(),
        );
        r.register(
            "kernel_events_emitted",
            "Events the programs put into the ring buffer",
            self.kernel_emitted.clone(),
        );
        r.register(
            "deaths_outside_containers",
            "Process deaths outside any container, counted but not recorded",
            self.deaths_outside_containers.clone(),
        );
        r.register(
            "kube_watch_up",
            "1 while the pod watch on the Kubernetes API is synced, else 0",
            self.kube_watch_up.clone(),
        );
        r.register(
            "probe_attached",
            "1 when the kernel probe is attached, else 0",
            self.probe_attached.clone(),
        );
        r.register(
            "build_info",
            "The agent's version; always 1",
            self.build_info.clone(),
        );
        r.register(
            "pod_series_dropped",
            "Pods whose series were removed: expired after the retention, or pushed out by the cap",
            self.pod_series_dropped.clone(),
        );
    }

    pub fn forget(&self, pod: &PodSeries) {
        for labels in &pod.terminations {
            self.terminations.remove(labels);
        }
        for labels in &pod.oom_kills {
            self.oom_kills.remove(labels);
        }
        for labels in &pod.containers {
            self.oom_victim_rss.remove(labels);
            self.container_memory_peak.remove(labels);
            self.container_memory_limit.remove(labels);
        }
        for labels in &pod.exec_failures {
            self.exec_failures.remove(labels);
        }
    }
}
