//! The floor: empty programs (`r0 = 0; exit`) on the very hooks coroner uses, loaded and
//! attached by the bench itself — `tp_btf` on the scheduler, signal, cgroup and OOM
//! tracepoints, plain `tracepoint` programs (perf event on the tracefs id) on the four
//! syscall tracepoints of exec. A storm with them attached costs what any agent on these hooks
//! must cost, however little its programs do; what coroner adds above it is its own. Their
//! BPF statistics give the per-run floor under the agent's program averages too.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use super::Bench;
use super::overhead::{self, ProgCost};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_RAW_TP: u32 = 23;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IOW('$', 8, __u32)` and `_IO('$', 0)` of `linux/perf_event.h`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// The first published size of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`) is 64; 128
/// (`VER7`) covers every field a tracepoint needs and every kernel since 5.12 knows it.
const PERF_ATTR_SIZE: usize = 128;

/// How a hook is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// `tp_btf/<name>`: a BTF-typed raw tracepoint, as coroner attaches its programs.
    BtfTracepoint,
    /// `tracepoint/syscalls/<name>`: a perf event on the tracefs event.
    SyscallTracepoint,
}

/// A hook coroner attaches to, and the name its empty program carries (`bpftool prog show`).
#[derive(Clone, Copy, Debug)]
pub struct Hook {
    pub tracepoint: &'static str,
    pub kind: HookKind,
    /// At most 15 bytes (`BPF_OBJ_NAME_LEN`).
    pub program: &'static str,
}

const fn btf(tracepoint: &'static str, program: &'static str) -> Hook {
    Hook {
        tracepoint,
        kind: HookKind::BtfTracepoint,
        program,
    }
}

const fn syscall(tracepoint: &'static str, program: &'static str) -> Hook {
    Hook {
        tracepoint,
        kind: HookKind::SyscallTracepoint,
        program,
    }
}

/// Every hook of agent/src/probes (`attach`), one empty program each.
pub const HOOKS: [Hook; 9] = [
    btf("sched_process_exit", "floor_exit"),
    btf("sched_process_exec", "floor_exec"),
    btf("signal_generate", "floor_signal"),
    btf("cgroup_mkdir", "floor_mkdir"),
    btf("mark_victim", "floor_victim"),
    syscall("sys_enter_execve", "floor_ent_exec"),
    syscall("sys_enter_execveat", "floor_ent_at"),
    syscall("sys_exit_execve", "floor_exit_exec"),
    syscall("sys_exit_execveat", "floor_exit_at"),
];

/// The empty program named for the agent's program `agent_program` (same hook).
#[must_use]
pub fn floor_of(agent_program: &str) -> Option<&'static str> {
    use agent_ebpf::names;
    // The kernel keeps 15 bytes of a program's name: `process_exit_live` is listed cut short.
    let hook = match agent_program {
        names::PROCESS_EXIT | names::PROCESS_EXIT_LIVE | "process_exit_li" => "sched_process_exit",
        names::PROCESS_EXEC => "sched_process_exec",
        names::SIGNAL_GENERATE => "signal_generate",
        names::CGROUP_MKDIR => "cgroup_mkdir",
        names::MARK_VICTIM | "mark_victim_pid" => "mark_victim",
        names::EXECVE_ENTER => "sys_enter_execve",
        names::EXECVEAT_ENTER => "sys_enter_execveat",
        names::EXECVE_EXIT => "sys_exit_execve",
        names::EXECVEAT_EXIT => "sys_exit_execveat",
        _ => return None,
    };
    HOOKS
        .iter()
        .find(|h| h.tracepoint == hook)
        .map(|h| h.program)
}

/// The hooks resolved once (BTF ids, tracefs ids): attaching them each round costs no
/// `bpftool btf dump`. A hook this kernel lacks is left out, with the reason.
pub struct FloorHooks {
    resolved: Vec<(Hook, u64)>,
    pub missing: Vec<String>,
}

impl FloorHooks {
    pub fn resolve() -> Result<Self> {
        let btf_names: Vec<&str> = HOOKS
            .iter()
            .filter(|h| h.kind == HookKind::BtfTracepoint)
            .map(|h| h.tracepoint)
            .collect();
        let btf_ids = tracepoint_btf_ids(&btf_names)?;
        let (mut resolved, mut missing) = (Vec::new(), Vec::new());
        for hook in HOOKS {
            let id = match hook.kind {
                HookKind::BtfTracepoint => btf_ids
                    .get(hook.tracepoint)
                    .map(|&id| u64::from(id))
                    .with_context(|| format!("no btf_trace_{} in vmlinux BTF", hook.tracepoint)),
                HookKind::SyscallTracepoint => tracefs_id(hook.tracepoint),
            };
            match id {
                Ok(id) => resolved.push((hook, id)),
                Err(e) => missing.push(format!("{}: {e:#}", hook.tracepoint)),
            }
        }
        if resolved.is_empty() {
            bail!("no hook of coroner's exists here: {}", missing.join("; "));
        }
        Ok(Self { resolved, missing })
    }

    /// Loads and attaches an empty program on every resolved hook.
    pub fn attach(&self) -> Result<FloorPrograms> {
        let mut attached = Vec::with_capacity(self.resolved.len());
        for &(hook, id) in &self.resolved {
            let (prog, link) = match hook.kind {
                HookKind::BtfTracepoint => {
                    let btf_id = u32::try_from(id).context("a BTF id over 32 bits")?;
                    let prog = load_empty(BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, btf_id, hook)?;
                    let link = attach_raw_tp(&prog)?;
                    (prog, link)
                }
                HookKind::SyscallTracepoint => {
                    let prog = load_empty(BPF_PROG_TYPE_TRACEPOINT, 0, 0, hook)?;
                    let event = attach_perf_tracepoint(&prog, id)
                        .with_context(|| format!("attaching {}", hook.program))?;
                    (prog, event)
                }
            };
            attached.push(Attachment {
                _prog: prog,
                _link: link,
            });
        }
        Ok(FloorPrograms {
            _attached: attached,
        })
    }
}

