//! The floor under the kernel-cost figures: an empty `tp_btf` program (`r0 = 0; exit`) on
//! `sched_process_exit`, loaded by the bench itself and measured the same way as the agent's
//! programs (BPF statistics, during a fork storm). What is left of a program's average above
//! this floor is what its own instructions cost; the floor is the machine's dispatch and
//! statistics overhead, which no program can go below.

use std::io::{BufRead as _, BufReader};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use super::Bench;
use super::overhead::{ProgCost, STORM_DURATION, STORMS, run_storm};
use super::procfs::{self, BpfStats};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_RAW_TP: u32 = 23;

/// The BTF id of `btf_trace_<tracepoint>` in vmlinux, from `bpftool btf dump`.
fn tracepoint_btf_id(tracepoint: &str) -> Result<u32> {
    let wanted = format!("] TYPEDEF 'btf_trace_{tracepoint}'");
    let mut child = Command::new("bpftool")
        .args(["btf", "dump", "file", "/sys/kernel/btf/vmlinux"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running bpftool")?;
    let lines = BufReader::new(child.stdout.take().context("bpftool's stdout")?).lines();
    let mut id = None;
    for line in lines.map_while(Result::ok) {
        if line.contains(&wanted) {
            id = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .and_then(|n| n.parse().ok());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    id.with_context(|| format!("no btf_trace_{tracepoint} in vmlinux BTF"))
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 144]) -> Result<OwnedFd> {
    // SAFETY: bpf(2) with a zero-padded attribute buffer of the kernel's union size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn put(attr: &mut [u8; 144], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Loads and attaches the empty program; both descriptors keep it attached.
fn load_empty(btf_id: u32) -> Result<(OwnedFd, OwnedFd)> {
    // `mov r0, 0` and `exit`, as struct bpf_insn (code, regs, off, imm).
    let insns: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let license = c"GPL";
    let mut attr = [0u8; 144];
    put(&mut attr, 0, &BPF_PROG_TYPE_TRACING.to_ne_bytes());
    put(&mut attr, 4, &2u32.to_ne_bytes());
    put(&mut attr, 8, &(insns.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 48, b"bench_floor");
    put(&mut attr, 68, &BPF_TRACE_RAW_TP.to_ne_bytes());
    put(&mut attr, 108, &btf_id.to_ne_bytes());
    let prog = bpf(BPF_PROG_LOAD, &mut attr).context("loading the empty tp_btf program")?;
    let mut attr = [0u8; 144];
    put(&mut attr, 8, &(prog.as_raw_fd() as u32).to_ne_bytes());
    let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).context("attaching the empty program")?;
    Ok((prog, link))
}

/// The empty program's average over a fork storm (no agent running).
pub fn empty_program_cost(bench: &Bench) -> Result<ProgCost> {
    let (prog, link) = load_empty(tracepoint_btf_id("sched_process_exit")?)?;
    let own = || -> Result<procfs::ProgRun> {
        let runs = procfs::prog_runs(std::process::id())?;
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", prog.as_raw_fd()))?;
        let id: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no prog_id in fdinfo")?;
        runs.get(&id)
            .copied()
            .context("the empty program is not among our descriptors")
    };
    let stats = BpfStats::enable()?;
    let before = own()?;
    let fork = STORMS
        .iter()
        .find(|s| s.kind == "fork")
        .context("the fork storm")?;
    run_storm(bench, fork, STORM_DURATION)?;
    let after = own()?;
    drop(stats);
    drop(link);
    let runs = after.run_cnt.saturating_sub(before.run_cnt);
    let time = after.run_time_ns.saturating_sub(before.run_time_ns);
    Ok(ProgCost {
        program: "empty tp_btf program (floor)".into(),
        storm: "fork",
        runs,
        avg_ns: (runs > 0).then(|| time as f64 / runs as f64),
    })
}
