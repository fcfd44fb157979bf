//! The kernel/user ABI of coroner: every type that crosses the ring buffer or is handed to the
//! programs as a global is defined here, once, `#[repr(C)]`, and size-checked at compile time.
//! The programs (`src/main.rs`, BPF target only) and the agent (host) both use this library.
#![no_std]

/// `TASK_COMM_LEN` in the kernel: fixed by the user ABI (`prctl(PR_SET_NAME)`), not by layout.
pub const COMM_LEN: usize = 16;
/// Bytes of a failed exec's path that are kept (longer paths are cut and flagged).
pub const PATH_LEN: usize = 256;
/// How many memory cgroups, from the victim's up towards the root, an OOM event samples.
pub const MEMCG_CHAIN_LEN: usize = 8;
/// Bytes of a new cgroup's path that are kept (kubelet paths are well under 300).
pub const CGROUP_PATH_LEN: usize = 512;
/// Kernel stack frames kept of an OOM kill (to tell a memcg OOM from a global one).
pub const OOM_STACK_DEPTH: usize = 32;

/// What an event is; the first field of every event.
pub mod kind {
    pub const EXIT: u32 = 1;
    pub const SIGNAL: u32 = 2;
    pub const OOM: u32 = 3;
    pub const EXEC_FAILURE: u32 = 4;
    pub const CGROUP_MKDIR: u32 = 5;
}

/// Slots of the per-CPU counter array `COUNTERS`. Losses are counted where they happen (the
/// kernel) so that user space can surface every one; the rest say what the filters saved.
pub mod counter {
    /// Ring buffer full: an exit event was dropped.
    pub const LOST_EXIT: u32 = 0;
    pub const LOST_SIGNAL: u32 = 1;
    pub const LOST_OOM: u32 = 2;
    pub const LOST_EXEC_FAILURE: u32 = 3;
    /// A process exit that needed no record (outside containers, or a child's plain `exit()`).
    pub const EXIT_FILTERED: u32 = 4;
    /// A signal that cannot kill its target (SIGCHLD and friends, or one with a handler).
    pub const SIGNAL_FILTERED: u32 = 5;
    /// A failed exec whose path could not be kept because the per-thread stash was full.
    pub const EXEC_STASH_FULL: u32 = 6;
    /// Events that reached the ring buffer, all kinds.
    pub const EMITTED: u32 = 7;
    /// A process exit in a memory cgroup known to be outside every container (also in
    /// `EXIT_FILTERED`): the deaths outside containers the kernel kept to itself.
    pub const EXIT_HOST: u32 = 8;
    /// Ring buffer full: a new memory cgroup's path was dropped.
    pub const LOST_CGROUP_MKDIR: u32 = 9;
    /// A runtime helper (runc's bootstrap stages) exited cleanly: no record (also in
    /// `EXIT_FILTERED`).
    pub const EXIT_RUNTIME: u32 = 10;
    /// An exec session (exec probe, `kubectl exec`) exited by itself: counted, no record
    /// (also in `EXIT_FILTERED`).
    pub const EXIT_EXEC: u32 = 11;
    pub const COUNT: u32 = 12;
}

/// `OomEvent::flags`
pub mod oom_flags {
    /// The victim's mm was readable: the rss fields hold the counters at the kill.
    pub const RSS_FROM_MM: u32 = 1;
    /// `stack` holds `stack_bytes / 8` kernel return addresses of the killing path.
    pub const STACK: u32 = 2;
}

/// `ExecFailureEvent::flags`
pub mod exec_flags {
    /// Not a failure: a process that had a failed exec has now exec'd successfully (execvp
    /// trying each PATH directory), so its earlier failures explain nothing. `errno` is 0.
    pub const LATER_SUCCESS: u32 = 1;
}

/// `ExitEvent::flags`
pub mod exit_flags {
    /// The parent is in another memory cgroup: the process entered the container from outside
    /// (the runtime started it), whatever its role.
    pub const PARENT_OUTSIDE: u32 = 1;
    /// Its role is `role::INIT` but it never executed the container's command: the runtime
    /// failed to start the container (missing or non-executable entrypoint, …).
    pub const NO_EXEC: u32 = 2;
}

