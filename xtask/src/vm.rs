//! `cargo xtask vm-test`: the same `coroner` binary on Debian's Linux 6.1 and 6.12 with
//! cgroup v2 as the only hierarchy, each booted under QEMU (software emulation: KVM hangs on
//! these machines) from an initramfs this module writes. Inside, `tests/vm/init.sh` stages
//! deaths in kubelet-style cgroups — including a node-wide OOM, which cannot be staged on a
//! shared machine — and sends the agent's records back over a second serial port; the host
//! checks them against `tests/vm/expected.json`.

mod artifacts;
mod check;
mod cpio;
mod initramfs;
mod qemu;
mod serial;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::workspace_root;

pub use artifacts::KERNELS;

/// What `cargo xtask vm-test` was asked for.
#[derive(clap::Args, Debug)]
pub struct VmTestArgs {
    /// Only the kernels whose label contains this (e.g. `6.1.`, `6.12`); all by default.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Guest memory in MiB: small, so the staged node-wide OOM comes quickly.
    #[arg(long, default_value_t = 320)]
    pub memory_mib: u32,
    /// Give up on a guest after this many seconds (software emulation is slow).
    #[arg(long, default_value_t = 420)]
    pub timeout_secs: u64,
    /// Boot the kernels one after the other instead of side by side.
    #[arg(long)]
    pub sequential: bool,
    /// Use the binaries already in target/release instead of building them.
    #[arg(long)]
    pub no_build: bool,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
        .join(".cache/coroner/vm")
}

/// Where this run's initramfs and each guest's serial logs go.
fn work_dir() -> PathBuf {
    workspace_root().join("target/vm")
}

/// The agent and the test helper, built once for the host and run unchanged in every guest.
fn build_binaries(no_build: bool) -> Result<(PathBuf, PathBuf)> {
    let release = workspace_root().join("target/release");
    if no_build {
        return Ok((release.join("coroner"), release.join("coroner-victim")));
    }
    // Every binary, the victim among them, with the workspace's one feature set.
    let agent = crate::build(crate::Targets::Bins)?;
    Ok((agent, release.join("coroner-victim")))
}

pub fn vm_test(args: &VmTestArgs) -> Result<()> {
    let started = Instant::now();
    let kernels: Vec<_> = KERNELS
        .iter()
        .filter(|k| args.kernel.as_deref().is_none_or(|f| k.label.contains(f)))
        .collect();
    if kernels.is_empty() {
        bail!("no kernel matches {:?}", args.kernel);
    }
    artifacts::ensure_qemu()?;
    let cache = cache_dir();
    let busybox = artifacts::busybox(&cache)?;
    let images = kernels
        .iter()
        .map(|k| artifacts::kernel_image(&cache, k).map(|image| (*k, image)))
        .collect::<Result<Vec<_>>>()?;
    let (agent, victim) = build_binaries(args.no_build)?;
    let prepared = started.elapsed();

    let work = work_dir();
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let vm_dir = workspace_root().join("tests/vm");
    let initrd = work.join("initramfs.cpio");
    initramfs::write(
        &initrd,
        &initramfs::Contents {
            busybox: &busybox,
            init: &vm_dir.join("init.sh"),
            agent: &agent,
            victim: &victim,
        },
    )?;
    let expected = check::Expected::load(&vm_dir.join("expected.json"))?;

    let boot = |(kernel, image): &(&artifacts::Kernel, PathBuf)| -> Result<Outcome> {
        let dir = work.join(kernel.label);
        let guest = qemu::Guest {
            kernel: image,
            initrd: &initrd,
            memory_mib: args.memory_mib,
            timeout: Duration::from_secs(args.timeout_secs),
            dir: &dir,
        };
        let booted = Instant::now();
        let logs = guest.boot()?;
        let elapsed = booted.elapsed();
        let report = serial::Report::parse(&logs.results)
            .with_context(|| format!("reading {}", dir.join(qemu::RESULTS_LOG).display()))?;
        Ok(Outcome {
            label: kernel.label,
            elapsed,
            verdict: check::check(&expected, &report),
            report,
            dir,
        })
    };
    let outcomes: Vec<Result<Outcome>> = if args.sequential || images.len() == 1 {
        images.iter().map(boot).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = images
                .iter()
                .map(|image| scope.spawn(move || boot(image)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a guest's thread panicked")))
                })
                .collect()
        })
    };

    let mut failures = Vec::new();
    for (outcome, (kernel, _)) in outcomes.iter().zip(&images) {
        match outcome {
            Ok(outcome) => {
                outcome.print();
                if !outcome.verdict.passed() {
                    failures.push(kernel.label);
                }
            }
            Err(e) => {
                println!("\n== {}: the guest did not report: {e:#}", kernel.label);
                print_tail(&work.join(kernel.label).join(qemu::CONSOLE_LOG), 40);
                failures.push(kernel.label);
            }
        }
    }
    println!(
        "\nvm-test: {} kernel(s) in {:.0?} (downloads and builds {:.0?}, guests {:.0?})",
        images.len(),
        started.elapsed(),
        prepared,
        started.elapsed().saturating_sub(prepared),
    );
    if !failures.is_empty() {
        bail!("vm-test failed on {}", failures.join(", "));
    }
    println!("vm-test: every staged death has the right record on every kernel");
    Ok(())
}

struct Outcome {
    label: &'static str,
    elapsed: Duration,
    report: serial::Report,
    verdict: check::Verdict,
    dir: PathBuf,
}

impl Outcome {
    fn print(&self) {
        println!(
            "\n== Linux {} (uname {}), cgroup v2 — guest ran {:.1?}",
            self.label,
            self.report.uname.as_deref().unwrap_or("?"),
            self.elapsed
        );
        println!("-- agent start-up (probes, kernel gaps):");
        for line in self.report.startup_lines() {
            println!("   {line}");
        }
        println!("-- tracepoint fields:");
        for fact in &self.report.kernel_facts {
            println!("   {fact}");
        }
        for note in &self.report.notes {
            println!("   guest: {note}");
        }
        print!("{}", self.verdict.table());
        if !self.verdict.passed() {
            println!(
                "-- logs: {} (console), {} (records, agent log)",
                self.dir.join(qemu::CONSOLE_LOG).display(),
                self.dir.join(qemu::RESULTS_LOG).display()
            );
            for line in self.report.agent_log.iter().rev().take(30).rev() {
                println!("   agent| {line}");
            }
            print_tail(&self.dir.join(qemu::CONSOLE_LOG), 25);
        }
    }
}

fn print_tail(path: &Path, lines: usize) {
    let Ok(text) = std::fs::read(path) else {
        return;
    };
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    println!("-- last {lines} lines of {}:", path.display());
    for line in &all[all.len().saturating_sub(lines)..] {
        println!("   console| {}", line.trim_end_matches('\r'));
    }
}
