//! coroner's kernel programs. They read kernel structs only at offsets user space resolved from
//! the running kernel's BTF (`LAYOUT`), filter in the kernel so that only deaths worth a record
//! cross to user space, and count every event they could not hand over.
#![no_std]
#![no_main]
// Forced inlining is how these helpers must be: every call would otherwise be a BPF-to-BPF
// call, with its stack frame and the verifier's state for it.
#![expect(clippy::inline_always, reason = "BPF helpers are inlined on purpose")]
// aya's program macros hand each entry point its context by value.
#![expect(
    clippy::needless_pass_by_value,
    reason = "the #[btf_tracepoint] and #[tracepoint] entry points take their context by value"
)]

mod exec;
mod oom;
mod read;
mod signal;

mod role;

use agent_ebpf::{
    CGROUP_PATH_LEN, COMM_LEN, CgroupMkdirEvent, EVENTS_BYTES, EXEC_STASH_ENTRIES, EventHeader,
    ExitEvent, HOST_MEMCGS_ENTRIES, KernelLayout, counter, kind, layout_flags, role as roles,
};
use aya_ebpf::{
    Global,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    macros::{btf_tracepoint, map},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use read::Task;

#[unsafe(no_mangle)]
static LAYOUT: Global<KernelLayout> = Global::new(KernelLayout::ZERO);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Slot 0: 1 while the reader sleeps in `poll` with nothing to do. The first event after that
/// wakes it (and clears the slot); while it is awake it polls on a timer, and no event pays
/// for a wake-up.
#[map(name = "READER")]
static READER: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Memory cgroups user space found to be outside every container. Their exits, signals and
/// execs stop here; a cgroup's first event still goes up so that user space can classify it.
#[map(name = "HOST_MEMCGS")]
static HOST_MEMCGS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(HOST_MEMCGS_ENTRIES, 0);

/// `execve` filename pointers between syscall entry and exit, by thread. LRU: a successful
/// exec of a multi-threaded process changes the thread id and leaves its entry behind.
#[map(name = "EXEC_STASH")]
static EXEC_STASH: LruHashMap<u64, u64> = LruHashMap::with_max_entries(EXEC_STASH_ENTRIES, 0);

/// Where each process's first `execve` began: tgid → `[start_boottime_ns, memory cgroup id]`
/// at syscall entry. A process that first executed outside the container it later executes in
/// is the runtime's own helper re-executing itself (runc's `runc init` copies itself to a memfd
/// and executes that copy, by then often already moved into the container's cgroup by
/// `runc create`), never the container's program (`role.rs`). LRU: the start time tells a
/// reused pid from the process it had.
#[map(name = "FIRST_EXEC_MEMCG")]
static FIRST_EXEC_MEMCG: LruHashMap<u32, [u64; 2]> =
    LruHashMap::with_max_entries(EXEC_STASH_ENTRIES, 0);

/// Threads inside an `execveat` (entry to exit): how runtimes re-execute a copy of themselves
/// (`fexecve` of runc's memfd clone), unlike how they execute a container's command.
#[map(name = "EXECVEAT_THREADS")]
static EXECVEAT_THREADS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(EXEC_STASH_ENTRIES, 0);

/// tgids whose exec failed lately. A later successful exec of one is reported, so that the
/// PATH misses of `execvp` before it finds the program are not taken for the cause of a death.
#[map(name = "EXEC_FAILED")]
static EXEC_FAILED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(EXEC_STASH_ENTRIES, 0);

#[inline(always)]
fn count(slot: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn header(event_kind: u32) -> EventHeader {
    // SAFETY: both helpers are always callable from tracing programs.
    unsafe {
        EventHeader {
            kind: event_kind,
            cpu: bpf_get_smp_processor_id(),
            ktime_ns: bpf_ktime_get_boot_ns(),
        }
    }
}

/// `BPF_RB_NO_WAKEUP` / `BPF_RB_FORCE_WAKEUP`; `BPF_RB_AVAIL_DATA` / `BPF_RB_RING_SIZE`.
const RB_NO_WAKEUP: u64 = 1;
const RB_FORCE_WAKEUP: u64 = 2;
const RB_AVAIL_DATA: u64 = 0;
const RB_RING_SIZE: u64 = 1;

/// Submit flags. A wake-up costs the dying task ≈12 µs here (an `irq_work`, a self-IPI, a VM
/// exit; 0.4 µs without), so only two events pay for one: the first after the reader parked
/// (`READER`), and any while a quarter of the ring is waiting, so a burst cannot fill it
/// before the reader's next timed poll.
#[inline(always)]
fn wakeup() -> u64 {
    if let Some(parked) = READER.get_ptr_mut(0) {
        // SAFETY: a valid array slot; racing writers all store 0, and a stale read at worst
        // costs one extra wake-up or leaves it to the reader's bounded park timeout.
        unsafe {
            if core::ptr::read_volatile(parked) != 0 {
                core::ptr::write_volatile(parked, 0);
                return RB_FORCE_WAKEUP;
            }
        }
    }
    if EVENTS.query(RB_AVAIL_DATA) > EVENTS.query(RB_RING_SIZE) / 4 {
        RB_FORCE_WAKEUP
    } else {
        RB_NO_WAKEUP
    }
}

#[inline(always)]
fn is_host_memcg(memcg_id: u64) -> bool {
    // SAFETY: the value is only tested for presence.
    unsafe { HOST_MEMCGS.get(memcg_id).is_some() }
}

// ---- process exit ------------------------------------------------------------------------

#[btf_tracepoint(function = "sched_process_exit")]
pub fn process_exit(ctx: BtfTracePointContext) -> i32 {
    // `(struct task_struct *, bool group_dead)`: the kernel says which thread is the group's
    // last, exactly once per process.
    #[expect(
        clippy::verbose_bit_mask,
        reason = "a bool's byte, tested as the verifier reads it; not a bit count"
    )]
    if ctx.arg::<u64>(1) & 0xff == 0 {
        return 0;
    }
    let _ = try_process_exit(&ctx);
    0
}

