//! The side-by-side slowdown as the report shows it: one table of storms × configurations
//! (median slowdown against the same round's baseline, with its spread), a line per storm
//! for coroner against the floor and against the libbpf-tools trio, and the summary rows.

use std::fmt::Write as _;

use super::configs::Config;
use super::report::{NOT_MEASURED, Row, at_most, row};
use super::rounds::{ConfigRuns, SideBySide, StormResult};
use super::stats::Spread;

/// Which of a storm's two figures a table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Operations per second: what a workload feels.
    Throughput,
    /// CPU time per operation: what the operation costs, probes included.
    CpuPerOp,
}

impl Metric {
    fn slowdown(self, c: &ConfigRuns) -> Option<Spread> {
        match self {
            Self::Throughput => c.throughput_slowdown,
            Self::CpuPerOp => c.cpu_slowdown,
        }
    }

    fn baseline(self, c: &ConfigRuns) -> Option<String> {
        match self {
            Self::Throughput => c.rate.map(|r| format!("{:.0}/s", r.median)),
            Self::CpuPerOp => c.cpu.map(|r| format!("{:.0} ns/op", r.median)),
        }
    }
}

/// `+8.12% (+6.01..+9.90)`: the median and the extremes over the rounds.
fn spread_cell(s: Spread) -> String {
    format!("{:+.2}% ({:+.2}..{:+.2})", s.median, s.min, s.max)
}

fn cell(side: &SideBySide, storm: &StormResult, config: Config, metric: Metric) -> String {
    if side.not_measured(config).is_some() {
        return NOT_MEASURED.into();
    }
    let Some(c) = storm.config(config) else {
        return NOT_MEASURED.into();
    };
    let text = if config == Config::Baseline {
        metric.baseline(c)
    } else {
        metric.slowdown(c).map(spread_cell)
    };
    text.unwrap_or_else(|| "—".into())
}

/// The storms × configurations table in Markdown.
#[must_use]
pub fn render(side: &SideBySide, metric: Metric) -> String {
    let configs: Vec<Config> = side
        .storms
        .first()
        .map(|s| s.configs.iter().map(|c| c.config).collect())
        .unwrap_or_default();
    let mut out = String::from("| storm |");
    for c in &configs {
        let _ = write!(out, " {} |", c.label());
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(configs.len()));
    out.push('\n');
    for storm in &side.storms {
        let _ = write!(out, "| {} |", storm.storm);
        for &c in &configs {
            let _ = write!(out, " {} |", cell(side, storm, c, metric));
        }
        out.push('\n');
    }
    out
}

/// Median throughput slowdown of `config` on `storm`, if measured.
fn median(side: &SideBySide, storm: &StormResult, config: Config) -> Option<f64> {
    if side.not_measured(config).is_some() {
        return None;
    }
    Some(storm.config(config)?.throughput_slowdown?.median)
}

/// Coroner's median slowdown minus `other`'s, in percentage points.
#[must_use]
pub fn gap(side: &SideBySide, storm: &StormResult, other: Config) -> Option<f64> {
    Some(median(side, storm, Config::Coroner)? - median(side, storm, other)?)
}

fn gap_text(side: &SideBySide, storm: &StormResult, other: Config) -> String {
    gap(side, storm, other).map_or_else(|| NOT_MEASURED.into(), |g| format!("{g:+.2} pp"))
}

/// A line per storm: `- spawn: coroner vs floor: +6.10 pp; coroner vs trio: -9.00 pp`.
#[must_use]
pub fn versus_lines(side: &SideBySide) -> String {
    let mut out = String::new();
    for storm in &side.storms {
        let _ = writeln!(
            out,
            "- {}: coroner vs floor: {}; coroner vs trio: {}",
            storm.storm,
            gap_text(side, storm, Config::Floor),
            gap_text(side, storm, Config::Trio)
        );
    }
    out
}

/// `- coroner --exec-failures off: not measured: <error>` for each configuration left out.
#[must_use]
pub fn not_measured_lines(side: &SideBySide) -> String {
    let mut out = String::new();
    for n in &side.not_measured {
        let _ = writeln!(out, "- {}: not measured: {}", n.config.label(), n.error);
    }
    out
}

