//! OOM kills: `mark_victim` in both its forms, the victims whose exit must go up whatever
//! it is, and the kernel's own SIGKILLs that name a victim on kernels that pass only its pid.

use agent_ebpf::{
    COMM_LEN, KERNEL_KILLS_ENTRIES, KernelLayout, OOM_MARKED_ENTRIES, OOM_STACK_DEPTH, OomEvent,
    counter, kind, layout_flags, oom_flags,
};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_stack},
    macros::{btf_tracepoint, map},
    maps::LruHashMap,
    programs::BtfTracePointContext,
};

use super::{EVENTS, LAYOUT, count, header, wakeup};
use crate::read::{self, Task, field};

/// tgids the OOM killer chose. A victim that was already exiting is marked without being
/// killed and may exit with a plain `exit()`; its exit must still reach user space.
#[map(name = "OOM_MARKED")]
static OOM_MARKED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(OOM_MARKED_ENTRIES, 0);

/// pid → `task_struct *` of each task the kernel itself sent SIGKILL (`SEND_SIG_PRIV`: the OOM
/// killer among others). The OOM killer sends that SIGKILL just before `mark_victim`, which
/// on kernels before ≈6.8 passes only the victim's pid: this is how those kernels' victims are
/// known whole (RSS, comm, memcg, start time). The pointer is only read with
/// `bpf_probe_read_kernel` and checked against the pid first; the OOM killer holds a
/// reference to the victim meanwhile.
#[map(name = "KERNEL_KILLS")]
static KERNEL_KILLS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(KERNEL_KILLS_ENTRIES, 0);

/// Whether the kernel marked `tgid` as an OOM victim (then its plain exit goes up), clearing
/// the mark. Looked up only for exits that would be filtered, off the path of deaths that go
/// up anyway; a killed victim's mark ages out of the LRU.
#[inline(always)]
pub(crate) fn take_oom_mark(tgid: u32) -> bool {
    // SAFETY: the value is only tested for presence.
    let marked = unsafe { OOM_MARKED.get(tgid).is_some() };
    if marked {
        let _ = OOM_MARKED.remove(tgid);
    }
    marked
}

/// Keeps the task the kernel itself sends SIGKILL, for `mark_victim(int pid)` right after.
#[inline(always)]
pub(crate) fn note_kernel_kill(layout: &KernelLayout, target: Task<true>) {
    if layout.flags & layout_flags::MARK_VICTIM_PID != 0
        && let Ok(pid) = target.read::<u32>(layout.task_pid)
    {
        let _ = KERNEL_KILLS.insert(pid, target.0 as u64, 0);
    }
}

/// `mark_victim(struct task_struct *, uid_t)`: kernels since ≈6.8, and backports (Debian 6.1).
#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim(ctx: BtfTracePointContext) -> i32 {
    // Rare: the helper reads of the untyped path are cost enough, and keep one code path.
    let victim = Task::<false>(ctx.arg::<*const u8>(0));
    try_mark_victim(&ctx, victim, 0);
    0
}

/// `mark_victim(int pid)`: older kernels. The victim is the task the OOM killer sent SIGKILL a
/// moment before (`KERNEL_KILLS`). A victim that was already exiting gets no SIGKILL: then
/// only the pid is known, and the memcg chain is sampled from the allocating task, whose
/// limit-hitting memcg is an ancestor of the victim's.
#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim_pid(ctx: BtfTracePointContext) -> i32 {
    let pid = ctx.arg::<u64>(0) as u32;
    try_mark_victim(&ctx, killed_task(pid), pid);
    0
}

/// The task the kernel sent SIGKILL as `pid`, if it still is that task; else null.
#[inline(always)]
fn killed_task(pid: u32) -> Task<false> {
    // SAFETY: a plain value copied out at once.
    let Some(task) = (unsafe { KERNEL_KILLS.get(pid) }).copied() else {
        return Task::<false>(core::ptr::null());
    };
    let _ = KERNEL_KILLS.remove(pid);
    let task = Task::<false>(task as *const u8);
    let layout = LAYOUT.load();
    if task.read::<u32>(layout.task_pid).ok() == Some(pid) {
        task
    } else {
        Task::<false>(core::ptr::null())
    }
}

