//! Many pods → many label sets: the agent with `--kube on` against the API server double,
//! thousands of kubelet-style pod cgroups, twelve deaths per container (one series each), and
//! what the agent's memory and `/metrics` cost at 10k and 100k series.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::agent::{Agent, AgentConfig};
use super::procfs::ProcSample;
use super::stats::Spread;
use super::{Bench, check_interrupted, helper, path_str, scratch, sum_counts};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::objects::{pod, with_owner, with_running};
use coroner_tests::cgroups::{
    Layout, TestCgroup, container_path, kubepods_top, pod_uid, unique_hex,
};

const NODE: &str = "bench-node";
const CONTAINERS_PER_POD: usize = 3;
/// Below the agent's cap of 4096 pods with series: every pod staged keeps its series.
const MAX_PODS: usize = 4_000;
const SCRAPES: usize = 5;

/// `/metrics` at one size.
#[derive(Clone, Debug, Serialize)]
pub struct ScrapeCost {
    pub series: usize,
    pub pods: usize,
    pub records: u64,
    pub body_bytes: usize,
    /// Request to last byte, over loopback, per scrape.
    pub wall_ms: Option<Spread>,
    /// The agent's CPU time (all threads) per scrape, averaged over the scrapes.
    pub agent_cpu_ms: f64,
    pub wall_ns_per_series: Option<f64>,
    pub agent: ProcSample,
}

#[derive(Clone, Debug, Serialize)]
pub struct SeriesResult {
    /// The agent idle with `--kube on`, every pod in its watch cache, no deaths yet.
    pub idle: ProcSample,
    /// Pods on the node (all in the agent's watch cache from the start).
    pub pods_in_watch: usize,
    pub points: Vec<ScrapeCost>,
    pub deaths_staged: u64,
    pub lost: u64,
    /// The same by stage (`coroner_events_lost_total{stage}`), stages that lost any.
    pub lost_by_stage: Vec<(String, u64)>,
}

/// Pods and their containers' cgroups, removed in reverse order of creation on drop.
struct Pods {
    containers: Vec<(String, TestCgroup)>,
}

impl Drop for Pods {
    fn drop(&mut self) {
        while let Some(c) = self.containers.pop() {
            drop(c);
        }
    }
}

fn stage_pods(server: &ApiServer, count: usize) -> Result<Pods> {
    let top = kubepods_top();
    let mut pods = Pods {
        containers: Vec::with_capacity(count * CONTAINERS_PER_POD),
    };
    for i in 0..count {
        let uid = pod_uid();
        let mut p = with_owner(
            pod("bench", &format!("web-{i}"), &uid, NODE),
            "apps/v1",
            "StatefulSet",
            &format!("web-{}", i / 16),
        );
        for c in 0..CONTAINERS_PER_POD {
            let id = unique_hex(64);
            p = with_running(p, &format!("c{c}"), &id);
            let cgroup =
                TestCgroup::create(&container_path(Layout::CgroupfsBurstable, &top, &uid, &id))?;
            pods.containers.push((path_str(&cgroup.dir()), cgroup));
        }
        server.put_pod(&p);
    }
    Ok(pods)
}

/// Stages the deaths of `containers` with one pod shim helper per CPU.
fn stage_deaths(bench: &Bench, containers: &[(String, TestCgroup)]) -> Result<u64> {
    let per = containers.len().div_ceil(bench.nproc).max(1);
    let mut helpers = Vec::new();
    for (i, chunk) in containers.chunks(per).enumerate() {
        let list = scratch(bench, &format!("pods-{i}.txt"));
        let dirs: Vec<&str> = chunk.iter().map(|(d, _)| d.as_str()).collect();
        std::fs::write(&list, dirs.join("\n"))?;
        let args = [path_str(&bench.host.procs_file()), path_str(&list)];
        helpers.push(bench.helper(&bench.host, helper::PODS, &args)?);
    }
    sum_counts(helpers)
}

fn scrape_cost(agent: &Agent, pods: usize) -> Result<ScrapeCost> {
    let cpu_before = agent.sample()?.cpu_ns;
    let mut walls = Vec::new();
    let mut last = None;
    for _ in 0..SCRAPES {
        let fetched = agent.fetch_metrics()?;
        walls.push(fetched.elapsed.as_secs_f64() * 1e3);
        last = Some(fetched);
    }
    let sample = agent.sample()?;
    let body = last.context("no scrape")?.body;
    let exposition = coroner_tests::exposition::Exposition { text: body };
    let series = exposition.series();
    let wall_ms = Spread::of(&walls);
    Ok(ScrapeCost {
        series,
        pods,
        records: exposition.records() as u64,
        body_bytes: exposition.text.len(),
        wall_ms,
        agent_cpu_ms: (sample.cpu_ns - cpu_before) as f64 / 1e6 / SCRAPES as f64,
        wall_ns_per_series: wall_ms.map(|w| w.median * 1e6 / series.max(1) as f64),
        agent: sample,
    })
}

fn wait_watch_up(agent: &Agent, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while agent.metrics()?.sum("coroner_kube_watch_up", &[]) < 1.0 {
        if Instant::now() > deadline {
            bail!(
                "the agent's pod watch did not sync in {limit:?}:\n{}",
                agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Grows the agent's series to `targets` (e.g. 10k, 100k), measuring at each.
pub fn run(bench: &Bench, targets: &[usize]) -> Result<SeriesResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _in_runtime = runtime.enter();
    let server = ApiServer::start().context("starting the API server double")?;
    // Twelve termination series per container and two memory gauges, at most.
    let per_pod = CONTAINERS_PER_POD * 14;
    let max_target = targets.iter().copied().max().unwrap_or(0);
    let pod_count = (max_target.div_ceil(CONTAINERS_PER_POD * 12) + 50).min(MAX_PODS);
    let started = Instant::now();
    let pods = stage_pods(&server, pod_count)?;
    eprintln!(
        "  {pod_count} pods, {} container cgroups staged in {:.1?}",
        pods.containers.len(),
        started.elapsed()
    );
    let config = AgentConfig {
        kubeconfig: Some(server.kubeconfig().to_path_buf()),
        node: Some(NODE.into()),
        ..AgentConfig::default()
    };
    let agent = Agent::start(&bench.coroner, &bench.dir, "series", &config)?;
    wait_watch_up(&agent, Duration::from_mins(1))?;
    std::thread::sleep(Duration::from_secs(2));
    let idle = agent.sample()?;
    let base = agent.metrics()?;
    let (mut next_pod, mut deaths_staged, mut points) = (0, 0, Vec::new());
    for &target in targets {
        loop {
            check_interrupted()?;
            let now = agent.metrics()?.series();
            if now >= target || next_pod >= pod_count {
                break;
            }
            // Aim a little short by the lowest count per pod, then top up.
            let more = (target - now)
                .div_ceil(per_pod)
                .max(1)
                .min(pod_count - next_pod);
            let range = next_pod * CONTAINERS_PER_POD..(next_pod + more) * CONTAINERS_PER_POD;
            deaths_staged += stage_deaths(bench, &pods.containers[range])?;
            next_pod += more;
            let settled = agent.settle(Duration::from_secs(30))?;
            eprintln!("  {next_pod} pods with deaths: {} series", settled.series());
        }
        points.push(scrape_cost(&agent, next_pod)?);
    }
    let end = agent.metrics()?;
    agent.stop();
    drop(pods);
    drop(server);
    Ok(SeriesResult {
        idle,
        pods_in_watch: pod_count,
        points,
        deaths_staged,
        lost: (end.lost() - base.lost()) as u64,
        lost_by_stage: end.lost_since(&base),
    })
}
