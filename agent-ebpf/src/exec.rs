//! Failed execs: the filename is stashed per thread at syscall entry and reported with the
//! errno at exit; a later successful exec of the same process is reported too, so that PATH
//! misses before it explain nothing.

use agent_ebpf::{COMM_LEN, ExecFailureEvent, KernelLayout, counter, exec_flags, kind};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};

use super::{
    EVENTS, EXEC_FAILED, EXEC_STASH, EXECVEAT_THREADS, FIRST_EXEC_MEMCG, LAYOUT, count, header,
    is_host_memcg, wakeup,
};
use crate::read::{Task, field};

// (moved from main.rs) ------------------------------------------------------------------------

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn execve_enter(ctx: TracePointContext) -> u32 {
    stash_exec_path(&ctx, false);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn execveat_enter(ctx: TracePointContext) -> u32 {
    let _ = EXECVEAT_THREADS.insert(bpf_get_current_pid_tgid(), 1, 0);
    stash_exec_path(&ctx, true);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execve")]
pub fn execve_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exec_exit(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execveat")]
pub fn execveat_exit(ctx: TracePointContext) -> u32 {
    let _ = EXECVEAT_THREADS.remove(bpf_get_current_pid_tgid());
    let _ = try_exec_exit(&ctx);
    0
}

/// Keeps where this process's first exec began (`FIRST_EXEC_MEMCG`), unless it has one.
#[inline(always)]
fn note_first_exec(task: Task<false>, layout: &KernelLayout, memcg_id: u64) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let start = task.process_start(layout);
    // SAFETY: the value is copied out at once.
    let known = unsafe { FIRST_EXEC_MEMCG.get(tgid) }.copied();
    if known.is_none_or(|[known_start, _]| known_start != start) {
        let _ = FIRST_EXEC_MEMCG.insert(tgid, [start, memcg_id], 0);
    }
}

/// Loads the layout itself: a copy in the entry point as well would put two on the stack of one
/// call chain, past the 512 bytes 5.10 and 6.1 allow.
fn stash_exec_path(ctx: &TracePointContext, execveat: bool) {
    let layout = &LAYOUT.load();
    let filename_at = if execveat {
        layout.execveat_enter_filename
    } else {
        layout.execve_enter_filename
    };
    // SAFETY: always callable from tracing programs; the task it returns is only read.
    let task = Task::<false>(unsafe { bpf_get_current_task() } as *const u8);
    let memcg_id = task.memcg_id(layout);
    // Every process's, the host's too: the runtime starts its helpers from the host's cgroups.
    if memcg_id != 0 {
        note_first_exec(task, layout, memcg_id);
    }
    if is_host_memcg(memcg_id) {
        return;
    }
    // SAFETY: the offset comes from this tracepoint's tracefs format.
    let Ok(filename) = (unsafe { ctx.read_at::<u64>(filename_at as usize) }) else {
        return;
    };
    if EXEC_STASH
        .insert(bpf_get_current_pid_tgid(), filename, 0)
        .is_err()
    {
        count(counter::EXEC_STASH_FULL);
    }
}

fn try_exec_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let layout = LAYOUT.load();
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(filename) = (unsafe { EXEC_STASH.get(thread) }).copied() else {
        return Ok(());
    };
    let _ = EXEC_STASH.remove(thread);
    // SAFETY: the offset comes from this tracepoint's tracefs format.
    let ret: i64 = unsafe { ctx.read_at(layout.exec_exit_ret as usize) }.map_err(i64::from)?;
    let tgid = (thread >> 32) as u32;
    if ret >= 0 {
        // SAFETY: only tested for presence.
        if unsafe { EXEC_FAILED.get(tgid) }.is_none() {
            return Ok(());
        }
        let _ = EXEC_FAILED.remove(tgid);
    } else {
        let _ = EXEC_FAILED.insert(tgid, 1, 0);
    }
    // SAFETY: always callable from tracing programs; the task it returns is only read.
    let task = Task::<false>(unsafe { bpf_get_current_task() } as *const u8);
    let Some(mut entry) = EVENTS.reserve::<ExecFailureEvent>(0) else {
        count(counter::LOST_EXEC_FAILURE);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer slot; every field is
    // written before submit. The path is a user pointer of the failed exec's caller, still
    // mapped: a failed exec keeps the old mm.
    unsafe {
        (*ev).header = header(kind::EXEC_FAILURE);
        (*ev).pid = thread as u32;
        (*ev).tgid = (thread >> 32) as u32;
        (*ev).errno = if ret < 0 { (-ret) as i32 } else { 0 };
        (*ev).flags = if ret < 0 {
            0
        } else {
            exec_flags::LATER_SUCCESS
        };
        (*ev).parent_tgid = match task.read::<*const u8>(layout.task_real_parent) {
            Ok(parent) => field(parent, layout.task_tgid).unwrap_or(0),
            Err(_) => 0,
        };
        (*ev).memcg_id = task.memcg_id(&layout);
        (*ev).comm = task.read(layout.task_comm).unwrap_or([0; COMM_LEN]);
        (*ev).path = [0; agent_ebpf::PATH_LEN];
        // After a successful exec the old mm (and the filename in it) is gone.
        (*ev).path_len = if ret < 0 {
            match bpf_probe_read_user_str_bytes(filename as *const u8, &mut (*ev).path) {
                Ok(path) => path.len() as u32,
                Err(_) => 0,
            }
        } else {
            0
        };
    }
    entry.submit(wakeup());
    count(counter::EMITTED);
    Ok(())
}
