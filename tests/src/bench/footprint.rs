//! One agent, from idle through a rising death rate to a long churn: its memory idle and after
//! many deaths, CPU per event, the highest rate with no counted loss, and record latency at
//! each rate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::agent::{Agent, AgentConfig};
use super::helper::{self, monotonic_ns};
use super::latency::{LatencyAt, Tailer};
use super::procfs::ProcSample;
use super::stats::Percentiles;
use super::{Bench, check_interrupted, path_str, scratch, sum_counts};
use coroner_tests::cgroups::{
    Layout, TestCgroup, container_path, kubepods_top, pod_uid, unique_hex,
};

/// Deaths per second asked at each step; 0 is "as fast as the machine goes".
const LADDER: [u64; 7] = [250, 1_000, 2_000, 4_000, 8_000, 16_000, 0];
const STEP: Duration = Duration::from_secs(2);
const CHURN_CHUNK: Duration = Duration::from_secs(10);
const IDLE_SETTLE: Duration = Duration::from_secs(2);
/// Deaths the churn aims for; it stops earlier when its time is up.
pub const CHURN_DEATHS: u64 = 1_000_000;
/// Short-lived containers made (and removed) at a time beside the churn's kill storm, each
/// with its own pod cgroup and twelve deaths of every kind.
const CHURN_CONTAINERS_AT_ONCE: usize = 16;

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub deaths: u64,
    /// Records the agent made meanwhile (each death here needs one).
    pub records: u64,
    pub lost: u64,
    /// `lost` by the stage that counted it.
    pub lost_by_stage: Vec<(String, u64)>,
    pub latency_us: Option<Percentiles>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Churn {
    pub seconds: f64,
    pub deaths: u64,
    pub records: u64,
    pub events: u64,
    pub lost: u64,
    /// `lost` by the stage that counted it.
    pub lost_by_stage: Vec<(String, u64)>,
    pub cpu_ns: u64,
    pub cpu_per_event_ns: Option<f64>,
    /// Container cgroups (each in a pod cgroup of its own) created, died in and removed
    /// during the churn.
    pub containers_churned: u64,
    /// (records made by the agent so far, `VmRSS` in KiB) after each chunk: growth with churn.
    pub rss_by_records: Vec<(u64, u64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    pub idle: ProcSample,
    pub ladder: Vec<Step>,
    pub highest_loss_free_rate: Option<f64>,
    pub first_loss_rate: Option<f64>,
    pub latency: Vec<LatencyAt>,
    pub churn: Option<Churn>,
    /// After every death of this phase, once the agent is idle again.
    pub after: ProcSample,
    /// Records this agent made in all (deaths that needed one).
    pub total_records: u64,
}

/// Kills children inside the container cgroup at `rate` a second in all (0: flat out) for
/// `duration`; returns the deaths and the seconds they took.
fn generate(bench: &Bench, rate: u64, duration: Duration) -> Result<(u64, f64)> {
    let helpers = if rate == 0 || rate > 2_000 {
        bench.nproc
    } else {
        1
    };
    let start = monotonic_ns() + 200_000_000;
    let args = [
        (rate / helpers as u64).to_string(),
        start.to_string(),
        duration.as_nanos().to_string(),
    ];
    let running = (0..helpers)
        .map(|_| bench.helper(&bench.container, helper::DEATHS, &args))
        .collect::<Result<Vec<_>>>()?;
    Ok((sum_counts(running)?, duration.as_secs_f64()))
}

pub fn run(bench: &Bench, max_kill_rate: Option<f64>, churn_budget: Duration) -> Result<Footprint> {
    let agent = Agent::start(
        &bench.coroner,
        &bench.dir,
        "footprint",
        &AgentConfig::default(),
    )?;
    std::thread::sleep(IDLE_SETTLE);
    let idle = agent.sample()?;
    let mut ladder = Vec::new();
    let mut before = agent.metrics()?;
    for rate in LADDER {
        check_interrupted()?;
        // A rate far over what the machine reached without the agent only repeats "max".
        if rate > 0 && max_kill_rate.is_some_and(|max| rate as f64 > max * 1.5) {
            continue;
        }
        let tailer = Tailer::start(&agent.events)?;
        let (deaths, seconds) = generate(bench, rate, STEP)?;
        let after = agent.settle(Duration::from_secs(10))?;
        let latencies = tailer.finish()?;
        let step = Step {
            target_rate: rate,
            achieved_rate: deaths as f64 / seconds,
            deaths,
            records: (after.records() - before.records()) as u64,
            lost: (after.lost() - before.lost()) as u64,
            lost_by_stage: after.lost_since(&before),
            latency_us: Percentiles::of(&latencies),
        };
        eprintln!(
            "  {} deaths/s asked, {:.0} reached: {} records, {} lost {:?}",
            rate, step.achieved_rate, step.records, step.lost, step.lost_by_stage
        );
        before = after;
        // Every step runs, past a loss too: a single loss at a low rate and none above it
        // says something else than a ceiling.
        ladder.push(step);
    }
    let first_loss = ladder.iter().position(|s| s.lost > 0);
    let highest_loss_free_rate = ladder[..first_loss.unwrap_or(ladder.len())]
        .iter()
        .map(|s| s.achieved_rate)
        .reduce(f64::max);
    let first_loss_rate = first_loss.map(|i| ladder[i].achieved_rate);
    let latency = latency_low_high(&ladder);
    let churn = churn(bench, &agent, churn_budget)?;
    let end = agent.settle(Duration::from_secs(10))?;
    std::thread::sleep(IDLE_SETTLE);
    let after = agent.sample()?;
    agent.stop();
    Ok(Footprint {
        idle,
        ladder,
        highest_loss_free_rate,
        first_loss_rate,
        latency,
        churn,
        after,
        total_records: end.records() as u64,
    })
}

/// The lowest step, and the fastest of the others.
fn latency_low_high(ladder: &[Step]) -> Vec<LatencyAt> {
    let at = |s: &Step| LatencyAt {
        target_rate: s.target_rate,
        achieved_rate: s.achieved_rate,
        micros: s.latency_us,
    };
    let mut out: Vec<LatencyAt> = ladder.first().map(at).into_iter().collect();
    if let Some(high) = ladder
        .iter()
        .skip(1)
        .max_by(|a, b| a.achieved_rate.total_cmp(&b.achieved_rate))
    {
        out.push(at(high));
    }
    out
}

fn churn(bench: &Bench, agent: &Agent, budget: Duration) -> Result<Option<Churn>> {
    if budget.is_zero() {
        return Ok(None);
    }
    let started = Instant::now();
    let first = agent.metrics()?;
    let cpu_before = agent.sample()?.cpu_ns;
    let (mut deaths, mut rss_by_records) = (0, Vec::new());
    let stop = AtomicBool::new(false);
    let (containers_churned, container_deaths) = std::thread::scope(|scope| {
        let churner = scope.spawn(|| churn_containers(bench, &stop));
        let storm = (|| {
            while started.elapsed() + CHURN_CHUNK <= budget
                && (first.records() as u64) + deaths < CHURN_DEATHS
            {
                check_interrupted()?;
                deaths += generate(bench, 0, CHURN_CHUNK)?.0;
                let now = agent.metrics()?;
                let rss_kib = agent.sample()?.rss_kib;
                rss_by_records.push((now.records() as u64, rss_kib));
                eprintln!(
                    "  churn: {} records so far, VmRSS {rss_kib} KiB",
                    now.records()
                );
            }
            anyhow::Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let containers = churner
            .join()
            .map_err(|_| anyhow::anyhow!("the container churner panicked"))?;
        storm.and(containers)
    })?;
    deaths += container_deaths;
    let seconds = started.elapsed().as_secs_f64();
    let end = agent.settle(Duration::from_secs(10))?;
    let cpu_ns = agent.sample()?.cpu_ns - cpu_before;
    let events = (end.events() - first.events()) as u64;
    Ok(Some(Churn {
        seconds,
        deaths,
        records: (end.records() - first.records()) as u64,
        events,
        lost: (end.lost() - first.lost()) as u64,
        lost_by_stage: end.lost_since(&first),
        cpu_ns,
        cpu_per_event_ns: (events > 0).then(|| cpu_ns as f64 / events as f64),
        containers_churned,
        rss_by_records,
    }))
}

/// Until `stop`: makes a batch of container cgroups (a new pod each), has twelve processes
/// die in each, removes them. Returns the containers churned and their deaths.
fn churn_containers(bench: &Bench, stop: &AtomicBool) -> Result<(u64, u64)> {
    let (mut containers, mut deaths) = (0, 0);
    let list = scratch(bench, "churn-containers.txt");
    while !stop.load(Ordering::Relaxed) {
        check_interrupted()?;
        let top = kubepods_top();
        let batch = (0..CHURN_CONTAINERS_AT_ONCE)
            .map(|_| {
                TestCgroup::create(&container_path(
                    Layout::CgroupfsBurstable,
                    &top,
                    &pod_uid(),
                    &unique_hex(64),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let dirs: Vec<String> = batch.iter().map(|c| path_str(&c.dir())).collect();
        std::fs::write(&list, dirs.join("\n"))?;
        let args = [path_str(&bench.host.procs_file()), path_str(&list)];
        deaths += bench.helper(&bench.host, helper::PODS, &args)?.count()?;
        containers += batch.len() as u64;
        // Dropping the guards removes the container and pod cgroups.
        drop(batch);
    }
    Ok((containers, deaths))
}
