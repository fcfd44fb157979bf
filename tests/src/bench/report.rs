//! The result: one table of figures against their targets (stdout and Markdown), the details
//! behind each, and everything as JSON. A figure not measured says so, with the reason.

use std::fmt::Write as _;

use serde::Serialize;

use super::floor;
use super::footprint::Footprint;
use super::memcg_reads::MemcgReads;
use super::overhead::ProgCost;
use super::procfs::Machine;
use super::rounds::SideBySide;
use super::series::SeriesResult;
use super::stats::Percentiles;

const MIB: f64 = 1024.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub spawn_program: String,
    pub bench_seconds: f64,
    /// Side by side: each configuration on each storm, round after round.
    pub slowdown: Option<SideBySide>,
    pub program_cost: Option<Vec<ProgCost>>,
    /// Empty programs on coroner's hooks, same storms: the machine's floor per run.
    pub program_floor: Option<Vec<ProgCost>>,
    pub footprint: Option<Footprint>,
    pub series: Option<SeriesResult>,
    pub memcg_reads: Option<MemcgReads>,
    /// Phases that failed, and why: their figures are "not measured".
    pub errors: Vec<String>,
    pub rows: Vec<Row>,
}

/// One line of the summary table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub target: String,
    pub verdict: String,
}

pub fn row(
    figure: impl Into<String>,
    measured: impl Into<String>,
    target: impl Into<String>,
    verdict: impl Into<String>,
) -> Row {
    Row {
        figure: figure.into(),
        measured: measured.into(),
        target: target.into(),
        verdict: verdict.into(),
    }
}

pub const NOT_MEASURED: &str = "not measured";
/// A storm's average for a program counts as "worst" only over this many runs.
const MIN_RUNS: u64 = 1_000;

/// "met", or how far over an upper bound the value is.
pub fn at_most(value: f64, limit: f64, unit: &str) -> String {
    if value <= limit {
        "met".into()
    } else {
        format!(
            "missed by {:.2} {unit} ({:.1}×)",
            value - limit,
            value / limit
        )
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / MIB)
}

fn latency_text(p: Option<&Percentiles>) -> String {
    p.map_or_else(
        || "no records seen".into(),
        |p| {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
                p.p50 / 1e3,
                p.p99 / 1e3,
                p.max / 1e3,
                p.samples
            )
        },
    )
}

impl Report {
    /// Fills `rows` from the phases' results.
    pub fn summarise(&mut self) {
        let mut rows = Vec::new();
        rows.extend(super::table::summary_rows(self.slowdown.as_ref()));
        self.program_rows(&mut rows);
        self.footprint_rows(&mut rows);
        self.series_rows(&mut rows);
        rows.push(match &self.memcg_reads {
            Some(m) => row(
                "container memory peak + limit read per death",
                format!(
                    "{:.0} ns kept open, {:.0} ns within a batch; {:.0} ns by path (depth {})",
                    m.kept_open_ns, m.in_batch_ns, m.by_path_ns, m.cgroup_depth
                ),
                "below by path",
                at_most(m.kept_open_ns, m.by_path_ns, "ns"),
            ),
            None => row(
                "container memory peak + limit read per death",
                NOT_MEASURED,
                "below by path",
                NOT_MEASURED,
            ),
        });
        self.rows = rows;
    }

