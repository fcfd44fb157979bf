//! `cargo xtask vm-test`: the same `coroner` binary on Debian's Linux 5.10, 6.1 and 6.12,
//! each booted twice under QEMU (software emulation: KVM hangs on these machines) from an
//! initramfs this module writes: once with cgroup v2 as the only hierarchy, once with the
//! cgroup v1 memory controller. Inside, `tests/vm/init.sh` stages
//! deaths in kubelet-style cgroups — including a node-wide OOM, which cannot be staged on a
//! shared machine — and sends the agent's records back over a second serial port; the host
//! checks them against `tests/vm/expected.json`.

mod artifacts;
mod check;
mod cpio;
mod initramfs;
mod qemu;
mod serial;
mod table;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::workspace_root;

pub use artifacts::KERNELS;

/// What `cargo xtask vm-test` was asked for.
#[derive(clap::Args, Debug)]
pub struct VmTestArgs {
    /// Only the kernels whose label contains this (e.g. `5.10`, `6.1.`, `6.12`); all by
    /// default.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Only this cgroup version (`v1` or `v2`); both by default.
    #[arg(long)]
    pub cgroup: Option<String>,
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

/// The guests asked for: each kernel with each cgroup version it has, kernels fetched.
fn guest_matrix(args: &VmTestArgs, cache: &Path) -> Result<Vec<GuestConfig<'static>>> {
    let kernels: Vec<_> = KERNELS
        .iter()
        .filter(|k| args.kernel.as_deref().is_none_or(|f| k.label.contains(f)))
        .collect();
    let cgroups: Vec<Cgroup> = [Cgroup::V2, Cgroup::V1]
        .into_iter()
        .filter(|c| args.cgroup.as_deref().is_none_or(|f| c.name() == f))
        .collect();
    let mut guests = Vec::new();
    for kernel in kernels {
        let image = artifacts::kernel_image(cache, kernel)?;
        for &cgroup in &cgroups {
            if cgroup == Cgroup::V1 && !kernel.memcg_v1 {
                println!(
                    "vm-test: {} has no cgroup v1 memory controller (built without \
                     CONFIG_MEMCG_V1): booted with cgroup v2 only",
                    kernel.label
                );
                continue;
            }
            guests.push(GuestConfig {
                kernel,
                image: image.clone(),
                cgroup,
            });
        }
    }
    if guests.is_empty() {
        bail!("no guest matches {:?} {:?}", args.kernel, args.cgroup);
    }
    Ok(guests)
}

pub fn vm_test(args: &VmTestArgs) -> Result<()> {
    let started = Instant::now();
    artifacts::ensure_qemu()?;
    let cache = cache_dir();
    let busybox = artifacts::busybox(&cache)?;
    let guests = guest_matrix(args, &cache)?;
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

    let boot = |config: &GuestConfig| -> Result<Outcome> {
        let dir = work.join(config.label());
        let guest = qemu::Guest {
            kernel: &config.image,
            initrd: &initrd,
            memory_mib: args.memory_mib,
            timeout: Duration::from_secs(args.timeout_secs),
            dir: &dir,
            cmdline: config.cgroup.cmdline(),
        };
        let booted = Instant::now();
        let logs = guest.boot()?;
        let elapsed = booted.elapsed();
        let report = serial::Report::parse(&logs.results)
            .with_context(|| format!("reading {}", dir.join(qemu::RESULTS_LOG).display()))?;
        Ok(Outcome {
            kernel: config.kernel.label,
            label: config.label(),
            cgroup: config.cgroup,
            elapsed,
            verdict: check::check(&expected, &report),
            report,
            dir,
        })
    };
    // One guest per core at a time: each is one emulated CPU, and more at once only stretch
    // every guest's clock towards its timeout.
    let at_once = if args.sequential {
        1
    } else {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    };
    let mut outcomes: Vec<Result<Outcome>> = Vec::new();
    for batch in guests.chunks(at_once) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|guest| scope.spawn(move || boot(guest)))
                .collect();
            outcomes.extend(handles.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a guest's thread panicked")))
            }));
        });
    }

    let mut failures = Vec::new();
    for (outcome, guest) in outcomes.iter().zip(&guests) {
        match outcome {
            Ok(outcome) => {
                outcome.print();
                if !outcome.verdict.passed() {
                    failures.push(guest.label());
                }
            }
            Err(e) => {
                println!("\n== {}: the guest did not report: {e:#}", guest.label());
                print_tail(&work.join(guest.label()).join(qemu::CONSOLE_LOG), 40);
                failures.push(guest.label());
            }
        }
    }
    println!(
        "\nvm-test: {} guest(s) in {:.0?} (downloads and builds {:.0?}, guests {:.0?})",
        guests.len(),
        started.elapsed(),
        prepared,
        started.elapsed().saturating_sub(prepared),
    );
    if !failures.is_empty() {
        bail!("vm-test failed on {}", failures.join(", "));
    }
    println!("vm-test: every staged death has the right record on every kernel");
    if args.kernel.is_none() && args.cgroup.is_none() {
        write_table(&outcomes)?;
    }
    Ok(())
}

/// docs/kernels.md from a full run in which every guest passed.
fn write_table(outcomes: &[Result<Outcome>]) -> Result<()> {
    let rows: Vec<table::Row<'_>> = outcomes
        .iter()
        .flatten()
        .map(|o| table::Row {
            kernel: o.kernel,
            cgroup: o.cgroup.name(),
            report: &o.report,
        })
        .collect();
    let path = workspace_root().join("docs/kernels.md");
    std::fs::write(&path, table::markdown(&rows))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("vm-test: wrote {}", path.display());
    Ok(())
}

/// The cgroup hierarchy a guest's `/init` mounts (`coroner.cgroup=` on its command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cgroup {
    V1,
    V2,
}

impl Cgroup {
    fn name(self) -> &'static str {
        match self {
            Cgroup::V1 => "v1",
            Cgroup::V2 => "v2",
        }
    }

    fn cmdline(self) -> &'static str {
        match self {
            Cgroup::V1 => "coroner.cgroup=v1",
            Cgroup::V2 => "coroner.cgroup=v2",
        }
    }
}

/// One boot: a kernel and a cgroup version.
struct GuestConfig<'a> {
    kernel: &'a artifacts::Kernel,
    image: PathBuf,
    cgroup: Cgroup,
}

impl GuestConfig<'_> {
    fn label(&self) -> String {
        format!("{}-cgroup-{}", self.kernel.label, self.cgroup.name())
    }
}

struct Outcome {
    kernel: &'static str,
    label: String,
    cgroup: Cgroup,
    elapsed: Duration,
    report: serial::Report,
    verdict: check::Verdict,
    dir: PathBuf,
}

impl Outcome {
    fn print(&self) {
        println!(
            "\n== Linux {} (uname {}), cgroup {} — guest ran {:.1?}",
            self.label,
            self.report.uname.as_deref().unwrap_or("?"),
            self.cgroup.name(),
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
