//! `cargo xtask bench`: what coroner costs a node, measured here, in one run — workload
//! slowdown side by side with nothing attached, the empty-program floor and the libbpf-tools
//! trio, the kernel programs' own cost, the highest loss-free death rate, memory and CPU,
//! record latency, and `/metrics` at 10k and 100k series. Prints the table and writes it as
//! Markdown and JSON to `bench-results/`.
//!
//! `coroner-bench [PATH TO coroner]` (default: `CORONER_BIN`, else `target/release/coroner`).
//! Knobs (environment): `CORONER_BENCH_ROUNDS` (5; each runs every configuration on every
//! storm; `CORONER_BENCH_PAIRS` is its former name), `CORONER_BENCH_CHURN_SECS` (280),
//! `CORONER_BENCH_SERIES` (`10000,100000`; empty: skip), `CORONER_BENCH_ONLY` (words, comma
//! separated: only the phases whose name holds one, e.g. `slowdown`; the others are "not
//! measured"). Needs root.

#[path = "../bench/mod.rs"]
#[expect(
    clippy::cast_precision_loss,
    reason = "counters and nanoseconds become f64 for rates, averages and percentages; they stay far below 2^52"
)]
mod bench;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use bench::report::Report;
use bench::{
    Bench, check_interrupted, floor, footprint, markdown, overhead, procfs, rounds, series,
};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Whether `CORONER_BENCH_ONLY` (comma-separated words; unset: every phase) names the phase.
fn wanted(phase: &str) -> bool {
    std::env::var("CORONER_BENCH_ONLY").map_or(true, |only| {
        only.split(',')
            .map(str::trim)
            .any(|word| !word.is_empty() && phase.contains(word))
    })
}

/// Runs one phase; a failure is reported, not fatal, so the other figures still come out.
fn phase<T>(name: &str, errors: &mut Vec<String>, run: impl FnOnce() -> Result<T>) -> Option<T> {
    if !wanted(name) {
        eprintln!("== {name}: left out (CORONER_BENCH_ONLY)");
        return None;
    }
    if check_interrupted().is_err() {
        errors.push(format!("{name}: skipped (interrupted)"));
        return None;
    }
    let started = Instant::now();
    eprintln!("== {name}");
    match run() {
        Ok(value) => {
            eprintln!("   {name}: {:.0?}", started.elapsed());
            Some(value)
        }
        Err(e) => {
            eprintln!("   {name} failed: {e:#}");
            errors.push(format!("{name}: {e:#}"));
            None
        }
    }
}

/// The agent to measure: argument 1, `CORONER_BIN`, or the release build; must exist, and the
/// bench must run as root.
fn agent_binary(args: &[String]) -> Result<PathBuf> {
    let coroner = args
        .get(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CORONER_BIN").map(PathBuf::from))
        .unwrap_or_else(|| workspace_root().join("target/release/coroner"));
    if !coroner.exists() {
        bail!(
            "{} is missing: run `cargo xtask bench` (it builds the release agent)",
            coroner.display()
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads BPF programs and creates cgroups: run it as root");
    }
    Ok(coroner)
}

fn orchestrate(args: &[String]) -> Result<()> {
    let coroner = agent_binary(args)?;
    bench::catch_interrupts();
    let started = Instant::now();
    let date = OffsetDateTime::now_utc();
    let mut machine = procfs::machine();
    if procfs::bpf_stats_sysctl() == Some(1) {
        eprintln!(
            "note: kernel.bpf_stats_enabled is already 1: the slowdown includes the statistics' own cost"
        );
    }
    let rounds: usize = env_or("CORONER_BENCH_ROUNDS", env_or("CORONER_BENCH_PAIRS", 5)).max(1);
    let churn = Duration::from_secs(env_or("CORONER_BENCH_CHURN_SECS", 280));
    let targets: Vec<usize> = std::env::var("CORONER_BENCH_SERIES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();

    let bench = Bench::new(coroner)?;
    let mut errors = Vec::new();
    let slowdown = phase("workload slowdown, side by side", &mut errors, || {
        rounds::run(&bench, rounds)
    });
    let program_cost = phase("kernel program cost", &mut errors, || {
        overhead::program_cost(&bench)
    });
    let program_floor = phase("kernel cost floor", &mut errors, || {
        floor::empty_program_cost(&bench, &floor::FloorHooks::resolve()?)
    });
    let max_kill = slowdown
        .as_ref()
        .and_then(|s| s.storm("kill"))
        .and_then(rounds::StormResult::baseline_rate);
    let footprint = phase("loss, latency, footprint", &mut errors, || {
        footprint::run(&bench, max_kill, churn)
    });
    let series = if targets.is_empty() {
        None
    } else {
        phase("series and scrape", &mut errors, || {
            series::run(&bench, &targets)
        })
    };
    machine.loadavg_end = procfs::loadavg();

    let mut report = Report {
        date: date.format(&Rfc3339).unwrap_or_default(),
        machine,
        spawn_program: bench.program.description.clone(),
        bench_seconds: started.elapsed().as_secs_f64(),
        slowdown,
        program_cost,
        program_floor,
        footprint,
        series,
        memcg_reads: phase("memory cgroup reads", &mut errors, bench::memcg_reads::run),
        errors,
        rows: Vec::new(),
    };
    drop(bench);
    report.summarise();
    println!("\n{}", report.table());
    let dir = workspace_root().join("bench-results");
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let stem = format!("bench-{}", report.date.replace(':', "-"));
    let md = dir.join(format!("{stem}.md"));
    std::fs::write(&md, markdown::render(&report))
        .with_context(|| format!("writing {}", md.display()))?;
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!(
        "bench took {:.0} s; results in {} and {}",
        report.bench_seconds,
        md.display(),
        json.display()
    );
    if report.errors.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} phase(s) failed: {}",
            report.errors.len(),
            report.errors.join("; ")
        )
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = bench::helper::run(&args) {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match orchestrate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coroner-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