/// `ExitEvent::role`: what the process was to its container, decided in the kernel where the
/// kernel knows (see `process_exec` and `process_exit` in the programs).
pub mod role {
    /// Not known (outside a container, or the memcg could not be read).
    pub const UNKNOWN: u32 = 0;
    /// The container's first process: the first one started from outside the container's
    /// memory cgroup that executed a program in it. What the kubelet restarts.
    pub const INIT: u32 = 1;
    /// Started from outside after the init (exec probes, `kubectl exec`), and executed a
    /// program in the container.
    pub const EXEC: u32 = 2;
    /// Forked inside the container (its parent is in the same memory cgroup).
    pub const CHILD: u32 = 3;
    /// Started from outside but never executed a program in the container: the runtime's
    /// helpers (runc's `runc:[0:PARENT]`, `runc:[1:CHILD]`).
    pub const RUNTIME: u32 = 4;
}

/// `SignalEvent::flags`
pub mod signal_flags {
    /// Generated without a siginfo (`SEND_SIG_NOINFO`): the kernel raised it on behalf of the
    /// task that is `current` (SIGPIPE on a write to a closed pipe, SIGXFSZ), not `kill()`.
    pub const NO_SIGINFO: u32 = 1;
    /// Dropped (`TRACE_SIGNAL_IGNORED`) because the target's thread group was already exiting
    /// (`SIGNAL_GROUP_EXIT`, or a core dump on kernels before 5.17): `prepare_signal` drops
    /// everything sent to a dying process, which says nothing about how it treats the signal.
    pub const TARGET_EXITING: u32 = 2;
    /// The target's handler for the signal was `SIG_IGN` when it was generated.
    pub const HANDLER_IGNORED: u32 = 4;
}

/// The value of `INITS`: which process is a container's init.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InitProcess {
    pub tgid: u32,
    /// `exit_flags::NO_EXEC` when it died before executing anything (a failed start).
    pub flags: u32,
    pub start_boottime_ns: u64,
}

/// Leads every event; `ktime_ns` is `CLOCK_BOOTTIME`, which keeps counting across suspend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    pub cpu: u32,
    pub ktime_ns: u64,
}

/// A thread group's last thread has exited (`sched_process_exit` with the group dead).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
    pub pid: u32,
    pub tgid: u32,
    pub parent_tgid: u32,
    /// `task->exit_code` as the kernel keeps it: `code << 8`, or the signal, `| 0x80` on a core.
    pub exit_code: u32,
    pub memcg_id: u64,
    pub parent_memcg_id: u64,
    /// `task->start_boottime`: with the pid, names one process even when pids are reused.
    pub start_boottime_ns: u64,
    /// `signal->maxrss`, in pages: the group's peak RSS, final at this point.
    pub maxrss_pages: u64,
    pub flags: u32,
    /// `role::*`
    pub role: u32,
    /// The group leader's comm (the name `ps` shows for the process).
    pub comm: [u8; COMM_LEN],
}

/// A signal that can kill its target was generated (`signal_generate`). `current` is the sender.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalEvent {
    pub header: EventHeader,
    pub sig: u32,
    /// `si_code`: `SI_USER`(0), `SI_KERNEL`(0x80), `SI_TKILL`(-6), fault codes > 0, …
    pub code: i32,
    /// `TRACE_SIGNAL_*`: 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 lose info.
    pub result: u32,
    /// Non-zero when sent to the whole thread group.
    pub group: u32,
    /// `signal_flags::*`
    pub flags: u32,
    /// Explicit padding: the layout is an ABI, nothing is left to the compiler.
    pub pad: u32,
    pub sender_pid: u32,
    pub sender_tgid: u32,
    pub target_pid: u32,
    pub target_tgid: u32,
    pub sender_memcg_id: u64,
    pub target_memcg_id: u64,
    pub target_start_boottime_ns: u64,
    pub sender_comm: [u8; COMM_LEN],
    pub target_comm: [u8; COMM_LEN],
}

