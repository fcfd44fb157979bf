//! `cargo xtask build | run | test | bench`: the project's commands. Each installs what a
//! fresh machine lacks (the nightly's rust-src, bpf-linker against the toolchain's own LLVM,
//! tracefs, Prometheus) idempotently, so a second run costs nothing.

mod fuzz;
mod lint;
mod prereq;
mod unprivileged;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "coroner's build, run, test and bench commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the eBPF object and `target/release/coroner`.
    Build,
    /// Build, then run the agent on this node (standalone without a cluster).
    Run {
        /// Extra arguments for `coroner` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The whole suite: unit, kernel integration and end-to-end tests (needs root).
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// The benchmark: overhead side by side with the empty-program floor and libbpf-tools
    /// (installed from Debian), loss, footprint and latency (needs root).
    Bench,
    /// Install the build prerequisites only.
    Setup,
    /// What CI holds the workspace to: rustfmt, clippy `-D warnings` (host and eBPF crates).
    Lint,
    /// The same agent on Debian's Linux 5.10, 6.1 and 6.12 with cgroup v2 and v1, in QEMU
    /// guests.
    VmTest(vm::VmTestArgs),
    /// The cargo-fuzz targets under libFuzzer, `--seconds` each (default 60; needs nightly).
    Fuzz(fuzz::FuzzArgs),
}

#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// A `cargo` command with the bpf-linker this project installed on PATH.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd.env("PATH", prereq::path_with_tools());
    cmd
}

/// What [`build`] builds besides the agent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Targets {
    /// Every binary (the agent, the bench, the test victim).
    Bins,
    /// Every target, tests included.
    All,
}

fn build(targets: Targets) -> Result<PathBuf> {
    prereq::ensure_build_tools()?;
    // One feature set for the whole workspace: cargo unifies features over what one command
    // builds, and tests add their dev-dependencies' features. Built with `-p coroner` alone
    // (or without the tests), the agent and its dependencies would be built a second time by
    // `cargo test --workspace`.
    let targets = match targets {
        Targets::Bins => "--bins",
        Targets::All => "--all-targets",
    };
    run(cargo().args(["build", "--release", "--workspace", targets]))?;
    let binary = workspace_root().join("target/release/coroner");
    println!("built {}", binary.display());
    Ok(binary)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => prereq::ensure_build_tools(),
        Cmd::Lint => lint::lint(),
        Cmd::Build => build(Targets::Bins).map(drop),
        Cmd::VmTest(args) => vm::vm_test(&args),
        Cmd::Fuzz(args) => fuzz::fuzz(&args),
        Cmd::Run { args } => {
            let binary = build(Targets::Bins)?;
            prereq::require_root("running the agent")?;
            let mut cmd = Command::new(binary);
            if args.is_empty() {
                cmd.args(["--kube", "auto", "--listen", "127.0.0.1:9750", "--print"]);
            }
            run(cmd.args(args))
        }
        Cmd::Test { filter } => {
            // First, and not fatal to the rest: one run shows every slip and every failure.
            let lint = if filter.is_none() {
                lint::lint()
            } else {
                Ok(())
            };
            let binary = build(Targets::All)?;
            prereq::require_root("the kernel tests")?;
            prereq::ensure_test_tools()?;
            let mut cmd = cargo();
            cmd.args(["test", "--release", "--workspace", "--no-fail-fast"]);
            cmd.env("CORONER_BIN", &binary);
            if let Some(filter) = &filter {
                cmd.arg(filter);
            }
            // Kernel tests share one machine's cgroups and kill real processes: one binary's
            // tests at a time is cargo's default; within one, they pick their own cgroup names.
            let host = run(&mut cmd);
            // Plain `cargo test` must need neither root nor the tools installed above.
            let unprivileged = if filter.is_none() {
                unprivileged::unit_tests_unprivileged()
            } else {
                Ok(())
            };
            // The other kernels (5.10, 6.1, 6.12; cgroup v2 and v1; a real node-wide OOM) in
            // QEMU: about a minute with the binaries just built. Skipped when a filter is given.
            let vms = if filter.is_none() {
                vm::vm_test(&vm::VmTestArgs {
                    kernel: None,
                    cgroup: None,
                    memory_mib: 320,
                    timeout_secs: 420,
                    sequential: false,
                    no_build: true,
                })
            } else {
                Ok(())
            };
            lint.and(host).and(unprivileged).and(vms)
        }
        Cmd::Bench => {
            let binary = build(Targets::Bins)?;
            prereq::require_root("the benchmark")?;
            prereq::ensure_bench_tools()?;
            run(Command::new(workspace_root().join("target/release/coroner-bench")).arg(&binary))
        }
    }
}
