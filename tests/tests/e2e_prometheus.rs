//! End to end with the monitoring side: a real Prometheus (Debian's package) scrapes the real
//! `coroner` binary every second while processes die in kubelet-style memory cgroups, and the
//! deaths must be queryable through Prometheus' HTTP API, counted right over a range in which a
//! series is born, retired and born again; `promtool check metrics` must accept the agent's real
//! exposition. Needs root and `/usr/bin/prometheus` (`cargo xtask test`
//! installs it); a missing Prometheus fails these tests, it does not skip them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use coroner::export::LossStage;
use coroner_tests::agent::expect::{Container, death};
use coroner_tests::agent::{Agent, Options, Record};
use coroner_tests::cgroups::Layout;
use coroner_tests::prometheus::{self, Prometheus, Sample};
use coroner_tests::victim::{reap, signal_pid};

const JOB: &str = "coroner-e2e";
const LIMIT: u64 = 64 << 20;
const RECORD_WAIT: Duration = Duration::from_secs(10);
/// Scrapes run every second; a sample is queryable right after its scrape.
const SCRAPE_WAIT: Duration = Duration::from_secs(20);

fn total(samples: &[Sample]) -> f64 {
    samples.iter().map(|s| s.value).sum()
}

/// Waits until Prometheus' `promql` (summed over its series) equals the number of the agent's
/// records that `counts` — which holds the test's own death, and on a machine running nothing
/// else, only it: the value is then 1. Deaths staged by other tests on the same node are
/// recorded by this agent too, and counted on both sides.
fn wait_matches_records(
    prometheus: &mut Prometheus,
    agent: &mut Agent,
    promql: &str,
    counts: impl Fn(&Record) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + SCRAPE_WAIT;
    loop {
        let samples = prometheus.query(promql).unwrap();
        let records = agent.records().unwrap();
        let expected = records.iter().filter(|r| counts(r)).count();
        assert!(expected >= 1, "the test's own death is among the records");
        #[expect(clippy::cast_precision_loss, reason = "a handful of records")]
        let expected = expected as f64;
        if (total(&samples) - expected).abs() < f64::EPSILON {
            if expected > 1.0 {
                eprintln!(
                    "{promql}: {expected} — deaths staged elsewhere on this node are counted too"
                );
            }
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{promql} is {samples:?} in Prometheus, the agent wrote {expected} such records\nprometheus log:\n{}",
            prometheus.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn prometheus_sees_the_staged_deaths() {
    let mut agent = Agent::start().unwrap();
    let mut prometheus = Prometheus::start(JOB, agent.addr()).unwrap();
    let instance = agent.addr().to_string();
    let up = prometheus
        .wait_for(&format!("up{{job=\"{JOB}\"}}"), SCRAPE_WAIT, |s| {
            s.len() == 1 && (s[0].value - 1.0).abs() < f64::EPSILON
        })
        .unwrap();
    assert_eq!(up[0].labels["instance"], instance);

    // An OOM kill at a 64 MiB container limit.
    let oom = Container::new(Layout::CgroupfsBurstable).unwrap();
    oom.cgroup.set_limit(LIMIT).unwrap();
    let child = oom.spawn(&["alloc", "300"]).unwrap();
    let oom_pid = child.id();
    let reaped = reap(child).unwrap();
    assert_eq!(
        reaped.signal(),
        Some(libc::SIGKILL),
        "the OOM killer took it"
    );
    let record = agent.wait_for_pid(oom_pid, RECORD_WAIT).unwrap();
    death(&record, reaped).unwrap();
    assert_eq!(record.reason(), "OOMKilled", "{}", record.json);
    assert_eq!(record.sub("oom", "scope"), "memcg", "{}", record.json);

    // A SIGTERM from outside the container, not handled.
    let term = Container::new(Layout::SystemdContainerd).unwrap();
    let child = term.spawn(&["sleep", "30"]).unwrap();
    let term_pid = child.id();
    signal_pid(term_pid, libc::SIGTERM);
    let reaped = reap(child).unwrap();
    assert_eq!(reaped.signal(), Some(libc::SIGTERM));
    let record = agent.wait_for_pid(term_pid, RECORD_WAIT).unwrap();
    death(&record, reaped).unwrap();
    assert_eq!(record.reason(), "Terminated", "{}", record.json);

    let ooms = wait_matches_records(
        &mut prometheus,
        &mut agent,
        "coroner_terminations_total{reason=\"OOMKilled\"}",
        |r| r.reason() == "OOMKilled",
    );
    for s in &ooms {
        assert_eq!(
            (s.labels["job"].as_str(), s.labels["instance"].as_str()),
            (JOB, instance.as_str()),
            "{s:?}"
        );
    }
    assert!(
        ooms.iter()
            .any(|s| s.labels.get("main_process").map(String::as_str) == Some("true")),
        "the main process's death: {ooms:?}"
    );
    wait_matches_records(
        &mut prometheus,
        &mut agent,
        "coroner_oom_kills_total{scope=\"memcg\"}",
        |r| r.sub("oom", "scope") == "memcg",
    );
    wait_matches_records(
        &mut prometheus,
        &mut agent,
        "coroner_terminations_total{reason=\"Terminated\"}",
        |r| r.reason() == "Terminated",
    );

    let lost = prometheus.query("coroner_events_lost_total").unwrap();
    let stages: BTreeSet<&str> = lost
        .iter()
        .filter_map(|s| s.labels.get("stage").map(String::as_str))
        .collect();
    let every: BTreeSet<&str> = LossStage::ALL.iter().map(|s| s.as_str()).collect();
    assert!(
        every.is_subset(&stages),
        "a coroner_events_lost_total series for every stage {every:?}; Prometheus has {stages:?}"
    );
    for stage in ["kernel", "channel", "label", "json"] {
        assert!(stages.contains(stage), "stage {stage:?} among {stages:?}");
    }

    // Prometheus drops empty labels; the exposition itself must carry them (docs/metrics.md).
    let body = agent.get("/metrics").unwrap().body;
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("coroner_terminations_total{") && l.contains("reason=\"OOMKilled\"")
        })
        .unwrap_or_else(|| panic!("no OOMKilled series in\n{body}"));
    for label in ["namespace", "pod", "container"] {
        assert!(
            line.contains(&format!("{label}=\"\"")),
            "unknown {label} is an empty label, never missing: {line}"
        );
    }
    drop(prometheus);
}

#[test]
fn promtool_check_metrics_accepts_the_real_exposition() {
    let mut agent = Agent::start().unwrap();
    // Deaths first, so the per-container families have series to lint too.
    let c = Container::new(Layout::CgroupfsBurstable).unwrap();
    let child = c.spawn(&["exit", "1"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    let child = c.spawn(&["sleep", "30"]).unwrap();
    let pid = child.id();
    signal_pid(pid, libc::SIGKILL);
    reap(child).unwrap();
    agent.wait_for_pid(pid, RECORD_WAIT).unwrap();

    let metrics = agent.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    let lint = prometheus::check_metrics(&metrics.body).unwrap();
    assert!(
        lint.success,
        "promtool check metrics found problems in the agent's /metrics:\n{}\n--- the exposition:\n{}",
        lint.output, metrics.body
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// A vector of one sample of `want`.
fn single(want: f64) -> impl Fn(&[Sample]) -> bool {
    move |s| s.len() == 1 && (s[0].value - want).abs() < 1e-9
}

/// One `exit 1` as the init of container `c`, recorded.
fn exit_1(agent: &mut Agent, c: &Container) -> Record {
    let child = c.spawn(&["exit", "1"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    let record = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    assert_eq!(record.reason(), "Error", "{}", record.json);
    record
}

/// What the alerts and the dashboard count (docs/metrics.md, "Counting deaths"): each step's
/// gain of `series`, at a step of one second (the scrape interval).
fn gains(series: &str) -> String {
    format!("{series} - (last_over_time({series}[15m] offset 1s) <= {series} or {series} * 0)")
}

/// A pod's series is born at 1, counts a second death, is retired (standalone: the retention
/// after its last death, 5 s here) and born again at 1 by a third death. Prometheus, asked over
/// the whole range as the alerts (a subquery) and the dashboard's graphs (a range query) ask,
/// counts 3; `increase()` does not. The deaths are those of three containers' inits in one pod:
/// standalone their series are one (`container` unknown), and a second process exiting in one
/// container would be a child's plain exit, not recorded.
#[test]
fn a_series_born_retired_and_born_again_is_counted_whole_over_a_range() {
    let options = Options {
        args: vec!["--metrics-retention-seconds".into(), "5".into()],
        ..Options::default()
    };
    let mut agent = Agent::start_with(&options).unwrap();
    let mut prometheus = Prometheus::start(JOB, agent.addr()).unwrap();
    prometheus
        .wait_for(&format!("up{{job=\"{JOB}\"}}"), SCRAPE_WAIT, |s| {
            s.len() == 1 && (s[0].value - 1.0).abs() < f64::EPSILON
        })
        .unwrap();
    let c = Container::new(Layout::CgroupfsBurstable).unwrap();
    let (second, third) = (c.sibling().unwrap(), c.sibling().unwrap());
    // The pod's uid (from the cgroup path, standalone too) keeps deaths staged elsewhere out.
    let series = format!(
        "coroner_terminations_total{{uid=\"{}\",reason=\"Error\"}}",
        c.pod_uid
    );
    let sum = format!("sum({series})");
    let start = unix_now() - 2.0;

    let first = exit_1(&mut agent, &c);
    assert_eq!(first.record.pod_uid.as_deref(), Some(c.pod_uid.as_str()));
    prometheus.wait_for(&sum, SCRAPE_WAIT, single(1.0)).unwrap();
    exit_1(&mut agent, &second);
    prometheus.wait_for(&sum, SCRAPE_WAIT, single(2.0)).unwrap();
    // Retired by the agent, marked stale by Prometheus.
    prometheus
        .wait_for(&series, SCRAPE_WAIT, <[Sample]>::is_empty)
        .unwrap();
    assert!(
        !agent.get("/metrics").unwrap().body.contains(&c.pod_uid),
        "the agent still has series of the pod"
    );
    let reborn = exit_1(&mut agent, &third);
    prometheus.wait_for(&sum, SCRAPE_WAIT, single(1.0)).unwrap();
    // A step of the grid after the scrape that saw it (the series stays 5 s).
    std::thread::sleep(Duration::from_millis(1500));
    let end = unix_now();

    // The alerts' and the tables' form: one instant query over the range.
    #[expect(clippy::cast_possible_truncation, reason = "a minute or so")]
    let range = (end - start).ceil() as u64 + 1;
    let subquery = format!("sum(sum_over_time(({})[{range}s:1s]))", gains(&series));
    let counted = prometheus.query_at(&subquery, end).unwrap();
    assert!(
        single(3.0)(&counted),
        "{subquery} = {counted:?}, three deaths"
    );
    // The graphs' form: every step's gain, summed over the range.
    let per_step = format!("sum({})", gains(&series));
    let steps = prometheus.query_range(&per_step, start, end, 1.0).unwrap();
    let total: f64 = steps.iter().flat_map(|s| &s.values).map(|(_, v)| v).sum();
    assert!(
        (total - 3.0).abs() < 1e-9,
        "{per_step} over the range: {steps:?}"
    );
    let increase = format!("sum(increase({series}[{range}s]))");
    println!(
        "{subquery} = 3; {increase} = {:?}",
        prometheus.query_at(&increase, end).unwrap()
    );

    // Prometheus read the `_created` of the series born again: the time of its first death.
    let created = format!("coroner_terminations_created{{uid=\"{}\"}}", c.pod_uid);
    let created = prometheus.query_at(&created, end).unwrap();
    #[expect(clippy::cast_precision_loss, reason = "seconds")]
    let born = reborn.record.time.unix_timestamp_nanos() as f64 / 1e9;
    assert!(
        created.len() == 1 && (created[0].value - born).abs() < 0.01,
        "{created:?} vs {born}"
    );
}