/// One memory cgroup on the way from an OOM victim's up to the root, sampled at the kill.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgSample {
    pub id: u64,
    pub usage_pages: u64,
    /// `PAGE_COUNTER_MAX` (or more) means no limit.
    pub max_pages: u64,
    /// `memory_events_local[MEMCG_OOM]`: how many times this memcg itself hit its limit with
    /// nothing left to reclaim (raised before the OOM killer runs, on cgroup v1 and v2);
    /// [`MemcgSample::OOM_EVENTS_UNKNOWN`] where the kernel has no such counter.
    pub oom_events: u64,
}

impl MemcgSample {
    pub const OOM_EVENTS_UNKNOWN: u64 = u64::MAX;
}

/// The OOM killer chose a victim (`mark_victim`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomEvent {
    pub header: EventHeader,
    pub victim_pid: u32,
    pub victim_tgid: u32,
    /// The task whose allocation failed (`current`), often the victim itself.
    pub trigger_pid: u32,
    pub trigger_tgid: u32,
    pub victim_memcg_id: u64,
    pub victim_start_boottime_ns: u64,
    pub anon_rss_pages: u64,
    pub file_rss_pages: u64,
    pub shmem_rss_pages: u64,
    pub oom_score_adj: i32,
    pub flags: u32,
    pub memcg_chain_len: u32,
    pub stack_bytes: u32,
    pub victim_comm: [u8; COMM_LEN],
    pub trigger_comm: [u8; COMM_LEN],
    pub memcg_chain: [MemcgSample; MEMCG_CHAIN_LEN],
    pub stack: [u64; OOM_STACK_DEPTH],
}

/// An `execve`/`execveat` returned an error.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecFailureEvent {
    pub header: EventHeader,
    pub pid: u32,
    pub tgid: u32,
    /// Positive errno (`ENOENT` = 2).
    pub errno: i32,
    /// Bytes of `path` that hold the path (without the NUL); `PATH_LEN` or more: cut.
    pub path_len: u32,
    /// The failing process's parent: a death's exec failure is its own or a child's.
    pub parent_tgid: u32,
    /// `exec_flags::*`
    pub flags: u32,
    pub memcg_id: u64,
    pub comm: [u8; COMM_LEN],
    pub path: [u8; PATH_LEN],
}

/// A memory cgroup was created (`cgroup_mkdir` in the memory hierarchy): its id and path, so
/// user space knows a container's cgroup even if the runtime removes it right after a death.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupMkdirEvent {
    pub header: EventHeader,
    pub memcg_id: u64,
    /// Bytes of `path` that hold the path; `CGROUP_PATH_LEN` or more: cut.
    pub path_len: u32,
    pub pad: u32,
    /// Relative to the hierarchy's root, starting with `/`.
    pub path: [u8; CGROUP_PATH_LEN],
}

mod layout;
pub use layout::{KernelLayout, layout_flags};

/// Names the programs, maps and globals have in the object, shared so neither side can drift.
pub mod names {
    pub const LAYOUT: &str = "LAYOUT";
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    /// Slot 0: 1 while the reader is parked; the first event after wakes it.
    pub const READER: &str = "READER";
    /// memcg ids user space found to be outside any container: the programs drop their events.
    pub const HOST_MEMCGS: &str = "HOST_MEMCGS";
    pub const EXEC_STASH: &str = "EXEC_STASH";
    pub const PROCESS_EXIT: &str = "process_exit";
    /// `sched_process_exit` where the tracepoint has no `group_dead` (before ≈6.16).
    pub const PROCESS_EXIT_LIVE: &str = "process_exit_live";
    pub const PROCESS_EXEC: &str = "process_exec";
    /// memcg id → `InitProcess`: each container's init.
    pub const INITS: &str = "INITS";
    /// tgid → start time of processes started from outside a container that executed a
    /// program in it after its init: exec sessions.
    pub const EXEC_SESSIONS: &str = "EXEC_SESSIONS";
    /// tgids the OOM killer chose: their exit is never filtered, however they exit.
    pub const OOM_MARKED: &str = "OOM_MARKED";
    /// pid → task of the kernel's own SIGKILLs (`SEND_SIG_PRIV`), for `mark_victim(int pid)`.
    pub const KERNEL_KILLS: &str = "KERNEL_KILLS";
    pub const SIGNAL_GENERATE: &str = "signal_generate";
    pub const MARK_VICTIM: &str = "mark_victim";
    pub const EXECVE_ENTER: &str = "execve_enter";
    pub const EXECVEAT_ENTER: &str = "execveat_enter";
    pub const EXECVE_EXIT: &str = "execve_exit";
    pub const EXECVEAT_EXIT: &str = "execveat_exit";
    pub const CGROUP_MKDIR: &str = "cgroup_mkdir";
    /// tgids whose exec failed lately: a later successful exec of one is reported.
    pub const EXEC_FAILED: &str = "EXEC_FAILED";
}

