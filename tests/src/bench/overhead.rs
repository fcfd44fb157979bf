//! The storms every configuration is measured on, and the kernel programs' own cost
//! (`run_time_ns / run_cnt` with BPF statistics on). The side-by-side rounds are in
//! `rounds`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::agent::{Agent, AgentConfig};
use super::helper::{self, monotonic_ns};
use super::procfs::{self, BpfStats, ProgRun};
use super::{Bench, check_interrupted, path_str};

/// A storm: what one helper repeats, what it means, the slowdown target in percent.
#[derive(Clone, Copy, Debug)]
pub struct Storm {
    pub kind: &'static str,
    pub what: &'static str,
    pub target_pct: f64,
}

pub const STORMS: [Storm; 6] = [
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
    // Unrelated to processes: what a syscall tracepoint taxes every task of the node.
    Storm {
        kind: "getpid",
        what: "getpid(2) in a loop (the per-syscall tax)",
        target_pct: 1.0,
    },
    Storm {
        kind: "pipe",
        what: "one byte ping-pong over two pipes with a forked partner",
        target_pct: 1.0,
    },
];

/// How long each storm runs; the helpers start together at an agreed instant.
pub const STORM_DURATION: Duration = Duration::from_secs(1);
/// Time for the helpers to exec and reach the start line.
const START_LEAD: Duration = Duration::from_millis(200);
/// The agent settles (threads up, first housekeeping) before a measured storm.
pub const AGENT_SETTLE: Duration = Duration::from_millis(500);

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
    let costs = measure_programs(bench, agent.pid());
    agent.stop();
    costs
}

/// Each storm once with BPF statistics on, for the programs `pid` holds (read from its
/// fdinfo, named by `bpftool prog show`): per program and storm, then per program over all
/// storms (`storm` = "all").
pub fn measure_programs(bench: &Bench, pid: u32) -> Result<Vec<ProgCost>> {
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
        let before = procfs::prog_runs(pid)?;
        run_storm(bench, storm, STORM_DURATION)?;
        let runs = delta(&before, &procfs::prog_runs(pid)?);
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