    fn program_rows(&self, rows: &mut Vec<Row>) {
        for (program, target) in [("process_exit", 300.0), ("signal_generate", 100.0)] {
            let costs: Vec<&ProgCost> = self
                .program_cost
                .iter()
                .flatten()
                .filter(|c| c.program == program)
                .collect();
            let all = costs
                .iter()
                .find(|c| c.storm == "all")
                .and_then(|c| c.avg_ns.map(|a| (a, c.runs)));
            let worst = costs
                .iter()
                .filter(|c| c.storm != "all" && c.runs >= MIN_RUNS)
                .filter_map(|c| Some((c.avg_ns?, c.storm)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let (measured, verdict) = match all {
                Some((avg, runs)) => (
                    format!(
                        "{avg:.0} ns average over {runs} runs{}",
                        worst.map_or(String::new(), |(w, storm)| format!(
                            "; worst storm {storm}: {w:.0} ns"
                        ))
                    ),
                    at_most(avg, target, "ns"),
                ),
                None => (NOT_MEASURED.into(), NOT_MEASURED.into()),
            };
            let floor = floor::floor_of(program).and_then(|name| {
                self.program_floor
                    .iter()
                    .flatten()
                    .find(|f| f.program == name && f.storm == "all")?
                    .avg_ns
            });
            let measured = match floor {
                Some(floor) => format!("{measured}; empty-program floor here {floor:.0} ns"),
                None => measured,
            };
            rows.push(row(
                format!("kernel cost: {program} per run"),
                measured,
                format!("≤{target:.0} ns"),
                verdict,
            ));
        }
    }

    /// The fastest death rate without loss, against what the machine does without the agent.
    fn loss_row(&self, f: &Footprint) -> Row {
        let baseline = |kind| self.slowdown.as_ref()?.storm(kind)?.baseline_rate();
        let (max_spawn, max_kill) = (baseline("spawn"), baseline("kill"));
        let versus = |rate: f64| {
            let mut text = format!("{rate:.0} deaths/s");
            if let Some(spawn) = max_spawn {
                let _ = write!(
                    text,
                    " = {:.0}% of the max spawn rate ({spawn:.0}/s)",
                    rate / spawn * 100.0
                );
            }
            if let Some(kill) = max_kill {
                let _ = write!(
                    text,
                    ", {:.0}% of the max fork+kill rate without agent ({kill:.0}/s)",
                    rate / kill * 100.0
                );
            }
            text
        };
        let (measured, verdict) = match (f.highest_loss_free_rate, f.first_loss_rate) {
            (Some(free), None) => (
                format!("{}; no loss at any step", versus(free)),
                "met (no loss up to the fastest rate reached)".to_owned(),
            ),
            (Some(free), Some(lost)) => (
                format!("{}; first loss at {lost:.0}/s", versus(free)),
                format!("missed: loss at {lost:.0}/s"),
            ),
            (None, Some(lost)) => (format!("loss already at {lost:.0}/s"), "missed".to_owned()),
            (None, None) => (NOT_MEASURED.into(), NOT_MEASURED.into()),
        };
        row(
            "highest loss-free death rate (fork + kill in a container)",
            measured,
            "no loss at the machine's max",
            verdict,
        )
    }

    fn footprint_rows(&self, rows: &mut Vec<Row>) {
        let Some(f) = &self.footprint else {
            for (figure, target) in [
                (
                    "highest loss-free death rate",
                    "no loss at the machine's max",
                ),
                ("agent RSS idle", "≤32 MiB"),
                ("agent RSS after deaths", "no growth with churn"),
                ("agent CPU per event", "≤2 µs"),
                ("latency exit → record", "p99 ≤1 ms"),
            ] {
                rows.push(row(figure, NOT_MEASURED, target, NOT_MEASURED));
            }
            return;
        };
        rows.push(self.loss_row(f));
        rows.push(row(
            "agent RSS idle (--kube off)",
            format!(
                "VmRSS {}, VmHWM {}",
                mib(f.idle.rss_kib),
                mib(f.idle.hwm_kib)
            ),
            "≤32 MiB",
            at_most(f.idle.rss_kib as f64 / MIB, 32.0, "MiB"),
        ));
        let growth = f
            .churn
            .as_ref()
            .and_then(|c| Some((c.rss_by_records.first()?, c.rss_by_records.last()?)));
        rows.push(row(
            format!("agent RSS after {} recorded deaths", f.total_records),
            format!(
                "VmRSS {}, VmHWM {}{}",
                mib(f.after.rss_kib),
                mib(f.after.hwm_kib),
                growth.map_or(String::new(), |(a, b)| format!(
                    "; during churn {} at {} records → {} at {}",
                    mib(a.1),
                    a.0,
                    mib(b.1),
                    b.0
                ))
            ),
            "no growth with churn",
            growth.map_or_else(
                || NOT_MEASURED.to_owned(),
                |(a, b)| {
                    if b.1 <= a.1 + 1024 {
                        "met (≤1 MiB growth)".into()
                    } else {
                        format!("grew {} during churn", mib(b.1 - a.1))
                    }
                },
            ),
        ));
        let cpu = f
            .churn
            .as_ref()
            .and_then(|c| c.cpu_per_event_ns.map(|ns| (ns, c.events)));
        rows.push(row(
            "agent CPU (user+sys) per kernel event",
            cpu.map_or_else(
                || NOT_MEASURED.into(),
                |(ns, events)| format!("{:.2} µs over {events} events", ns / 1e3),
            ),
            "≤2 µs",
            cpu.map_or_else(
                || NOT_MEASURED.into(),
                |(ns, _)| at_most(ns / 1e3, 2.0, "µs"),
            ),
        ));
        for l in &f.latency {
            let rate = if l.target_rate == 0 {
                "max".to_owned()
            } else {
                l.target_rate.to_string()
            };
            rows.push(row(
                format!(
                    "latency exit → record line, {:.0} deaths/s (asked {rate})",
                    l.achieved_rate
                ),
                latency_text(l.micros.as_ref()),
                "p99 ≤1 ms",
                l.micros
                    .map_or_else(|| NOT_MEASURED.into(), |p| at_most(p.p99 / 1e3, 1.0, "ms")),
            ));
        }
    }

    fn series_rows(&self, rows: &mut Vec<Row>) {
        let Some(s) = &self.series else {
            rows.push(row(
                "agent RSS with 100k series",
                NOT_MEASURED,
                "≤64 MiB",
                NOT_MEASURED,
            ));
            rows.push(row(
                "/metrics encode at 10k and 100k series",
                NOT_MEASURED,
                "≤250 ns per series",
                NOT_MEASURED,
            ));
            return;
        };
        rows.push(row(
            format!(
                "agent RSS idle (--kube on, {} pods in the watch cache, no deaths yet)",
                s.pods_in_watch
            ),
            format!(
                "VmRSS {}, VmHWM {}",
                mib(s.idle.rss_kib),
                mib(s.idle.hwm_kib)
            ),
            "≤32 MiB",
            at_most(s.idle.rss_kib as f64 / MIB, 32.0, "MiB"),
        ));
        for p in &s.points {
            rows.push(row(
                format!("agent RSS with {} series ({} pods)", p.series, p.pods),
                format!(
                    "VmRSS {}, VmHWM {}",
                    mib(p.agent.rss_kib),
                    mib(p.agent.hwm_kib)
                ),
                "≤64 MiB (at 100k)",
                at_most(p.agent.rss_kib as f64 / MIB, 64.0, "MiB"),
            ));
            let per_series_cpu = p.agent_cpu_ms * 1e6 / p.series.max(1) as f64;
            rows.push(row(
                format!("/metrics at {} series", p.series),
                format!(
                    "{:.1} ms wall median ({:.0} ns/series), agent CPU {:.1} ms/scrape ({per_series_cpu:.0} ns/series), {:.1} MiB body",
                    p.wall_ms.map_or(f64::NAN, |w| w.median),
                    p.wall_ns_per_series.unwrap_or(f64::NAN),
                    p.agent_cpu_ms,
                    p.body_bytes as f64 / MIB / MIB
                ),
                "≤250 ns per series",
                p.wall_ns_per_series.map_or_else(|| NOT_MEASURED.into(), |ns| at_most(ns, 250.0, "ns")),
            ));
        }
    }

    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::from("| figure | measured | target | verdict |\n|---|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.figure, r.measured, r.target, r.verdict
            );
        }
        out
    }
}
