//! Reading kernel memory at offsets resolved from BTF by user space.

use agent_ebpf::{KernelLayout, MEMCG_CHAIN_LEN, MemcgSample};
use aya_ebpf::helpers::bpf_probe_read_kernel;

/// Reads a `T` at `base + offset`. A null base is an error, not a fault.
#[inline(always)]
pub fn field<T>(base: *const u8, offset: u32) -> Result<T, i64> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: bpf_probe_read_kernel validates the address; a bad one returns an error.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) }
        .map_err(i64::from)
}

/// Reads a `T` at `base + offset` where `base` is a BTF-typed kernel pointer (a `tp_btf`
/// argument, or a pointer loaded through one): a plain load, which the verifier checks against
/// the kernel's BTF (the offset is a constant from frozen `.rodata`) and turns into a
/// fault-safe `BPF_PROBE_MEM` load — no helper call, a few ns instead of ≈100 here. A faulting
/// address reads as zero.
#[inline(always)]
pub fn btf_field<T>(base: *const u8, offset: u32) -> Result<T, i64> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: see above: the verifier only accepts this on a BTF-typed base, at an offset that
    // is a member of its type, and makes the load fault-safe.
    Ok(unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize).cast::<T>()) })
}

/// A field read from a base whose kind (`BTF`) is known at compile time.
#[inline(always)]
fn read_as<const BTF: bool, T>(base: *const u8, offset: u32) -> Result<T, i64> {
    if BTF {
        btf_field(base, offset)
    } else {
        field(base, offset)
    }
}

/// A `struct task_struct *`: `BTF` when it came from a `tp_btf` argument (or through one),
/// so that its fields are read with plain loads; otherwise (`bpf_get_current_task()`, which
/// the oldest supported kernels only offer untyped) through `bpf_probe_read_kernel`.
#[derive(Clone, Copy)]
pub struct Task<const BTF: bool>(pub *const u8);

impl<const BTF: bool> Task<BTF> {
    #[inline(always)]
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }

    #[inline(always)]
    pub fn read<T>(self, offset: u32) -> Result<T, i64> {
        read_as::<BTF, T>(self.0, offset)
    }

    /// The process's start time: its group leader's `start_boottime`, the same for every
    /// thread, so that events about any thread of a process name the same process.
    #[inline(always)]
    pub fn process_start(self, layout: &KernelLayout) -> u64 {
        let leader = self
            .read::<*const u8>(layout.task_group_leader)
            .unwrap_or(self.0);
        field(leader, layout.task_start_boottime).unwrap_or(0)
    }

    /// `task->cgroups->subsys[memory_cgrp_id]`: the task's memory cgroup css, or null.
    #[inline(always)]
    pub fn memory_css(self, layout: &KernelLayout) -> *const u8 {
        let Ok(css_set) = self.read::<*const u8>(layout.task_cgroups) else {
            return core::ptr::null();
        };
        read_as::<BTF, *const u8>(css_set, layout.css_set_memory_css).unwrap_or(core::ptr::null())
    }

    /// The memory cgroup's kernfs id (= the cgroup directory's inode), 0 when unknown.
    #[inline(always)]
    pub fn memcg_id(self, layout: &KernelLayout) -> u64 {
        if layout.flags & agent_ebpf::layout_flags::MEMCG == 0 {
            return 0;
        }
        css_id::<BTF>(self.memory_css(layout), layout)
    }
}

/// The memory cgroup id of a css (`css->cgroup->kn->id`), 0 when unknown.
#[inline(always)]
pub fn css_id<const BTF: bool>(css: *const u8, layout: &KernelLayout) -> u64 {
    let Ok(cgroup) = read_as::<BTF, *const u8>(css, layout.css_cgroup) else {
        return 0;
    };
    let Ok(kn) = read_as::<BTF, *const u8>(cgroup, layout.cgroup_kn) else {
        return 0;
    };
    read_as::<BTF, u64>(kn, layout.kernfs_node_id).unwrap_or(0)
}

/// Samples the memory cgroup of `task` and its ancestors: id, usage and limit, as the OOM
/// killer saw them. Returns how many were filled.
#[inline(always)]
pub fn memcg_chain<const BTF: bool>(
    task: Task<BTF>,
    layout: &KernelLayout,
    chain: &mut [MemcgSample; MEMCG_CHAIN_LEN],
) -> u32 {
    if layout.flags & agent_ebpf::layout_flags::MEMCG == 0 {
        return 0;
    }
    // Zeroed whole, with a constant size: a loop clearing "the rest" would become a
    // variable-length memset the verifier cannot bound.
    *chain = [MemcgSample::default(); MEMCG_CHAIN_LEN];
    let mut css = task.memory_css(layout);
    let mut filled = 0u32;
    for sample in chain.iter_mut() {
        if css.is_null() {
            break;
        }
        sample.id = css_id::<BTF>(css, layout);
        sample.usage_pages = read_as::<BTF, i64>(css, layout.memcg_usage)
            .unwrap_or(0)
            .max(0) as u64;
        sample.max_pages = read_as::<BTF, u64>(css, layout.memcg_max).unwrap_or(u64::MAX);
        sample.oom_events = if layout.flags & agent_ebpf::layout_flags::MEMCG_OOM_EVENTS == 0 {
            MemcgSample::OOM_EVENTS_UNKNOWN
        } else {
            read_as::<BTF, u64>(css, layout.memcg_oom_events)
                .unwrap_or(MemcgSample::OOM_EVENTS_UNKNOWN)
        };
        filled += 1;
        css = read_as::<BTF, *const u8>(css, layout.css_parent).unwrap_or(core::ptr::null());
    }
    filled
}
