//! The exposition is parsed back and checked by value and label, as Prometheus would read it.
#![expect(
    clippy::float_cmp,
    reason = "the values are small integers, written and read back exactly"
)]

use super::exposition::{Exposition, parse};

use super::*;
use crate::export::recent::tests::record;
use crate::record::{ExecFailure, OomKill, OomScope, Reason, Sender, SenderKind};

pub(super) fn scrape(metrics: &Metrics) -> Exposition {
    parse(&metrics.encode())
}

pub(super) fn dying(namespace: &str, pod: &str) -> TerminationRecord {
    let mut r = record(Some(namespace), Some(pod), 7);
    r.owner_kind = Some("Deployment".into());
    r.owner_name = Some("cart".into());
    r
}

pub(super) fn oom_killed(namespace: &str, pod: &str) -> TerminationRecord {
    let mut r = dying(namespace, pod);
    r.reason = Reason::OomKilled;
    r.exit_code = None;
    r.signal = Some(9);
    r.exit_status = 137;
    r.sender = Some(Sender {
        pid: 0,
        comm: String::new(),
        cgroup: String::new(),
        kind: SenderKind::Kernel,
    });
    r.oom = Some(OomKill {
        scope: OomScope::Memcg,
        victim_rss_bytes: Some(300 << 20),
        anon_rss_bytes: Some(290 << 20),
        file_rss_bytes: Some(10 << 20),
        shmem_rss_bytes: Some(0),
        memory_limit_bytes: Some(256 << 20),
        limit_cgroup: Some("/kubepods/burstable/pod1/abc".into()),
        trigger_pid: 7,
        trigger_comm: "app".into(),
        oom_score_adj: 0,
    });
    r.container_memory_peak_bytes = Some(256 << 20);
    r.container_memory_limit_bytes = Some(256 << 20);
    r.exec_failure = Some(ExecFailure {
        path: "/usr/bin/helper".into(),
        errno: "ENOENT".into(),
        pid: 8,
    });
    r
}

const POD: [(&str, &str); 4] = [
    ("namespace", "shop"),
    ("pod", "cart-1"),
    ("uid", "1"),
    ("container", "app"),
];