struct Attachment {
    _prog: OwnedFd,
    /// The raw tracepoint's link, or the perf event carrying the program: closing it detaches.
    _link: OwnedFd,
}

/// The empty programs, attached while this lives.
pub struct FloorPrograms {
    _attached: Vec<Attachment>,
}

/// The BTF ids of `btf_trace_<tracepoint>` in vmlinux, from one `bpftool btf dump`.
fn tracepoint_btf_ids(tracepoints: &[&str]) -> Result<BTreeMap<String, u32>> {
    let mut child = Command::new("bpftool")
        .args(["btf", "dump", "file", "/sys/kernel/btf/vmlinux"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running bpftool")?;
    let lines = BufReader::new(child.stdout.take().context("bpftool's stdout")?).lines();
    let mut ids = BTreeMap::new();
    for line in lines.map_while(Result::ok) {
        let Some((id, rest)) = line
            .trim_start_matches('[')
            .split_once("] TYPEDEF 'btf_trace_")
        else {
            continue;
        };
        let Some(name) = rest.split('\'').next() else {
            continue;
        };
        if tracepoints.contains(&name)
            && let Ok(id) = id.parse()
        {
            ids.insert(name.to_owned(), id);
            if ids.len() == tracepoints.len() {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(ids)
}

/// The perf event id of `syscalls/<event>` in tracefs (or debugfs' copy of it).
fn tracefs_id(event: &str) -> Result<u64> {
    let candidates = [
        format!("/sys/kernel/tracing/events/syscalls/{event}/id"),
        format!("/sys/kernel/debug/tracing/events/syscalls/{event}/id"),
    ];
    candidates
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .with_context(|| format!("no tracefs id for syscalls/{event} (is tracefs mounted?)"))?
        .trim()
        .parse()
        .with_context(|| format!("tracefs id of syscalls/{event}"))
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

fn put(attr: &mut [u8], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

/// `mov r0, 0` and `exit`, loaded as `prog_type` (a `tp_btf` one needs its BTF id).
fn load_empty(prog_type: u32, attach_type: u32, btf_id: u32, hook: Hook) -> Result<OwnedFd> {
    // As struct bpf_insn (code, regs, off, imm).
    let insns: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let license = c"GPL";
    let mut attr = [0u8; 144];
    put(&mut attr, 0, &prog_type.to_ne_bytes());
    put(&mut attr, 4, &2u32.to_ne_bytes());
    put(&mut attr, 8, &(insns.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 48, hook.program.as_bytes());
    put(&mut attr, 68, &attach_type.to_ne_bytes());
    put(&mut attr, 108, &btf_id.to_ne_bytes());
    bpf(BPF_PROG_LOAD, &mut attr).with_context(|| {
        format!(
            "loading the empty program {} ({})",
            hook.program, hook.tracepoint
        )
    })
}

fn attach_raw_tp(prog: &OwnedFd) -> Result<OwnedFd> {
    let mut attr = [0u8; 144];
    put(&mut attr, 8, &(prog.as_raw_fd() as u32).to_ne_bytes());
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).context("attaching an empty tp_btf program")
}

/// What libbpf does for `tracepoint/…`: a perf event on the tracepoint (any task, CPU 0 —
/// the program runs on every CPU regardless), the program set on it, the event enabled.
fn attach_perf_tracepoint(prog: &OwnedFd, tracefs_id: u64) -> Result<OwnedFd> {
    let mut attr = [0u8; PERF_ATTR_SIZE];
    put(&mut attr, 0, &PERF_TYPE_TRACEPOINT.to_ne_bytes());
    put(&mut attr, 4, &(PERF_ATTR_SIZE as u32).to_ne_bytes());
    put(&mut attr, 8, &tracefs_id.to_ne_bytes());
    // SAFETY: perf_event_open(2) reads `size` bytes of an attribute buffer we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        bail!("perf_event_open: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let event = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for (request, arg) in [
        (PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: ioctl(2) on our perf event with an integer argument.
        if unsafe { libc::ioctl(event.as_raw_fd(), request, arg) } != 0 {
            bail!(
                "perf event ioctl {request:#x}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(event)
}

/// The empty programs' averages over the storms (no agent running), with BPF statistics on.
pub fn empty_program_cost(bench: &Bench, hooks: &FloorHooks) -> Result<Vec<ProgCost>> {
    let floor = hooks.attach()?;
    // The bench holds no BPF program but these: its own descriptors are exactly the floor's.
    let costs = overhead::measure_programs(bench, std::process::id());
    drop(floor);
    costs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_has_a_distinct_kernel_sized_name() {
        for hook in HOOKS {
            assert!(hook.program.len() <= 15, "{} is too long", hook.program);
        }
        let mut names: Vec<&str> = HOOKS.iter().map(|h| h.program).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HOOKS.len());
    }

    #[test]
    fn agent_programs_map_to_the_floor_on_their_hook() {
        assert_eq!(floor_of("process_exit_live"), Some("floor_exit"));
        assert_eq!(floor_of("signal_generate"), Some("floor_signal"));
        assert_eq!(floor_of("mark_victim_pid"), Some("floor_victim"));
        assert_eq!(floor_of("execveat_exit"), Some("floor_exit_at"));
        assert_eq!(floor_of("bench_floor"), None);
    }
}
