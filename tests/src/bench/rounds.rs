//! Workload slowdown, side by side: in each round every configuration attaches in turn (the
//! order rotated per round) and runs every storm; each configuration's slowdown in a round is
//! against that round's baseline, and the figure is the median over the rounds. A
//! configuration that cannot attach is reported "not measured" with its error; the others
//! still run.

use anyhow::Result;
use serde::Serialize;

use super::configs::{self, CONFIGS, Config};
use super::floor::FloorHooks;
use super::overhead::{STORM_DURATION, STORMS, Storm, StormRun, run_storm};
use super::stats::Spread;
use super::{Bench, check_interrupted};

/// One configuration on one storm, round by round (`None`: not run that round).
#[derive(Clone, Debug, Serialize)]
pub struct ConfigRuns {
    pub config: Config,
    pub ops_per_s: Vec<Option<f64>>,
    pub cpu_ns_per_op: Vec<Option<f64>>,
    /// Per round with a baseline, in percent: `baseline rate / rate − 1`.
    pub throughput_slowdown_pct: Vec<f64>,
    /// Per round with a baseline, in percent: `CPU per op / baseline's − 1`.
    pub cpu_slowdown_pct: Vec<f64>,
    pub throughput_slowdown: Option<Spread>,
    pub cpu_slowdown: Option<Spread>,
    pub rate: Option<Spread>,
    pub cpu: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StormResult {
    pub storm: &'static str,
    pub what: &'static str,
    pub target_pct: f64,
    pub configs: Vec<ConfigRuns>,
}

impl StormResult {
    #[must_use]
    pub fn config(&self, config: Config) -> Option<&ConfigRuns> {
        self.configs.iter().find(|c| c.config == config)
    }

    /// The median rate with nothing attached.
    #[must_use]
    pub fn baseline_rate(&self) -> Option<f64> {
        Some(self.config(Config::Baseline)?.rate?.median)
    }
}

/// A configuration that could not be measured, and why.
#[derive(Clone, Debug, Serialize)]
pub struct NotMeasured {
    pub config: Config,
    pub error: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SideBySide {
    pub rounds: usize,
    pub storm_seconds: f64,
    /// The order the configurations ran in, per round.
    pub orders: Vec<Vec<Config>>,
    pub storms: Vec<StormResult>,
    pub not_measured: Vec<NotMeasured>,
}

impl SideBySide {
    #[must_use]
    pub fn new(storms: &[Storm], configs: &[Config], rounds: usize) -> Self {
        let empty = |config| ConfigRuns {
            config,
            ops_per_s: vec![None; rounds],
            cpu_ns_per_op: vec![None; rounds],
            throughput_slowdown_pct: Vec::new(),
            cpu_slowdown_pct: Vec::new(),
            throughput_slowdown: None,
            cpu_slowdown: None,
            rate: None,
            cpu: None,
        };
        Self {
            rounds,
            storm_seconds: STORM_DURATION.as_secs_f64(),
            orders: Vec::new(),
            storms: storms
                .iter()
                .map(|s| StormResult {
                    storm: s.kind,
                    what: s.what,
                    target_pct: s.target_pct,
                    configs: configs.iter().map(|&c| empty(c)).collect(),
                })
                .collect(),
            not_measured: Vec::new(),
        }
    }

    #[must_use]
    pub fn storm(&self, kind: &str) -> Option<&StormResult> {
        self.storms.iter().find(|s| s.storm == kind)
    }

    /// Why `config` was not measured, if it was not.
    #[must_use]
    pub fn not_measured(&self, config: Config) -> Option<&str> {
        self.not_measured
            .iter()
            .find(|n| n.config == config)
            .map(|n| n.error.as_str())
    }

    pub(super) fn record(&mut self, round: usize, config: Config, storm: usize, run: StormRun) {
        if let Some(c) = self
            .storms
            .get_mut(storm)
            .and_then(|s| s.configs.iter_mut().find(|c| c.config == config))
        {
            c.ops_per_s[round] = Some(run.ops_per_s);
            c.cpu_ns_per_op[round] = Some(run.cpu_ns_per_op);
        }
    }