/// Ring buffer size: 4 MiB holds ~40k exit events, several seconds of a fork storm.
pub const EVENTS_BYTES: u32 = 4 << 20;
pub const HOST_MEMCGS_ENTRIES: u32 = 16_384;
pub const EXEC_STASH_ENTRIES: u32 = 8_192;
/// Containers (memcgs) whose init is remembered: far more than a node runs at once.
pub const INITS_ENTRIES: u32 = 16_384;
pub const EXEC_SESSIONS_ENTRIES: u32 = 8_192;
pub const OOM_MARKED_ENTRIES: u32 = 1_024;
/// The kernel's own SIGKILLs waiting for their `mark_victim`, which follows at once.
pub const KERNEL_KILLS_ENTRIES: u32 = 256;

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 16);
    assert!(core::mem::size_of::<ExitEvent>() == 88);
    assert!(core::mem::size_of::<SignalEvent>() == 112);
    assert!(core::mem::size_of::<InitProcess>() == 16);
    assert!(core::mem::size_of::<MemcgSample>() == 32);
    assert!(core::mem::size_of::<OomEvent>() == 120 + 32 * MEMCG_CHAIN_LEN + 8 * OOM_STACK_DEPTH);
    assert!(core::mem::size_of::<ExecFailureEvent>() == 64 + PATH_LEN);
    assert!(core::mem::size_of::<KernelLayout>() == 4 * 30 + 8 + 24 + 24);
    assert!(core::mem::size_of::<CgroupMkdirEvent>() == 32 + CGROUP_PATH_LEN);
    // RingBuf::output and reserve want events aligned to at most 8 bytes.
    assert!(core::mem::align_of::<OomEvent>() <= 8);
    assert!(core::mem::align_of::<ExecFailureEvent>() <= 8);
};

/// The kernel's view of a decoded event, for user space.
#[derive(Clone, Copy, Debug)]
pub enum KernelEvent {
    Exit(ExitEvent),
    Signal(SignalEvent),
    Oom(OomEvent),
    ExecFailure(ExecFailureEvent),
    CgroupMkdir(CgroupMkdirEvent),
}

/// Why a ring-buffer record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    TooShort { kind: u32, len: usize },
    UnknownKind(u32),
}

impl KernelEvent {
    /// Decodes one ring-buffer record. Never trusts the length: a short or unknown record is an
    /// error, not undefined behaviour.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        fn read<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
            if bytes.len() < core::mem::size_of::<T>() {
                return Err(DecodeError::TooShort {
                    kind,
                    len: bytes.len(),
                });
            }
            // SAFETY: the length is checked above, every ABI type is plain old data made only
            // of integers and byte arrays (any bit pattern is valid), and read_unaligned makes
            // no alignment demand on the buffer.
            Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
        }
        let Some(head) = bytes.get(..4) else {
            return Err(DecodeError::TooShort {
                kind: 0,
                len: bytes.len(),
            });
        };
        let k = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        match k {
            kind::EXIT => read(bytes, k).map(Self::Exit),
            kind::SIGNAL => read(bytes, k).map(Self::Signal),
            kind::OOM => read(bytes, k).map(Self::Oom),
            kind::EXEC_FAILURE => read(bytes, k).map(Self::ExecFailure),
            kind::CGROUP_MKDIR => read(bytes, k).map(Self::CgroupMkdir),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

/// The part of a fixed-size, NUL-padded kernel string that holds text.
#[must_use]
pub fn c_str_bytes(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}
