//! The configurations the slowdown rounds put side by side on the same storms: nothing
//! attached, coroner as deployed, coroner without exec-failure capture, the floor (empty
//! programs on coroner's hooks) and the libbpf-tools trio a user would run instead.

use anyhow::Result;
use serde::Serialize;

use super::Bench;
use super::agent::{Agent, AgentConfig};
use super::floor::{FloorHooks, FloorPrograms};
use super::overhead::AGENT_SETTLE;
use super::trio::Trio;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Config {
    /// Nothing attached: what every other configuration is compared with.
    Baseline,
    /// The agent with its default flags, as the `DaemonSet` runs it.
    Coroner,
    /// The agent with `--exec-failures off`: no syscall tracepoint attached.
    CoronerExecFailuresOff,
    /// `r0 = 0; exit` on each of coroner's hooks, loaded by the bench.
    Floor,
    /// `exitsnoop`, `sigsnoop` and `execsnoop` from libbpf-tools, all at once.
    Trio,
}

/// Every configuration, in the order of the first round (and of the table's columns).
pub const CONFIGS: [Config; 5] = [
    Config::Baseline,
    Config::Coroner,
    Config::CoronerExecFailuresOff,
    Config::Floor,
    Config::Trio,
];

/// The flag that turns exec-failure capture off (the agent's `--exec-failures`).
pub const EXEC_FAILURES_OFF: [&str; 2] = ["--exec-failures", "off"];

impl Config {
    /// The column heading.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Baseline => "nothing attached",
            Self::Coroner => "coroner",
            Self::CoronerExecFailuresOff => "coroner --exec-failures off",
            Self::Floor => "floor (empty programs)",
            Self::Trio => "libbpf-tools trio",
        }
    }
}

/// The order of round `round`: `configs` rotated left by the round's number, so that over
/// `configs.len()` rounds each configuration runs once in each place, and a drift of the
/// machine (warming, throttling, other work) is spread over all of them.
#[must_use]
pub fn round_order<T: Copy>(configs: &[T], round: usize) -> Vec<T> {
    let mut order = configs.to_vec();
    if !order.is_empty() {
        order.rotate_left(round % configs.len());
    }
    order
}

/// What a configuration holds while its storms run; dropping it detaches everything.
pub enum Attached {
    Nothing,
    Agent(Agent),
    /// Held for its drop: closing the descriptors detaches the programs.
    Floor {
        _programs: FloorPrograms,
    },
    /// Held for its drop: it kills the tools.
    Trio {
        _tools: Trio,
    },
}

impl Attached {
    /// Detaches: the agent is asked to stop (SIGTERM, SIGKILL if it lingers), the floor's
    /// descriptors closed, the tools killed.
    pub fn detach(self) {
        if let Self::Agent(agent) = self {
            agent.stop();
        }
    }
}

/// Attaches `config` and lets it settle. BPF statistics stay as they are (off, unless the
/// machine has them on): the throughput rounds must not pay for them.
pub fn attach(bench: &Bench, hooks: &FloorHooks, config: Config) -> Result<Attached> {
    let agent = |name: &str, extra: &[&str]| -> Result<Attached> {
        let config = AgentConfig {
            extra_args: extra.iter().map(|&a| a.to_owned()).collect(),
            ..AgentConfig::default()
        };
        let agent = Agent::start(&bench.coroner, &bench.dir, name, &config)?;
        std::thread::sleep(AGENT_SETTLE);
        Ok(Attached::Agent(agent))
    };
    match config {
        Config::Baseline => Ok(Attached::Nothing),
        Config::Coroner => agent("slowdown", &[]),
        Config::CoronerExecFailuresOff => agent("slowdown-no-exec", &EXEC_FAILURES_OFF),
        Config::Floor => Ok(Attached::Floor {
            _programs: hooks.attach()?,
        }),
        Config::Trio => {
            let trio = Trio::start(&bench.dir)?;
            // Their user space reads the perf buffers: let it reach its loop, as the agent.
            std::thread::sleep(AGENT_SETTLE);
            Ok(Attached::Trio { _tools: trio })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_configuration_takes_each_place_once_over_as_many_rounds() {
        let rounds: Vec<Vec<Config>> = (0..CONFIGS.len())
            .map(|r| round_order(&CONFIGS, r))
            .collect();
        assert_eq!(rounds[0], CONFIGS.to_vec());
        assert_eq!(rounds[1][0], Config::Coroner);
        assert_eq!(rounds[1][4], Config::Baseline);
        for place in 0..CONFIGS.len() {
            let mut seen: Vec<Config> = rounds.iter().map(|order| order[place]).collect();
            seen.sort();
            assert_eq!(seen, CONFIGS.to_vec(), "place {place}");
        }
        assert_eq!(round_order(&CONFIGS, CONFIGS.len()), CONFIGS.to_vec());
        assert!(round_order::<Config>(&[], 3).is_empty());
    }
}
