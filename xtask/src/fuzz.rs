//! `cargo xtask fuzz [--seconds N] [TARGET…]`: every cargo-fuzz target in `fuzz/` under
//! libFuzzer for N seconds each (the suite's proptests run the same checks for seconds; this
//! is the long run). Installs cargo-fuzz once; needs the nightly toolchain (installed by the
//! build prerequisites). New inputs go to `fuzz/corpus/<target>`, crashes to
//! `fuzz/artifacts/<target>`; `fuzz/seeds/<target>` starts each run. A crash, once fixed,
//! goes (minimised: `cargo +nightly fuzz tmin`) to `fuzz/regressions/<target>/`, which the
//! agent's unit tests replay in every `cargo test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::{prereq, run, workspace_root};

/// cargo-fuzz 0.13 is the one verified here with nightly 1.97.
const CARGO_FUZZ_VERSION: &str = "^0.13";
pub const TARGETS: [&str; 3] = ["ring_buffer", "cgroup_path", "pod_object"];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only these targets (default: all).
    targets: Vec<String>,
}

/// What one target's run did.
struct Outcome {
    target: String,
    runs: Option<u64>,
    corpus: usize,
    crashed: bool,
    seconds: f64,
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .env("PATH", prereq::path_with_tools())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io (once)");
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}

/// libFuzzer's `-print_final_stats=1` line `stat::number_of_executed_units: N`.
fn executed_units(log: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Where `cargo fuzz build` puts the targets (its default: release, the host triple).
fn built(fuzz_dir: &Path, target: &str) -> PathBuf {
    fuzz_dir
        .join("target")
        .join(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .join("release")
        .join(target)
}

fn fuzz_one(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let started = Instant::now();
    // The binary the build made, not `cargo fuzz run`: that would rebuild the agent (minutes
    // under the sanitizer) whenever a source file changed since, for every target.
    let mut cmd = Command::new(built(fuzz_dir, target));
    cmd.current_dir(fuzz_dir).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    let mut prefix = artifacts.into_os_string();
    prefix.push("/");
    let mut artifact_prefix = std::ffi::OsString::from("-artifact_prefix=");
    artifact_prefix.push(prefix);
    cmd.arg(artifact_prefix);
    cmd.args([
        &format!("-max_total_time={seconds}"),
        "-print_final_stats=1",
        "-timeout=10",
        "-rss_limit_mb=4096",
        "-max_len=8192",
    ]);
    eprintln!("xtask: fuzzing {target} for {seconds} s");
    let output = cmd
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running fuzz target {target}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    // libFuzzer prints everything on stderr; pass the end on for the person reading.
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines[lines.len().saturating_sub(25)..] {
        eprintln!("  {line}");
    }
    Ok(Outcome {
        target: target.to_owned(),
        runs: executed_units(&log),
        corpus: files_in(&corpus),
        crashed: !output.status.success(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    prereq::ensure_build_tools()?;
    ensure_cargo_fuzz()?;
    let fuzz_dir = workspace_root().join("fuzz");
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = targets.iter().find(|t| !TARGETS.contains(t)) {
        bail!("no fuzz target {unknown:?}; the targets are {TARGETS:?}");
    }
    // One build for all targets first, so each target's time is spent fuzzing.
    run(Command::new("cargo")
        .current_dir(&fuzz_dir)
        .env("PATH", prereq::path_with_tools())
        .args(["+nightly", "fuzz", "build"]))?;
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(fuzz_one(&fuzz_dir, target, args.seconds)?);
    }
    println!("\n| target | seconds | executions | corpus | result |\n|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {:.0} | {} | {} | {} |",
            o.target,
            o.seconds,
            o.runs.map_or_else(|| "?".to_owned(), |r| r.to_string()),
            o.corpus,
            if o.crashed {
                format!("FAILED: see fuzz/artifacts/{}", o.target)
            } else {
                "no crash".to_owned()
            }
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed)
        .map(|o| o.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzzing found crashes in {crashed:?}: reproduce with `cargo +nightly fuzz run <target> <artifact>` in fuzz/"
        );
    }
    Ok(())
}
