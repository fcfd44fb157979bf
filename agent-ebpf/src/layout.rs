//! `KernelLayout`: the offsets and flags user space reads from the running kernel's BTF and
//! hands to the programs as the global `LAYOUT`, so that no kernel struct offset is compiled in.

/// Where the programs find what they read, resolved by user space from the running kernel's
/// BTF (and tracefs formats) at load time: no kernel struct offset is ever compiled in.
/// Offsets are bytes from the start of the named struct; chains are spelled out by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_exit_code: u32,
    pub task_real_parent: u32,
    pub task_signal: u32,
    pub task_cgroups: u32,
    pub task_start_boottime: u32,
    pub task_mm: u32,
    pub task_sighand: u32,
    pub signal_maxrss: u32,
    /// `signal_struct.live` (an `atomic_t`): 0 once the last thread is exiting.
    pub signal_live: u32,
    pub signal_oom_score_adj: u32,
    /// `css_set.subsys[memory_cgrp_id]`, the index already applied.
    pub css_set_memory_css: u32,
    pub css_cgroup: u32,
    pub css_parent: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// `mem_cgroup.memory.usage`: the page counter, from the css (its first member).
    pub memcg_usage: u32,
    pub memcg_max: u32,
    /// `mm_struct` RSS counter `i` is at `mm_rss_base + i * mm_rss_stride` (6.2+: an array of
    /// `percpu_counter`, read at `.count`; before: `mm_rss_stat.count[]`).
    pub mm_rss_base: u32,
    pub mm_rss_stride: u32,
    pub mm_file_pages_index: u32,
    pub mm_anon_pages_index: u32,
    pub mm_shmem_pages_index: u32,
    /// `sighand_struct.action[0].sa.sa_handler`; entry `sig - 1` is `sighand_k_sigaction_size` on.
    pub sighand_handler: u32,
    pub sighand_k_sigaction_size: u32,
    /// tracefs field offsets of `syscalls/sys_enter_execve{,at}` `filename` and `sys_exit_*` `ret`.
    pub execve_enter_filename: u32,
    pub execveat_enter_filename: u32,
    pub exec_exit_ret: u32,
    /// Bit `sig - 1` set: `sig` kills by default and is worth telling user space about.
    pub fatal_signals: u64,
    /// `layout_flags::*`
    pub flags: u32,
    /// `kernel_siginfo.si_code` (inside an anonymous struct, hence resolved, not assumed).
    pub siginfo_code: u32,
    /// `task_struct.group_leader`: a process's start time is its leader's, whichever of its
    /// threads an event is about.
    pub task_group_leader: u32,
    /// `cgroup.root` and `cgroup_root.subsys_mask` (a u16): a new cgroup is in the memory
    /// hierarchy when bit `memory_cgrp_id` of its root's mask is set.
    pub cgroup_root: u32,
    pub cgroup_root_subsys_mask: u32,
    pub memory_cgrp_id: u32,
    /// `signal_struct.group_exit_code`: a group exit's status (`exit_group`, a fatal signal,
    /// a core dump's `0x80`), which is what `wait()` reports for the process.
    pub signal_group_exit_code: u32,
    /// `signal_struct.flags` (`SIGNAL_*`, whose values are not in BTF: see
    /// `signal_exiting_mask`).
    pub signal_flags: u32,
    /// The `signal_struct.flags` bits that mean "the group is exiting, every new signal is
    /// dropped" on this kernel (decided by user space, `probes::layout`).
    pub signal_exiting_mask: u32,
    /// `signal_struct.core_state` (5.16+; 0 where it is in `mm_struct`): non-null while the
    /// group dumps core, when the kernel drops every signal but SIGKILL.
    pub signal_core_state: u32,
    /// `mem_cgroup.memory_events_local[MEMCG_OOM]`, from the css (see `memcg_usage`).
    pub memcg_oom_events: u32,
    /// Explicit padding: the layout is an ABI, nothing is left to the compiler.
    pub pad: u32,
}

impl KernelLayout {
    /// All offsets zero and no features: what the object holds until the loader overrides it.
    pub const ZERO: Self = Self {
        task_pid: 0,
        task_tgid: 0,
        task_comm: 0,
        task_exit_code: 0,
        task_real_parent: 0,
        task_signal: 0,
        task_cgroups: 0,
        task_start_boottime: 0,
        task_mm: 0,
        task_sighand: 0,
        signal_maxrss: 0,
        signal_live: 0,
        signal_oom_score_adj: 0,
        css_set_memory_css: 0,
        css_cgroup: 0,
        css_parent: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
        memcg_usage: 0,
        memcg_max: 0,
        mm_rss_base: 0,
        mm_rss_stride: 0,
        mm_file_pages_index: 0,
        mm_anon_pages_index: 0,
        mm_shmem_pages_index: 0,
        sighand_handler: 0,
        sighand_k_sigaction_size: 0,
        execve_enter_filename: 0,
        execveat_enter_filename: 0,
        exec_exit_ret: 0,
        fatal_signals: 0,
        flags: 0,
        siginfo_code: 0,
        task_group_leader: 0,
        cgroup_root: 0,
        cgroup_root_subsys_mask: 0,
        memory_cgrp_id: 0,
        signal_group_exit_code: 0,
        signal_flags: 0,
        signal_exiting_mask: 0,
        signal_core_state: 0,
        memcg_oom_events: 0,
        pad: 0,
    };
}

/// `KernelLayout::flags`
pub mod layout_flags {
    /// The kernel has a memory controller (`memory_cgrp_id` exists).
    pub const MEMCG: u32 = 1;
    /// OOM victims' mm counters can be read (`mm_rss_*` are valid).
    pub const MM_RSS: u32 = 2;
    /// `task->signal->live` is readable: group-death is decided in the kernel.
    pub const SIGNAL_LIVE: u32 = 4;
    /// The exec-failure tracepoints' field offsets were found in tracefs.
    pub const EXEC_TRACEPOINTS: u32 = 8;
    /// `mark_victim` passes only a pid (before ≈6.8): `signal_generate` keeps the tasks the
    /// kernel SIGKILLs so that the victim is known whole.
    pub const MARK_VICTIM_PID: u32 = 16;
    /// `memcg_oom_events` is valid: the memcg whose limit an OOM kill hit is counted, not
    /// inferred.
    pub const MEMCG_OOM_EVENTS: u32 = 32;
}
