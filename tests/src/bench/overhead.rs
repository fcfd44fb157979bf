//! Workload slowdown (storms with and without the agent, alternating, in pairs) and the
//! kernel programs' own cost (`run_time_ns / run_cnt` with BPF statistics on).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::agent::{Agent, AgentConfig};
use super::helper::{self, monotonic_ns};
use super::procfs::{self, BpfStats, ProgRun};
use super::stats::Spread;
use super::{Bench, check_interrupted, path_str};

/// A storm: what one helper repeats, what it means, the slowdown target in percent.
#[derive(Clone, Copy, Debug)]
pub struct Storm {
    pub kind: &'static str,
    pub what: &'static str,
    pub target_pct: f64,
}

pub const STORMS: [Storm; 4] = [
    Storm {
        kind: "spawn",
        what: "posix_spawn + wait of a 132-byte static program",
        target_pct: 1.0,
    },
    Storm {
        kind: "fork",
        what: "fork + _exit + wait",
        target_pct: 1.0,
    },
    Storm {
        kind: "signal",
        what: "SIGUSR1 to itself, handled",
        target_pct: 3.0,
    },
    Storm {
        kind: "kill",
        what: "fork + SIGTERM/SIGKILL + wait (a record each)",
        target_pct: 3.0,
    },
];

/// How long each storm runs; the helpers start together at an agreed instant.
pub const STORM_DURATION: Duration = Duration::from_secs(1);
/// Time for the helpers to exec and reach the start line.
const START_LEAD: Duration = Duration::from_millis(200);
/// The agent settles (threads up, first housekeeping) before a measured storm.
const AGENT_SETTLE: Duration = Duration::from_millis(500);

/// One storm's outcome, all helpers together.
#[derive(Clone, Copy, Debug)]
pub struct StormRun {
    pub ops_per_s: f64,
    /// CPU time (helpers and their children, user + system) per operation, in ns.
    pub cpu_ns_per_op: f64,
}

/// Runs `storm` with one helper per CPU inside the container cgroup.
pub fn run_storm(bench: &Bench, storm: &Storm, duration: Duration) -> Result<StormRun> {
    let start = monotonic_ns() + START_LEAD.as_nanos() as u64;
    let args = [
        storm.kind.to_owned(),
        start.to_string(),
        duration.as_nanos().to_string(),
        path_str(&bench.program.path),
    ];
    let helpers = (0..bench.nproc)
        .map(|_| bench.helper(&bench.container, helper::STORM, &args))
        .collect::<Result<Vec<_>>>()?;
    let (mut ops, mut cpu_ns) = (0, 0);
    for helper in helpers {
        let numbers = helper.numbers()?;
        ops += numbers.first().copied().unwrap_or(0);
        cpu_ns += numbers.get(1).copied().unwrap_or(0);
    }
    Ok(StormRun {
        ops_per_s: ops as f64 / duration.as_secs_f64(),
        cpu_ns_per_op: cpu_ns as f64 / ops.max(1) as f64,
    })
}

/// With and without the agent, per pair, and the slowdown the pairs show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Paired {
    pub with_agent: Vec<f64>,
    pub without_agent: Vec<f64>,
    /// Per pair, in percent: how much more the storm cost with the agent.
    pub slowdown_pct: Vec<f64>,
    pub slowdown: Option<Spread>,
    pub without_agent_spread: Option<Spread>,
}