#[test]
fn every_family_is_exposed_with_its_type() {
    let metrics = Metrics::default();
    let mut r = oom_killed("shop", "cart-1");
    r.grace_seconds = Some(3.0);
    metrics.observe(&r);
    metrics.set_probe_attached("process_exit", true);
    let e = scrape(&metrics);
    for (family, kind) in [
        ("coroner_terminations", "counter"),
        ("coroner_oom_kills", "counter"),
        ("coroner_events_lost", "counter"),
        ("coroner_oom_victim_rss_bytes", "gauge"),
        ("coroner_container_memory_peak_bytes", "gauge"),
        ("coroner_container_memory_limit_bytes", "gauge"),
        ("coroner_grace_period_seconds", "histogram"),
        ("coroner_signals", "counter"),
        ("coroner_exec_failures", "counter"),
        ("coroner_events", "counter"),
        ("coroner_kernel_events_filtered", "counter"),
        ("coroner_kernel_events_emitted", "counter"),
        ("coroner_deaths_outside_containers", "counter"),
        ("coroner_kube_watch_up", "gauge"),
        ("coroner_probe_attached", "gauge"),
        ("coroner_build_info", "gauge"),
        ("coroner_pod_series_dropped", "counter"),
    ] {
        assert_eq!(
            e.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
}

#[test]
fn closed_label_sets_exist_before_any_death() {
    let metrics = Metrics::default();
    let e = scrape(&metrics);
    for stage in LossStage::ALL {
        assert_eq!(
            e.value("coroner_events_lost_total", &[("stage", stage.as_str())]),
            0.0
        );
    }
    for kind in EventKind::ALL {
        assert_eq!(
            e.value("coroner_events_total", &[("kind", kind.as_str())]),
            0.0
        );
    }
    for kind in FilteredKind::ALL {
        let name = "coroner_kernel_events_filtered_total";
        assert_eq!(e.value(name, &[("kind", kind.as_str())]), 0.0);
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(e.value("coroner_build_info", &[("version", version)]), 1.0);
    assert_eq!(e.value("coroner_grace_period_seconds_count", &[]), 0.0);
}

#[test]
fn a_death_shows_in_every_family_it_concerns() {
    let metrics = Metrics::default();
    let mut r = oom_killed("shop", "cart-1");
    metrics.observe(&r);
    r.reason = Reason::GracePeriodExpired;
    r.oom = None;
    r.exec_failure = None;
    r.main_process = false;
    r.grace_seconds = Some(30.2);
    r.sender = Some(Sender {
        pid: 1,
        comm: "containerd-shim".into(),
        cgroup: "/system.slice/containerd.service".into(),
        kind: SenderKind::Host,
    });
    metrics.observe(&r);
    metrics.observe(&r);

    let e = scrape(&metrics);
    let owner = [("workload_kind", "Deployment"), ("workload_name", "cart")];
    let term = |reason, main| {
        let mut l: Vec<(&str, &str)> = POD.to_vec();
        l.extend(owner);
        l.extend([("reason", reason), ("main_process", main)]);
        e.value("coroner_terminations_total", &l)
    };
    assert_eq!(term("OOMKilled", "true"), 1.0);
    assert_eq!(term("GracePeriodExpired", "false"), 2.0);

    let mut oom: Vec<(&str, &str)> = POD.to_vec();
    oom.extend(owner);
    oom.push(("scope", "memcg"));
    assert_eq!(e.value("coroner_oom_kills_total", &oom), 1.0);
    assert_eq!(
        e.value("coroner_oom_victim_rss_bytes", &POD),
        f64::from(300u32 << 20)
    );
    assert_eq!(
        e.value("coroner_container_memory_peak_bytes", &POD),
        f64::from(256u32 << 20)
    );
    assert_eq!(
        e.value("coroner_container_memory_limit_bytes", &POD),
        f64::from(256u32 << 20)
    );

    let mut exec: Vec<(&str, &str)> = POD.to_vec();
    exec.push(("errno", "ENOENT"));
    assert_eq!(e.value("coroner_exec_failures_total", &exec), 1.0);

    let signals = "coroner_signals_total";
    assert_eq!(
        e.value(signals, &[("signal", "SIGKILL"), ("sender_kind", "kernel")]),
        1.0
    );
    assert_eq!(
        e.value(signals, &[("signal", "SIGKILL"), ("sender_kind", "host")]),
        2.0
    );

    assert_eq!(e.value("coroner_grace_period_seconds_count", &[]), 2.0);
    let bucket = "coroner_grace_period_seconds_bucket";
    assert_eq!(e.value(bucket, &[("le", "30.0")]), 0.0);
    assert_eq!(e.value(bucket, &[("le", "35.0")]), 2.0);
    assert_eq!(e.value(bucket, &[("le", "600.0")]), 2.0);
}

#[test]
fn unknown_metadata_is_an_empty_label_never_a_missing_one() {
    let metrics = Metrics::default();
    let mut r = record(None, None, 9);
    r.reason = Reason::Crashed;
    r.exit_code = None;
    r.signal = Some(11);
    r.oom = oom_killed("x", "y").oom;
    metrics.observe(&r);

    let e = scrape(&metrics);
    let terminations = e.find("coroner_terminations_total", &[("reason", "Crashed")]);
    assert_eq!(terminations.len(), 1);
    for key in [
        "namespace",
        "pod",
        "container",
        "workload_kind",
        "workload_name",
    ] {
        assert_eq!(
            terminations[0].labels.get(key).map(String::as_str),
            Some(""),
            "{key}"
        );
    }
    let ooms = e.find("coroner_oom_kills_total", &[]);
    assert_eq!(ooms.len(), 1);
    assert_eq!(
        ooms[0].labels.get("namespace").map(String::as_str),
        Some("")
    );
    assert_eq!(
        e.value(
            "coroner_signals_total",
            &[("signal", "SIGSEGV"), ("sender_kind", "")]
        ),
        1.0
    );
}

#[test]
fn kernel_slots_are_shown_as_published() {
    let metrics = Metrics::default();
    let mut slots = [0u64; agent_ebpf::counter::COUNT as usize];
    slots[agent_ebpf::counter::LOST_EXIT as usize] = 3;
    slots[agent_ebpf::counter::LOST_OOM as usize] = 2;
    slots[agent_ebpf::counter::SIGNAL_FILTERED as usize] = 1000;
    slots[agent_ebpf::counter::EMITTED as usize] = 50;
    let publish = |slots: &[u64]| {
        metrics.publish_kernel_stage(KernelStageStats {
            kernel: KernelCounters::from_slots(slots),
            ..KernelStageStats::default()
        });
    };
    publish(&slots);
    assert_eq!(metrics.lost_count(LossStage::Kernel), 5);
    slots[agent_ebpf::counter::LOST_EXIT as usize] = 6;
    publish(&slots);
    assert_eq!(metrics.lost_count(LossStage::Kernel), 8);
    // A stage's own count and the counts of where it happened add up.
    metrics.lost(LossStage::Kernel, 1);
    assert_eq!(metrics.lost_count(LossStage::Kernel), 9);

    let e = scrape(&metrics);
    let filtered = "coroner_kernel_events_filtered_total";
    assert_eq!(e.value(filtered, &[("kind", "signal")]), 1000.0);
    assert_eq!(e.value(filtered, &[("kind", "exit")]), 0.0);
    assert_eq!(e.value("coroner_kernel_events_emitted_total", &[]), 50.0);
    let lost = "coroner_kernel_events_lost_total";
    assert_eq!(e.value(lost, &[("kind", "exit")]), 6.0);
    assert_eq!(e.value(lost, &[("kind", "oom")]), 2.0);
    assert_eq!(
        e.value("coroner_events_lost_total", &[("stage", "kernel")]),
        9.0
    );
}

#[test]
fn every_closed_label_set_exists_from_the_start() {
    let e = scrape(&Metrics::default());
    for stage in LossStage::ALL {
        let lost = e.value("coroner_events_lost_total", &[("stage", stage.as_str())]);
        assert_eq!(lost, 0.0);
    }
    for kind in EventKind::ALL {
        assert_eq!(
            e.value("coroner_events_total", &[("kind", kind.as_str())]),
            0.0
        );
    }
    for kind in FilteredKind::ALL {
        let filtered = "coroner_kernel_events_filtered_total";
        assert_eq!(e.value(filtered, &[("kind", kind.as_str())]), 0.0);
    }
    assert_eq!(e.value("coroner_kube_watch_up", &[]), 0.0);
}

#[test]
fn health_setters_show_up() {
    let metrics = Metrics::default();
    metrics.lost(LossStage::Json, 2);
    let mut events = EventCounts::default();
    events.note(EventKind::Oom);
    let mut stats = KernelStageStats {
        events,
        ..KernelStageStats::default()
    };
    stats.correlator.deaths_outside_containers = 3;
    let mut slots = [0u64; agent_ebpf::counter::COUNT as usize];
    slots[agent_ebpf::counter::EXIT_HOST as usize] = 1;
    stats.kernel = KernelCounters::from_slots(&slots);
    metrics.publish_kernel_stage(stats);
    let watch_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let up = watch_up.clone();
    metrics.watch_kube(move || crate::kube::KubeStats {
        watch_up: up.load(std::sync::atomic::Ordering::Relaxed),
        ..crate::kube::KubeStats::default()
    });
    metrics.set_probe_attached("signal_generate", true);
    metrics.set_probe_attached("mark_victim", false);

    let e = scrape(&metrics);
    assert_eq!(
        e.value("coroner_events_lost_total", &[("stage", "json")]),
        2.0
    );
    assert_eq!(e.value("coroner_events_total", &[("kind", "oom")]), 1.0);
    // The agent's and the kernel's, added.
    assert_eq!(e.value("coroner_deaths_outside_containers_total", &[]), 4.0);
    assert_eq!(e.value("coroner_kube_watch_up", &[]), 1.0);
    assert_eq!(
        e.value("coroner_probe_attached", &[("probe", "signal_generate")]),
        1.0
    );
    assert_eq!(
        e.value("coroner_probe_attached", &[("probe", "mark_victim")]),
        0.0
    );

    // Read at the scrape, not when it was set up.
    watch_up.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(scrape(&metrics).value("coroner_kube_watch_up", &[]), 0.0);
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::default();
    let mut r = dying("ns", "p");
    r.container = Some("we\"ird\\name\nx".into());
    metrics.observe(&r);
    let e = scrape(&metrics);
    assert_eq!(
        e.find(
            "coroner_terminations_total",
            &[("container", "we\"ird\\name\nx")]
        )
        .len(),
        1
    );
}
