//! End to end with the monitoring side: a real Prometheus (Debian's package) scrapes the real
//! `coroner` binary every second while processes die in kubelet-style memory cgroups, and the
//! deaths must be queryable through Prometheus' HTTP API; `promtool check metrics` must accept
//! the agent's real exposition. Needs root and `/usr/bin/prometheus` (`cargo xtask test`
//! installs it); a missing Prometheus fails these tests, it does not skip them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use coroner::export::LossStage;
use coroner_tests::agent::expect::{Container, death};
use coroner_tests::agent::{Agent, Record};
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

    // Prometheus drops empty labels; the exposition itself must carry them (RECORD.md).
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