/// Kernels whose tracepoint has no `group_dead`: the group is dead when `signal->live` is 0,
/// which two threads exiting at once can both see; user space drops the second exit.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn process_exit_live(ctx: BtfTracePointContext) -> i32 {
    let layout = LAYOUT.load();
    if layout.flags & layout_flags::SIGNAL_LIVE != 0 {
        let task = Task::<true>(ctx.arg::<*const u8>(0));
        let Ok(signal) = task.read::<*const u8>(layout.task_signal) else {
            return 0;
        };
        if read::btf_field::<i32>(signal, layout.signal_live).unwrap_or(1) != 0 {
            return 0;
        }
    }
    let _ = try_process_exit(&ctx);
    0
}

/// Not a counter slot: the exit's role always goes up.
const NOT_FILTERED: u32 = u32::MAX;

fn try_process_exit(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let layout = LAYOUT.load();
    let task = Task::<true>(ctx.arg::<*const u8>(0));
    let css = task.memory_css(&layout);
    let memcg_id = if layout.flags & layout_flags::MEMCG == 0 {
        0
    } else {
        read::css_id::<true>(css, &layout)
    };
    if is_host_memcg(memcg_id) {
        count(counter::EXIT_FILTERED);
        count(counter::EXIT_HOST);
        return Ok(());
    }
    let signal: *const u8 = task.read(layout.task_signal)?;
    let leader = Task::<true>(
        task.read::<*const u8>(layout.task_group_leader)
            .unwrap_or(task.0),
    );
    // What wait() reports: a group exit's code (exit_group, a fatal signal, with 0x80 when
    // another thread dumped core), else the leader's own exit code.
    let group_exit_code: u32 = read::btf_field(signal, layout.signal_group_exit_code).unwrap_or(0);
    let exit_code: u32 = if group_exit_code != 0 {
        group_exit_code
    } else {
        leader.read(layout.task_exit_code)?
    };
    let tgid: u32 = task.read(layout.task_tgid)?;
    let start_boottime_ns = task.process_start(&layout);
    let parent = Task::<true>(task.read(layout.task_real_parent)?);
    // Same css, same memory cgroup: two reads instead of the five an id takes, on the path
    // every child's exit in a container goes.
    let parent_css = parent.memory_css(&layout);
    let parent_outside = parent_css != css;
    let signaled = exit_code & 0x7f != 0;
    let (role, flags) = role::of_exit(memcg_id, tgid, start_boottime_ns, parent_outside, exit_code);
    // What needs no record stops here: a child's or an exec session's plain exit(), a
    // runtime helper that did its job. Deaths by signal always go up, and so does an OOM
    // victim the kernel marked while it was already exiting.
    if !signaled {
        // The role's own counter, `NOT_FILTERED` for roles that always go up. Plain integers,
        // not nested options: 6.1's verifier rejects the partly written stack slot rustc made
        // of an `Option<Option<u32>>` here.
        let slot = match role {
            roles::CHILD => counter::EXIT_FILTERED,
            roles::EXEC => counter::EXIT_EXEC,
            roles::RUNTIME => counter::EXIT_RUNTIME,
            _ => NOT_FILTERED,
        };
        if slot != NOT_FILTERED && !oom::take_oom_mark(tgid) {
            count(counter::EXIT_FILTERED);
            if slot != counter::EXIT_FILTERED {
                count(slot);
            }
            return Ok(());
        }
    }
    let parent_memcg_id = if parent_outside {
        read::css_id::<true>(parent_css, &layout)
    } else {
        memcg_id
    };
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count(counter::LOST_EXIT);
        return Ok(());
    };
    let event = ExitEvent {
        header: header(kind::EXIT),
        pid: task.read(layout.task_pid).unwrap_or(0),
        tgid,
        parent_tgid: parent.read(layout.task_tgid).unwrap_or(0),
        exit_code,
        memcg_id,
        parent_memcg_id,
        start_boottime_ns,
        maxrss_pages: read::btf_field(signal, layout.signal_maxrss).unwrap_or(0),
        flags,
        role,
        comm: leader
            .read::<[u8; COMM_LEN]>(layout.task_comm)
            .unwrap_or([0; COMM_LEN]),
    };
    entry.write(event);
    entry.submit(wakeup());
    count(counter::EMITTED);
    Ok(())
}

