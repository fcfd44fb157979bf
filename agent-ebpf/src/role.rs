//! The role of a process in its container, decided where the kernel knows it.
//!
//! A runtime starts every process that enters a container from outside the container's memory
//! cgroup: the init, exec sessions, and its own helpers (runc's `runc:[0:PARENT]` and
//! `runc:[1:CHILD]`, which run in the cgroup and exit, and `runc:[2:INIT]`, which becomes the
//! init or the exec session by executing the command). So, for a process whose parent is
//! outside its memory cgroup:
//! - the first one to execute a program in the memcg is the container's **init** (`INITS`) —
//!   an `execveat` by a process whose first exec began in another memcg does not count: it is
//!   the runtime's helper re-executing a copy of itself after the runtime moved it in (runc's
//!   `runc init`);
//! - a later one that executes a program is an **exec** session (`EXEC_SESSIONS`);
//! - one that never executes a program is the **runtime**'s — unless the memcg has no init
//!   yet and it dies of something (non-zero, a signal): that is the init failing to start
//!   (missing or non-executable entrypoint), marked `NO_EXEC`, and later ones are runtime.
//!
//! A process whose parent is in the same memcg is a **child**. With a shared PID namespace
//! the rules are the same: the memcg, not the PID namespace, is the container.

use agent_ebpf::{INITS_ENTRIES, InitProcess, exit_flags, layout_flags, role as roles};
use aya_ebpf::{
    macros::{btf_tracepoint, map},
    maps::LruHashMap,
    programs::BtfTracePointContext,
};

use super::{EXECVEAT_THREADS, FIRST_EXEC_MEMCG, LAYOUT, is_host_memcg};
use crate::read::{self, Task};

/// `BPF_NOEXIST`: two execs racing for a memcg's first cannot both become its init.
const BPF_NOEXIST: u64 = 1;

#[map(name = "INITS")]
static INITS: LruHashMap<u64, InitProcess> = LruHashMap::with_max_entries(INITS_ENTRIES, 0);

#[map(name = "EXEC_SESSIONS")]
static EXEC_SESSIONS: LruHashMap<u32, u64> =
    LruHashMap::with_max_entries(agent_ebpf::EXEC_SESSIONS_ENTRIES, 0);

/// `sched_process_exec(struct task_struct *, pid_t old_pid, struct linux_binprm *)`: a
/// successful exec, in the context of the process itself. No syscall tracepoint: nothing
/// else on the node pays for it.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn process_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = try_process_exec(&ctx);
    0
}

fn try_process_exec(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let layout = LAYOUT.load();
    if layout.flags & layout_flags::MEMCG == 0 {
        return Ok(());
    }
    let task = Task::<true>(ctx.arg::<*const u8>(0));
    let css = task.memory_css(&layout);
    let parent = Task::<true>(task.read(layout.task_real_parent)?);
    // A process forked inside its container: its role is child whatever it executes.
    if parent.memory_css(&layout) == css {
        return Ok(());
    }
    let memcg_id = read::css_id::<true>(css, &layout);
    if memcg_id == 0 || is_host_memcg(memcg_id) {
        return Ok(());
    }
    let tgid: u32 = task.read(layout.task_tgid)?;
    let start_boottime_ns = task.process_start(&layout);
    if runtime_re_exec(ctx, tgid, start_boottime_ns, memcg_id) {
        return Ok(());
    }
    // SAFETY: the value is copied out at once.
    match unsafe { INITS.get(memcg_id) }.copied() {
        None => {
            let init = InitProcess {
                tgid,
                flags: 0,
                start_boottime_ns,
            };
            let _ = INITS.insert(memcg_id, init, BPF_NOEXIST);
        }
        // The init executing again (a shell script's `exec`).
        Some(init)
            if init.tgid == tgid && same_start(init.start_boottime_ns, start_boottime_ns) => {}
        Some(_) => {
            let _ = EXEC_SESSIONS.insert(tgid, start_boottime_ns, 0);
        }
    }
    Ok(())
}

/// A runtime helper re-executing a copy of itself: an `execveat` (how `fexecve` of runc's
/// memfd clone of itself reaches the kernel) by a process whose first exec began in another
/// memory cgroup (`FIRST_EXEC_MEMCG`, noted at syscall entry). runc's `runc init` is executed by
/// `runc create` from the host's cgroup, moved into the container's, and executes its copy —
/// in the container's cgroup when the move came first. A process that first executes outside
/// and then its command by path (a shell that moves itself in and `exec`s, `cgexec`) is still
/// the init. Without the syscall tracepoints (no tracefs) nothing is noted and every exec
/// counts.
#[inline(always)]
fn runtime_re_exec(
    ctx: &BtfTracePointContext,
    tgid: u32,
    start_boottime_ns: u64,
    memcg_id: u64,
) -> bool {
    // `old_pid`: the thread that called execveat (a multi-threaded caller's tid becomes the tgid).
    let old_pid = ctx.arg::<u64>(1) as u32;
    let thread = (u64::from(tgid) << 32) | u64::from(old_pid);
    // SAFETY: only tested for presence.
    if unsafe { EXECVEAT_THREADS.get(thread) }.is_none() {
        return false;
    }
    // SAFETY: the value is copied out at once.
    unsafe { FIRST_EXEC_MEMCG.get(tgid) }
        .copied()
        .is_some_and(|[start, first_memcg]| start == start_boottime_ns && first_memcg != memcg_id)
}

/// Start times user space seeded for processes that were running before the agent are 0:
/// `/proc` does not give them to the nanosecond, and the pid cannot be reused while the
/// container it belongs to lives.
#[inline(always)]
fn same_start(known: u64, start_boottime_ns: u64) -> bool {
    known == 0 || known == start_boottime_ns
}

/// `(role, exit_flags)` of a process that is exiting.
#[inline(always)]
pub fn of_exit(
    memcg_id: u64,
    tgid: u32,
    start_boottime_ns: u64,
    parent_outside: bool,
    exit_code: u32,
) -> (u32, u32) {
    if memcg_id == 0 {
        return (roles::UNKNOWN, 0);
    }
    if !parent_outside {
        return (roles::CHILD, 0);
    }
    let outside = exit_flags::PARENT_OUTSIDE;
    // SAFETY: the value is copied out at once.
    match unsafe { INITS.get(memcg_id) }.copied() {
        Some(init)
            if init.tgid == tgid && same_start(init.start_boottime_ns, start_boottime_ns) =>
        {
            (roles::INIT, outside | init.flags)
        }
        Some(_) => {
            // SAFETY: the value is copied out at once.
            let session = unsafe { EXEC_SESSIONS.get(tgid) }.copied();
            if session.is_some_and(|start| same_start(start, start_boottime_ns)) {
                let _ = EXEC_SESSIONS.remove(tgid);
                (roles::EXEC, outside)
            } else if exit_code & 0x7f != 0 {
                // Started from outside, never executed, killed: an orphan the runtime's
                // subreaper adopted when its PID namespace's init died, not a helper.
                (roles::CHILD, outside)
            } else {
                (roles::RUNTIME, outside)
            }
        }
        None if exit_code == 0 => (roles::RUNTIME, outside),
        None => {
            let init = InitProcess {
                tgid,
                flags: exit_flags::NO_EXEC,
                start_boottime_ns,
            };
            let _ = INITS.insert(memcg_id, init, BPF_NOEXIST);
            (roles::INIT, outside | exit_flags::NO_EXEC)
        }
    }
}
