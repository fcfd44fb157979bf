//! `cargo xtask bench`: what the agent costs a node, measured on this machine in one run.
//! Each phase is a module; the orchestration and the report live in the `coroner-bench` binary.

pub mod agent;
pub mod configs;
pub mod elf;
pub mod floor;
pub mod footprint;
pub mod helper;
pub mod latency;
pub mod markdown;
pub mod memcg_reads;
pub mod overhead;
pub mod procfs;
pub mod report;
pub mod rounds;
pub mod series;
pub mod stats;
pub mod table;
pub mod trio;

use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};

use coroner_tests::cgroups::{
    Layout, TestCgroup, container_path, kubepods_top, pod_uid, unique_hex,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: i32) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM end the bench between steps, through the guards' drops, instead of leaving
/// cgroups and an agent behind.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_interrupt as *const () as libc::sighandler_t) };
    }
}

/// Fails once the bench was asked to stop.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// What every phase shares: the agent binary, a scratch directory, the cgroups the storms
/// run in, and the storm program.
pub struct Bench {
    pub coroner: PathBuf,
    pub dir: PathBuf,
    pub me: PathBuf,
    pub nproc: usize,
    pub program: elf::SpawnProgram,
    /// A kubelet-style container cgroup (`…/kubepods/burstable/pod<uid>/<id>`): the storms'.
    pub container: TestCgroup,
    /// A cgroup outside any kubelet layout: where pod "shims" run and return to.
    pub host: TestCgroup,
}

impl Bench {
    pub fn new(coroner: PathBuf) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("coroner-bench-{}", unique_hex(8)));
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let program = elf::write_spawn_program(&dir)?;
        let container = TestCgroup::create(&container_path(
            Layout::CgroupfsBurstable,
            &kubepods_top(),
            &pod_uid(),
            &unique_hex(64),
        ))?;
        let host = TestCgroup::create(&format!("coroner-bench-host-{}", unique_hex(8)))?;
        Ok(Self {
            coroner,
            dir,
            me: std::env::current_exe().context("the bench's own path")?,
            nproc: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            program,
            container,
            host,
        })
    }

    /// Starts this binary as helper `verb args…` inside `cgroup` (joined before exec).
    pub fn helper(&self, cgroup: &TestCgroup, verb: &str, args: &[String]) -> Result<Helper> {
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(cgroup.procs_file())
            .context("opening cgroup.procs")?;
        let fd = procs.as_raw_fd();
        let mut cmd = Command::new(&self.me);
        cmd.arg(verb)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // SAFETY: write(2) and prctl(2) only, both async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting helper {verb}"))?;
        Ok(Helper { child: Some(child) })
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A helper process; killed if dropped before [`Helper::count`].
pub struct Helper {
    child: Option<Child>,
}

impl Helper {
    /// Waits for the helper and returns the count it printed.
    pub fn count(self) -> Result<u64> {
        self.numbers()?
            .first()
            .copied()
            .context("helper printed nothing")
    }

    /// Waits for the helper and returns the numbers it printed.
    pub fn numbers(mut self) -> Result<Vec<u64>> {
        let mut child = self.child.take().context("helper already reaped")?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_string(&mut out)?;
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("helper failed: {status}");
        }
        out.split_whitespace()
            .map(|n| n.parse().with_context(|| format!("helper printed {out:?}")))
            .collect()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for every helper and sums their counts; the first failure is the result.
pub fn sum_counts(helpers: Vec<Helper>) -> Result<u64> {
    let mut total = 0;
    let mut first_error = None;
    for helper in helpers {
        match helper.count() {
            Ok(n) => total += n,
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map_or(Ok(total), Err)
}

/// The path of a file in the bench's scratch directory.
#[must_use]
pub fn scratch(bench: &Bench, name: &str) -> PathBuf {
    bench.dir.join(name)
}

#[must_use]
pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
