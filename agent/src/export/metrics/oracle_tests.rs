//! The per-pod families are written by hand (`text`); prometheus-client's `Family` is the
//! oracle: the same records through `Family`s, as the agent did before, must give the same
//! lines, metadata and samples, in both formats (`OpenMetrics`' `_created`, which `Family` does
//! not write, aside).

use std::collections::BTreeSet;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::tests::oom_killed;
use super::{Metrics, classic};
use crate::record::{Cause, Reason, TerminationRecord};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    pod: String,
    uid: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TerminationLabels {
    #[prometheus(flatten)]
    container: ContainerLabels,
    workload_kind: String,
    workload_name: String,
    reason: &'static str,
    main_process: &'static str,
    initiator: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OomLabels {
    #[prometheus(flatten)]
    container: ContainerLabels,
    workload_kind: String,
    workload_name: String,
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecFailureLabels {
    #[prometheus(flatten)]
    container: ContainerLabels,
    errno: String,
}

/// The per-pod families as `Family`s, registered as the agent registered them.
fn oracle(records: &[TerminationRecord]) -> Registry {
    let terminations = Family::<TerminationLabels, Counter>::default();
    let oom_kills = Family::<OomLabels, Counter>::default();
    let gauges: [Family<ContainerLabels, Gauge>; 3] = Default::default();
    let exec_failures = Family::<ExecFailureLabels, Counter>::default();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let bytes = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for r in records {
        let container = ContainerLabels {
            namespace: text(&r.namespace),
            pod: text(&r.pod),
            uid: text(&r.pod_uid),
            container: text(&r.container),
        };
        terminations
            .get_or_create(&TerminationLabels {
                container: container.clone(),
                workload_kind: text(&r.owner_kind),
                workload_name: text(&r.owner_name),
                reason: r.reason.as_str(),
                main_process: if r.main_process { "true" } else { "false" },
                initiator: r.initiator.as_str(),
                cause: r.cause.as_ref().map_or("", |c| c.reason.as_str()),
            })
            .inc();
        if let Some(oom) = &r.oom {
            oom_kills
                .get_or_create(&OomLabels {
                    container: container.clone(),
                    workload_kind: text(&r.owner_kind),
                    workload_name: text(&r.owner_name),
                    scope: oom.scope.as_str(),
                })
                .inc();
            if let Some(rss) = oom.victim_rss_bytes {
                gauges[0].get_or_create(&container).set(bytes(rss));
            }
        }
        if let Some(peak) = r.container_memory_peak_bytes {
            gauges[1].get_or_create(&container).set(bytes(peak));
        }
        if let Some(limit) = r.container_memory_limit_bytes {
            gauges[2].get_or_create(&container).set(bytes(limit));
        }
        if let Some(failure) = &r.exec_failure {
            exec_failures
                .get_or_create(&ExecFailureLabels {
                    container,
                    errno: failure.errno.clone(),
                })
                .inc();
        }
    }
    let mut registry = Registry::with_prefix("coroner");
    let [victim_rss, peak, limit] = gauges;
    registry.register(
        "terminations",
        "Recorded deaths of container processes, by verdict, initiator and cause",
        terminations,
    );
    registry.register(
        "oom_kills",
        "Processes killed by the kernel OOM killer",
        oom_kills,
    );
    registry.register_with_unit(
        "oom_victim_rss",
        "RSS (anon + file + shmem) of the container's last OOM victim at the kill",
        Unit::Bytes,
        victim_rss,
    );
    registry.register_with_unit(
        "container_memory_peak",
        "Peak memory usage of the container's memory cgroup, at its last recorded death",
        Unit::Bytes,
        peak,
    );
    registry.register_with_unit(
        "container_memory_limit",
        "Memory limit of the container's memory cgroup, at its last recorded death",
        Unit::Bytes,
        limit,
    );
    registry.register(
        "exec_failures",
        "Deaths preceded by a failed execve in the container, by errno",
        exec_failures,
    );
    registry
}

const POD_FAMILIES: [&str; 6] = [
    "coroner_terminations",
    "coroner_oom_kills",
    "coroner_oom_victim_rss_bytes",
    "coroner_container_memory_peak_bytes",
    "coroner_container_memory_limit_bytes",
    "coroner_exec_failures",
];

/// The lines about the per-pod families, metadata included, in a comparable order.
fn pod_lines(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter(|l| {
            let name = l
                .strip_prefix("# ")
                .map_or(*l, |meta| meta.get(5..).unwrap_or_default());
            POD_FAMILIES.iter().any(|f| {
                name.strip_prefix(f)
                    .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
            })
        })
        .collect()
}

fn varied_records() -> Vec<TerminationRecord> {
    let mut records = Vec::new();
    for (i, pod) in ["cart-1", "cart-2", "we\"ird\\pod\nname"]
        .iter()
        .enumerate()
    {
        for reason in [Reason::Error, Reason::Crashed, Reason::OomKilled] {
            let mut r = oom_killed("shop", pod);
            r.reason = reason;
            r.main_process = reason != Reason::Crashed;
            r.container = Some(format!("c{i}"));
            records.push(r);
        }
        let mut r = oom_killed("shop", pod);
        r.owner_kind = None;
        r.owner_name = None;
        r.oom = None;
        r.container_memory_limit_bytes = Some(u64::MAX);
        r.exec_failure.as_mut().expect("exec failure").errno = "EACCES".into();
        records.push(r.clone());
        // An init relaying its child's OOM kill: the `cause` label is the child's verdict.
        r.reason = Reason::Error;
        r.cause = Some(Cause {
            pid: 4300,
            comm: "python3".into(),
            reason: Reason::OomKilled,
            signal: Some(9),
            oom: None,
            seconds_before: 0.2,
        });
        records.push(r);
    }
    let mut unknown = oom_killed("x", "y");
    (unknown.namespace, unknown.pod, unknown.container) = (None, None, None);
    records.push(unknown);
    records
}

#[test]
fn per_pod_families_read_as_prometheus_client_writes_them() {
    let records = varied_records();
    let metrics = Metrics::default();
    for r in &records {
        metrics.observe(r);
    }
    let mut expected = String::new();
    encode(&mut expected, &oracle(&records)).expect("encode");

    let ours = metrics.encode();
    let want = pod_lines(&expected);
    assert!(want.len() > 30, "the oracle wrote {want:?}");
    // `Family` writes no `_created`; ours has one per counter (their values: `text`'s tests).
    let (created, rest): (BTreeSet<&str>, BTreeSet<&str>) = pod_lines(&ours)
        .into_iter()
        .partition(|l| l.contains("_created{"));
    assert_eq!(rest, want, "OpenMetrics:\n{ours}");
    let totals = want.iter().filter(|l| l.contains("_total{")).count();
    assert_eq!(created.len(), totals, "{created:#?}");

    let classic_expected = classic::to_classic_text(&expected);
    let classic_ours = metrics.encode_classic();
    assert_eq!(
        pod_lines(&classic_ours),
        pod_lines(&classic_expected),
        "classic:\n{classic_ours}"
    );
}

#[test]
fn families_without_series_are_left_out_as_the_registry_leaves_them() {
    let metrics = Metrics::default();
    for text in [metrics.encode(), metrics.encode_classic()] {
        assert!(pod_lines(&text).is_empty(), "{text}");
    }
}