impl Paired {
    /// `cost(with) / cost(without) − 1` per pair; `higher_is_better` for rates.
    fn summarise(&mut self, higher_is_better: bool) {
        self.slowdown_pct = self
            .with_agent
            .iter()
            .zip(&self.without_agent)
            .map(|(on, off)| {
                let ratio = if higher_is_better { off / on } else { on / off };
                (ratio - 1.0) * 100.0
            })
            .collect();
        self.slowdown = Spread::of(&self.slowdown_pct);
        self.without_agent_spread = Spread::of(&self.without_agent);
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StormResult {
    pub storm: &'static str,
    pub what: &'static str,
    /// Throughput (operations per second): what a workload feels, including the CPU the
    /// agent's user space takes from it — and whatever else runs on the machine.
    pub throughput: Paired,
    /// CPU time per operation (ns): what the operation itself costs, probes included, and
    /// robust to other work competing for the CPUs.
    pub cpu_per_op: Paired,
    pub target_pct: f64,
}

/// `pairs` alternating pairs: even pairs run with the agent first, odd pairs without first,
/// so a drift of the machine does not land on one side.
pub fn slowdown(bench: &Bench, pairs: usize) -> Result<Vec<StormResult>> {
    let mut results: Vec<StormResult> = STORMS
        .iter()
        .map(|s| StormResult {
            storm: s.kind,
            what: s.what,
            throughput: Paired::default(),
            cpu_per_op: Paired::default(),
            target_pct: s.target_pct,
        })
        .collect();
    for pair in 0..pairs {
        let order = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for with_agent in order {
            check_interrupted()?;
            let agent = if with_agent {
                let agent = Agent::start(
                    &bench.coroner,
                    &bench.dir,
                    "slowdown",
                    &AgentConfig::default(),
                )?;
                std::thread::sleep(AGENT_SETTLE);
                Some(agent)
            } else {
                None
            };
            for (storm, result) in STORMS.iter().zip(results.iter_mut()) {
                let run = run_storm(bench, storm, STORM_DURATION)?;
                let (rate, cpu) = if with_agent {
                    (
                        &mut result.throughput.with_agent,
                        &mut result.cpu_per_op.with_agent,
                    )
                } else {
                    (
                        &mut result.throughput.without_agent,
                        &mut result.cpu_per_op.without_agent,
                    )
                };
                rate.push(run.ops_per_s);
                cpu.push(run.cpu_ns_per_op);
            }
            if let Some(agent) = agent {
                agent.stop();
            }
        }
        eprintln!("  pair {}/{pairs} done", pair + 1);
    }
    for r in &mut results {
        r.throughput.summarise(true);
        r.cpu_per_op.summarise(false);
    }
    Ok(results)
}

/// One program's runs during one storm.
#[derive(Clone, Debug, Serialize)]
pub struct ProgCost {
    pub program: String,
    pub storm: &'static str,
    pub runs: u64,
    pub avg_ns: Option<f64>,
}

fn delta(
    before: &BTreeMap<u32, ProgRun>,
    after: &BTreeMap<u32, ProgRun>,
) -> BTreeMap<u32, ProgRun> {
    after
        .iter()
        .map(|(id, a)| {
            let b = before.get(id).copied().unwrap_or_default();
            (
                *id,
                ProgRun {
                    run_time_ns: a.run_time_ns.saturating_sub(b.run_time_ns),
                    run_cnt: a.run_cnt.saturating_sub(b.run_cnt),
                },
            )
        })
        .collect()
}

/// Each storm once with BPF statistics on, the agent's own programs read from its fdinfo.
/// Returns per program and storm, then per program over all storms (`storm` = "all").
pub fn program_cost(bench: &Bench) -> Result<Vec<ProgCost>> {
    let agent = Agent::start(
        &bench.coroner,
        &bench.dir,
        "progcost",
        &AgentConfig::default(),
    )?;
    std::thread::sleep(AGENT_SETTLE);
    let names = procfs::prog_names().unwrap_or_default();
    let name = |id: u32| {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("prog {id}"))
    };
    let stats = BpfStats::enable()?;
    let mut costs = Vec::new();
    let mut totals: BTreeMap<u32, ProgRun> = BTreeMap::new();
    for storm in &STORMS {
        check_interrupted()?;
        let before = procfs::prog_runs(agent.pid())?;
        run_storm(bench, storm, STORM_DURATION)?;
        let runs = delta(&before, &procfs::prog_runs(agent.pid())?);
        for (id, run) in runs {
            let total = totals.entry(id).or_default();
            total.run_cnt += run.run_cnt;
            total.run_time_ns += run.run_time_ns;
            if run.run_cnt > 0 {
                costs.push(ProgCost {
                    program: name(id),
                    storm: storm.kind,
                    runs: run.run_cnt,
                    avg_ns: Some(run.run_time_ns as f64 / run.run_cnt as f64),
                });
            }
        }
    }
    drop(stats);
    agent.stop();
    for (id, run) in totals {
        costs.push(ProgCost {
            program: name(id),
            storm: "all",
            runs: run.run_cnt,
            avg_ns: (run.run_cnt > 0).then(|| run.run_time_ns as f64 / run.run_cnt as f64),
        });
    }
    Ok(costs)
}