fn try_mark_victim(ctx: &BtfTracePointContext, victim: Task<false>, victim_pid: u32) {
    let layout = LAYOUT.load();
    let victim_tgid = if victim.is_null() {
        victim_pid
    } else {
        victim.read(layout.task_tgid).unwrap_or(victim_pid)
    };
    let _ = OOM_MARKED.insert(victim_tgid, 1, 0);
    // SAFETY: always callable from tracing programs; the task it returns is only read.
    let trigger = Task::<false>(unsafe { bpf_get_current_task() } as *const u8);
    let Some(mut entry) = EVENTS.reserve::<OomEvent>(0) else {
        count(counter::LOST_OOM);
        return;
    };
    let trigger_ids = bpf_get_current_pid_tgid();
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer slot of the right size;
    // every field is written below before submit.
    unsafe {
        (*ev).header = header(kind::OOM);
        (*ev).trigger_pid = trigger_ids as u32;
        (*ev).trigger_tgid = (trigger_ids >> 32) as u32;
        (*ev).trigger_comm = trigger.read(layout.task_comm).unwrap_or([0; COMM_LEN]);
        (*ev).flags = 0;
        (*ev).anon_rss_pages = 0;
        (*ev).file_rss_pages = 0;
        (*ev).shmem_rss_pages = 0;
        (*ev).oom_score_adj = 0;
        (*ev).victim_start_boottime_ns = 0;
        (*ev).victim_comm = [0; COMM_LEN];
        (*ev).victim_pid = victim_pid;
        (*ev).victim_tgid = victim_pid;
        let chain_from = if victim.is_null() {
            (*ev).victim_memcg_id = 0;
            trigger
        } else {
            (*ev).victim_pid = victim.read(layout.task_pid).unwrap_or(0);
            (*ev).victim_tgid = victim.read(layout.task_tgid).unwrap_or(0);
            (*ev).victim_comm = victim.read(layout.task_comm).unwrap_or([0; COMM_LEN]);
            (*ev).victim_start_boottime_ns = victim.process_start(&layout);
            (*ev).victim_memcg_id = victim.memcg_id(&layout);
            if let Ok(signal) = victim.read::<*const u8>(layout.task_signal) {
                (*ev).oom_score_adj =
                    i32::from(field::<i16>(signal, layout.signal_oom_score_adj).unwrap_or(0));
            }
            if layout.flags & layout_flags::MM_RSS != 0
                && let Ok(mm) = victim.read::<*const u8>(layout.task_mm)
                && !mm.is_null()
            {
                let rss = |index: u32| -> u64 {
                    let at = layout.mm_rss_base + index * layout.mm_rss_stride;
                    field::<i64>(mm, at).unwrap_or(0).max(0) as u64
                };
                (*ev).anon_rss_pages = rss(layout.mm_anon_pages_index);
                (*ev).file_rss_pages = rss(layout.mm_file_pages_index);
                (*ev).shmem_rss_pages = rss(layout.mm_shmem_pages_index);
                (*ev).flags |= oom_flags::RSS_FROM_MM;
            }
            victim
        };
        (*ev).memcg_chain_len = read::memcg_chain(chain_from, &layout, &mut (*ev).memcg_chain);
        let stack_bytes = bpf_get_stack(
            ctx.as_ptr(),
            (*ev).stack.as_mut_ptr().cast(),
            (OOM_STACK_DEPTH * 8) as u32,
            0,
        );
        if stack_bytes > 0 {
            (*ev).stack_bytes = stack_bytes as u32;
            (*ev).flags |= oom_flags::STACK;
        } else {
            (*ev).stack_bytes = 0;
        }
    }
    entry.submit(wakeup());
    count(counter::EMITTED);
}
