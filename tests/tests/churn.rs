//! Bounded memory under churn, through the real `coroner` binary: for ~35 s, container
//! cgroups are made (a new pod each: five cgroups), a few processes die in each, and the
//! cgroups are removed. Every death is recorded, nothing is lost, `/metrics` stays flat (each
//! pod has series of its own, kept for `--metrics-retention-seconds` after its last death when
//! no pod index says more: 2 s here, so that the churned pods' series come and go within the
//! run), and the resident set grows by no more than the caches' entries for what was churned.
//!
//! Flat RSS proper comes once the caches are full (16,384 cgroups remembered, 65,536 deaths
//! handled), which 35 s of churn does not reach: the caps themselves are asserted at unit
//! level (`correlate::tests::state::tables_stay_at_their_caps_under_100k_processes`, the
//! resolver's `caches_stay_bounded_under_churn`), the long soak is the benchmark's. What
//! this test catches is anything kept per death or per container beyond those entries (a
//! record, a series, a task). Needs root.

use std::time::{Duration, Instant};

use coroner_tests::agent::expect::Container;
use coroner_tests::agent::{Agent, Options};
use coroner_tests::cgroups::Layout;
use coroner_tests::victim::reap;

const RUN: Duration = Duration::from_secs(35);
const WARM_UP: Duration = Duration::from_secs(8);
/// What the agent may grow by per container churned after the warm-up: five remembered
/// cgroups (a path and an identity each) and six handled deaths, ≈ 2 KiB measured. A record
/// kept per death would be 6 KiB more.
const GROWTH_PER_CONTAINER_BYTES: u64 = 4 << 10;
/// Records per container: `exit 0`, `exit 1`, and `fork-kill 3` (the parent's exit and its
/// three children, killed).
const RECORDS_PER_CONTAINER: usize = 6;
/// Standalone, a pod's series live this long after its last death.
const METRICS_RETENTION_SECONDS: &str = "2";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `coroner_events_lost_total` by its `stage` label.
fn losses(agent: &Agent) -> std::collections::BTreeMap<String, u64> {
    let body = agent.get("/metrics").unwrap().body;
    body.lines()
        .filter_map(|l| l.strip_prefix("coroner_events_lost_total{"))
        .filter_map(|l| {
            let (labels, value) = l.split_once("} ")?;
            let stage = labels.split("stage=\"").nth(1)?.split('"').next()?;
            let value: f64 = value.split(' ').next()?.parse().ok()?;
            Some((stage.to_owned(), value as u64))
        })
        .collect()
}

/// Every `/metrics` line that counts a loss, a drop or an overflow, for the failure message:
/// which stage lost what is the first question when one event goes missing.
fn loss_lines(agent: &Agent) -> String {
    let body = agent.get("/metrics").unwrap().body;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            ["lost", "dropped", "evicted", "full", "late", "undecodable"]
                .iter()
                .any(|w| l.contains(w))
        })
        .filter(|l| !l.ends_with(" 0"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The agent, its per-pod series kept [`METRICS_RETENTION_SECONDS`] after their pod's last death.
fn agent_with_short_retention() -> Agent {
    Agent::start_with(&Options {
        args: vec![
            "--metrics-retention-seconds".into(),
            METRICS_RETENTION_SECONDS.into(),
        ],
        ..Options::default()
    })
    .unwrap()
}

#[test]
fn churn_of_short_lived_containers_leaves_the_agent_flat() {
    let mut agent = agent_with_short_retention();
    let pid = agent.pid().unwrap();
    let lost_before = losses(&agent);
    let layouts = [
        Layout::CgroupfsBurstable,
        Layout::SystemdContainerd,
        Layout::CgroupfsGuaranteed,
        Layout::SystemdCrio,
    ];
    let started = Instant::now();
    let (mut containers, mut processes) = (0usize, 0usize);
    let mut warm: Option<(u64, usize, usize)> = None;
    let mut samples = Vec::new();
    let mut last_sample = Instant::now();
    let mut paths = std::collections::HashSet::new();
    while started.elapsed() < RUN {
        let container = Container::new(layouts[containers % layouts.len()]).unwrap();
        // Three starts of the pod's containers, each an init of its own cgroup.
        let siblings = [container.sibling().unwrap(), container.sibling().unwrap()];
        for (start, args) in [&container, &siblings[0], &siblings[1]].into_iter().zip([
            &["exit", "0"][..],
            &["exit", "1"],
            &["fork-kill", "3"],
        ]) {
            let child = start.spawn(args).unwrap();
            reap(child).unwrap();
        }
        for sibling in siblings {
            paths.insert(sibling.path());
        }
        processes += 6;
        containers += 1;
        paths.insert(container.path());
        drop(container);
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            samples.push((started.elapsed().as_secs(), rss_kib(pid)));
            if warm.is_none() && started.elapsed() >= WARM_UP {
                let body = agent.get("/metrics").unwrap().body.len();
                warm = Some((rss_kib(pid), containers, body));
            }
        }
    }
    let (warm_rss, warm_containers, warm_metrics) = warm.expect("the run outlasts the warm-up");

    // Every death of every container is recorded.
    let want = containers * RECORDS_PER_CONTAINER;
    let deadline = Instant::now() + Duration::from_secs(15);
    let recorded = loop {
        let n = agent
            .records()
            .unwrap()
            .iter()
            .filter(|r| paths.contains(&r.record.cgroup))
            .count();
        if n >= want || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let end_rss = rss_kib(pid);
    let end_metrics = agent.get("/metrics").unwrap().body.len();
    eprintln!(
        "churn: {containers} containers ({} cgroups made and removed), {processes} processes, \
         {recorded} records in {:?}; VmRSS {warm_rss} KiB after {warm_containers} containers \
         (warm-up), {end_rss} KiB at the end; /metrics {warm_metrics} → {end_metrics} bytes; \
         samples (s, KiB): {samples:?}",
        containers * 5,
        started.elapsed()
    );
    assert_eq!(
        recorded,
        want,
        "records of the churned containers; losses by stage before {lost_before:?}, now {:?}; \
         the agent's loss counters:\n{}",
        losses(&agent),
        loss_lines(&agent)
    );
    let lost_after = losses(&agent);
    assert_eq!(
        lost_after,
        lost_before,
        "events lost during the churn, by stage (after vs before); the agent's loss counters:\n{}",
        loss_lines(&agent)
    );
    let churned = (containers - warm_containers) as u64;
    let per_container = end_rss.saturating_sub(warm_rss) * 1024 / churned.max(1);
    eprintln!("churn: {per_container} bytes of VmRSS per container after the warm-up");
    assert!(
        per_container <= GROWTH_PER_CONTAINER_BYTES,
        "VmRSS grew from {warm_rss} to {end_rss} KiB over {churned} containers: \
         {per_container} bytes each"
    );
    // The pods of the last seconds have series at any time: the body's size moves with the
    // churn's pace, around a level that does not rise (kept series would quadruple it here).
    assert!(
        end_metrics <= warm_metrics * 3 / 2 + 2048,
        "/metrics grew from {warm_metrics} to {end_metrics} bytes"
    );
    agent.stop().unwrap();
}
