//! What `/proc` says of the agent (memory, CPU time, its BPF programs' run statistics) and of
//! the machine the bench runs on.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

/// Memory and CPU time of one process at one moment.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// utime + stime, all threads, in nanoseconds (clock-tick resolution).
    pub cpu_ns: u64,
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

pub fn sample(pid: u32) -> Result<ProcSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces and parentheses): state is 3rd,
    // utime the 14th and stime the 15th of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Ok(ProcSample {
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        cpu_ns: (ticks(11) + ticks(12)) * (1_000_000_000 / hz),
    })
}

/// One BPF program held by a process, with its run statistics (zero unless stats are on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgRun {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The BPF programs `pid` holds, by program id, read from its descriptors' fdinfo: exactly
/// this agent's programs, even when other agents with the same program names are loaded.
pub fn prog_runs(pid: u32) -> Result<BTreeMap<u32, ProgRun>> {
    let mut runs = BTreeMap::new();
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?;
    for fd in fds.flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:bpf-prog" {
            continue;
        }
        let Ok(info) = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        )) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(id) = field("prog_id:") {
            runs.insert(
                id as u32,
                ProgRun {
                    run_time_ns: field("run_time_ns:").unwrap_or(0),
                    run_cnt: field("run_cnt:").unwrap_or(0),
                },
            );
        }
    }
    Ok(runs)
}

/// Program names by id, from `bpftool prog show -j` (fdinfo has no names).
pub fn prog_names() -> Result<BTreeMap<u32, String>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).context("bpftool's JSON")?;
    Ok(progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_u64()? as u32, p["name"].as_str()?.to_owned())))
        .collect())
}

/// BPF run-time statistics on while this lives: `BPF_ENABLE_STATS`, the syscall behind
/// `kernel.bpf_stats_enabled`. The kernel counts holders, so closing the descriptor (also
/// when the bench dies) puts the sysctl back as it was: nothing to restore by hand.
pub struct BpfStats {
    _fd: OwnedFd,
}

impl BpfStats {
    pub fn enable() -> Result<Self> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr { struct { __u32 type; } enable_stats; }: BPF_STATS_RUN_TIME is 0.
        let attr = [0u8; 64];
        // SAFETY: bpf(2) reads `attr.len()` bytes of a buffer we own.
        let fd =
            unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), attr.len()) };
        if fd < 0 {
            bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor the kernel just gave us and nothing else owns.
        Ok(Self {
            _fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }
}

/// `kernel.bpf_stats_enabled` now.
#[must_use]
pub fn bpf_stats_sysctl() -> Option<u8> {
    fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The machine, as the report names it.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub memory_bytes: u64,
    pub cpu_model: String,
    /// 1-minute load average when the bench started and ended: other work on the machine
    /// makes every figure noisier, so it is part of the result.
    pub loadavg_start: f64,
    pub loadavg_end: f64,
}

#[must_use]
pub fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[must_use]
pub fn machine() -> Machine {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        memory_bytes: status_kib(&meminfo, "MemTotal:").unwrap_or(0) * 1024,
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(String::new, |(_, m)| m.trim().to_owned()),
        loadavg_start: loadavg(),
        loadavg_end: f64::NAN,
    }
}