    /// Slowdowns against the same round's baseline, and their spreads.
    pub fn summarise(&mut self) {
        for storm in &mut self.storms {
            let base = storm
                .configs
                .iter()
                .find(|c| c.config == Config::Baseline)
                .map(|c| (c.ops_per_s.clone(), c.cpu_ns_per_op.clone()))
                .unwrap_or_default();
            for c in &mut storm.configs {
                c.throughput_slowdown_pct = paired_pct(&base.0, &c.ops_per_s, |b, x| b / x);
                c.cpu_slowdown_pct = paired_pct(&base.1, &c.cpu_ns_per_op, |b, x| x / b);
                c.throughput_slowdown = Spread::of(&c.throughput_slowdown_pct);
                c.cpu_slowdown = Spread::of(&c.cpu_slowdown_pct);
                c.rate = Spread::of(&c.ops_per_s.iter().flatten().copied().collect::<Vec<_>>());
                c.cpu = Spread::of(
                    &c.cpu_ns_per_op
                        .iter()
                        .flatten()
                        .copied()
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
}

/// `(ratio(base, value) − 1) × 100` for each round that has both.
fn paired_pct(
    base: &[Option<f64>],
    values: &[Option<f64>],
    ratio: impl Fn(f64, f64) -> f64,
) -> Vec<f64> {
    base.iter()
        .zip(values)
        .filter_map(|(b, v)| Some((ratio((*b)?, (*v)?) - 1.0) * 100.0))
        .collect()
}

/// `rounds` rounds of every configuration on every storm.
pub fn run(bench: &Bench, rounds: usize) -> Result<SideBySide> {
    let hooks = FloorHooks::resolve()?;
    let mut result = SideBySide::new(&STORMS, &CONFIGS, rounds);
    for missing in &hooks.missing {
        eprintln!("  floor: {missing} (left out)");
    }
    for round in 0..rounds {
        let order = configs::round_order(&CONFIGS, round);
        for &config in &order {
            check_interrupted()?;
            if result.not_measured(config).is_some() {
                continue;
            }
            let attached = match configs::attach(bench, &hooks, config) {
                Ok(attached) => attached,
                Err(e) => {
                    // One line: the table's footnote quotes it.
                    let error = format!("{e:#}").replace('\n', " / ");
                    eprintln!("  {}: not measured: {error}", config.label());
                    result.not_measured.push(NotMeasured { config, error });
                    continue;
                }
            };
            for (i, storm) in STORMS.iter().enumerate() {
                let run = run_storm(bench, storm, STORM_DURATION)?;
                result.record(round, config, i, run);
            }
            attached.detach();
        }
        result.orders.push(order);
        eprintln!("  round {}/{rounds} done", round + 1);
    }
    result.summarise();
    Ok(result)
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the expected slowdowns are exact in f64 (25 % of 100 and the like)"
)]
mod tests {
    use super::*;

    fn run_of(ops_per_s: f64, cpu_ns_per_op: f64) -> StormRun {
        StormRun {
            ops_per_s,
            cpu_ns_per_op,
        }
    }

    #[test]
    fn slowdown_is_against_the_same_rounds_baseline() {
        let mut s = SideBySide::new(&STORMS[..1], &[Config::Baseline, Config::Coroner], 3);
        for (round, (base, with)) in [(100.0, 80.0), (200.0, 100.0), (50.0, 40.0)]
            .into_iter()
            .enumerate()
        {
            s.record(round, Config::Baseline, 0, run_of(base, 100.0));
            s.record(round, Config::Coroner, 0, run_of(with, 110.0));
        }
        s.summarise();
        let c = s.storms[0].config(Config::Coroner).unwrap();
        assert_eq!(c.throughput_slowdown_pct, vec![25.0, 100.0, 25.0]);
        assert_eq!(c.throughput_slowdown.unwrap().median, 25.0);
        assert!((c.cpu_slowdown.unwrap().median - 10.0).abs() < 1e-9);
        assert_eq!(s.storms[0].baseline_rate(), Some(100.0));
        let b = s.storms[0].config(Config::Baseline).unwrap();
        assert_eq!(b.throughput_slowdown.unwrap().median, 0.0);
    }

    #[test]
    fn a_round_without_either_side_is_left_out() {
        let mut s = SideBySide::new(&STORMS[..1], &[Config::Baseline, Config::Trio], 2);
        s.record(0, Config::Baseline, 0, run_of(100.0, 1.0));
        s.record(1, Config::Baseline, 0, run_of(100.0, 1.0));
        s.record(1, Config::Trio, 0, run_of(50.0, 2.0));
        s.summarise();
        let t = s.storms[0].config(Config::Trio).unwrap();
        assert_eq!(t.throughput_slowdown_pct, vec![100.0]);
        assert_eq!(t.cpu_slowdown_pct, vec![100.0]);
    }
}