// ---- new memory cgroups ------------------------------------------------------------------

/// `cgroup_mkdir(struct cgroup *, const char *path)`: the id and path of every new memory
/// cgroup, so a container's cgroup resolves even when the runtime removes it milliseconds
/// after its main process died — before user space could have walked to it.
#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    let _ = try_cgroup_mkdir(&ctx);
    0
}

fn try_cgroup_mkdir(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let layout = LAYOUT.load();
    if layout.flags & layout_flags::MEMCG == 0 {
        return Ok(());
    }
    let cgroup = ctx.arg::<*const u8>(0);
    let root: *const u8 = read::btf_field(cgroup, layout.cgroup_root)?;
    let mask: u16 = read::btf_field(root, layout.cgroup_root_subsys_mask)?;
    // Other v1 hierarchies (cpu, pids, …) have directories and ids of their own.
    if u32::from(mask) & (1u32 << (layout.memory_cgrp_id & 15)) == 0 {
        return Ok(());
    }
    let kn: *const u8 = read::btf_field(cgroup, layout.cgroup_kn)?;
    let memcg_id: u64 = read::btf_field(kn, layout.kernfs_node_id)?;
    let path = ctx.arg::<*const u8>(1);
    let Some(mut entry) = EVENTS.reserve::<CgroupMkdirEvent>(0) else {
        count(counter::LOST_CGROUP_MKDIR);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer slot; every field is
    // written before submit; `path` is the kernel string the tracepoint hands over.
    unsafe {
        (*ev).header = header(kind::CGROUP_MKDIR);
        (*ev).memcg_id = memcg_id;
        (*ev).pad = 0;
        (*ev).path = [0; CGROUP_PATH_LEN];
        (*ev).path_len =
            match aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(path, &mut (*ev).path) {
                Ok(p) => p.len() as u32,
                Err(_) => 0,
            };
    }
    entry.submit(wakeup());
    count(counter::EMITTED);
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