/// The summary table's rows: coroner's slowdown per storm (throughput and CPU per operation)
/// against its target, and its distance from the floor and from the trio.
#[must_use]
pub fn summary_rows(side: Option<&SideBySide>) -> Vec<Row> {
    let Some(side) = side else {
        return vec![row(
            "workload slowdown (all storms)",
            NOT_MEASURED,
            "≤1% spawn/fork, ≤3% signals",
            NOT_MEASURED,
        )];
    };
    let mut rows = Vec::new();
    for s in &side.storms {
        let base = s.config(Config::Baseline);
        let coroner = s.config(Config::Coroner);
        for (metric, how) in [
            (Metric::Throughput, "throughput"),
            (Metric::CpuPerOp, "CPU time per operation"),
        ] {
            let spread = coroner.and_then(|c| metric.slowdown(c));
            let (measured, verdict) = spread.map_or_else(
                || (NOT_MEASURED.to_owned(), NOT_MEASURED.to_owned()),
                |d| {
                    let without = base.and_then(|b| metric.baseline(b)).unwrap_or_default();
                    (
                        format!(
                            "{:+.2}% median ({:+.2}..{:+.2}, n={}); {without} with nothing attached",
                            d.median, d.min, d.max, d.n
                        ),
                        at_most(d.median, s.target_pct, "pts"),
                    )
                },
            );
            rows.push(row(
                format!("slowdown, {how}: {} storm ({})", s.storm, s.what),
                measured,
                format!("≤{}%", s.target_pct),
                verdict,
            ));
        }
        rows.push(versus_row(side, s));
    }
    rows
}

fn versus_row(side: &SideBySide, s: &StormResult) -> Row {
    let pct = |c| median(side, s, c).map_or_else(|| NOT_MEASURED.into(), |m| format!("{m:+.2}%"));
    let measured = format!(
        "{} vs floor, {} vs trio (coroner {}, floor {}, trio {})",
        gap_text(side, s, Config::Floor),
        gap_text(side, s, Config::Trio),
        pct(Config::Coroner),
        pct(Config::Floor),
        pct(Config::Trio)
    );
    let verdict = match (gap(side, s, Config::Floor), gap(side, s, Config::Trio)) {
        (Some(floor), Some(trio)) => {
            let mut missed = Vec::new();
            if floor > 1.0 {
                missed.push(format!("{floor:+.2} pp over the floor"));
            }
            if trio >= 0.0 {
                missed.push(format!("not ahead of the trio ({trio:+.2} pp)"));
            }
            if missed.is_empty() {
                "met".to_owned()
            } else {
                format!("missed: {}", missed.join(", "))
            }
        }
        _ => NOT_MEASURED.to_owned(),
    };
    row(
        format!("coroner vs floor and trio, throughput: {} storm", s.storm),
        measured,
        "≤1 pp above the floor; below the trio",
        verdict,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::overhead::{STORMS, StormRun};
    use crate::bench::rounds::NotMeasured;

    fn side() -> SideBySide {
        let configs = [
            Config::Baseline,
            Config::Coroner,
            Config::CoronerExecFailuresOff,
            Config::Floor,
            Config::Trio,
        ];
        let mut s = SideBySide::new(&STORMS[..1], &configs, 1);
        for (config, rate) in [
            (Config::Baseline, 1000.0),
            (Config::Coroner, 800.0),
            (Config::Floor, 950.0),
            (Config::Trio, 500.0),
        ] {
            s.record(
                0,
                config,
                0,
                StormRun {
                    ops_per_s: rate,
                    cpu_ns_per_op: 1e9 / rate,
                },
            );
        }
        s.not_measured.push(NotMeasured {
            config: Config::CoronerExecFailuresOff,
            error: "coroner exited before it was ready".into(),
        });
        s.summarise();
        s
    }

    #[test]
    fn the_table_has_a_column_per_configuration_and_a_row_per_storm() {
        let table = render(&side(), Metric::Throughput);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| storm | nothing attached | coroner | coroner --exec-failures off | floor (empty programs) | libbpf-tools trio |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|");
        assert_eq!(
            lines[2],
            "| spawn | 1000/s | +25.00% (+25.00..+25.00) | not measured | +5.26% (+5.26..+5.26) | +100.00% (+100.00..+100.00) |"
        );
        assert_eq!(lines.len(), 3);
        let cpu = render(&side(), Metric::CpuPerOp);
        assert!(cpu.contains("| spawn | 1000000 ns/op | +25.00% "), "{cpu}");
    }

    #[test]
    fn versus_lines_give_percentage_points_and_say_what_is_missing() {
        let s = side();
        assert_eq!(
            versus_lines(&s),
            "- spawn: coroner vs floor: +19.74 pp; coroner vs trio: -75.00 pp\n"
        );
        assert_eq!(
            not_measured_lines(&s),
            "- coroner --exec-failures off: not measured: coroner exited before it was ready\n"
        );
        let rows = summary_rows(Some(&s));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].verdict, "missed: +19.74 pp over the floor");
        assert_eq!(summary_rows(None)[0].measured, NOT_MEASURED);
    }
}
