//! The running kernel's layout: every offset the programs read, resolved from BTF (and the
//! exec tracepoints' tracefs formats), never compiled in.

use agent_ebpf::{KernelLayout, layout_flags};
use std::path::Path;

use super::btf::{Btf, BtfError, Kind};

/// Signals whose default action kills (terminate or core dump): SIGCHLD, SIGCONT, SIGSTOP,
/// SIGTSTP, SIGTTIN, SIGTTOU, SIGURG and SIGWINCH are not, and never cross to user space.
#[must_use]
pub fn fatal_signal_mask() -> u64 {
    const NOT_FATAL: [u32; 8] = [17, 18, 19, 20, 21, 22, 23, 28];
    let mut mask = u64::MAX;
    for sig in NOT_FATAL {
        mask &= !(1u64 << (sig - 1));
    }
    mask
}

/// How `mark_victim` passes its victim on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomVictimArg {
    /// `mark_victim(struct task_struct *, uid_t)` (≈6.8+, and backports).
    Task,
    /// `mark_victim(int pid)` (older kernels).
    Pid,
}

/// How `sched_process_exit` tells a thread's exit from its process's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupDeath {
    /// `sched_process_exit(struct task_struct *, bool group_dead)` (≈6.16+): exactly once.
    Argument,
    /// Only the task: `signal->live` reaching 0, which two racing threads can both see.
    SignalLive,
}

/// What was resolved, and what this kernel lacks.
#[derive(Debug)]
pub struct Resolved {
    pub layout: KernelLayout,
    pub oom_victim_arg: Option<OomVictimArg>,
    pub group_death: GroupDeath,
    /// Things the kernel does not have, each with what is lost; logged once at start-up.
    pub missing: Vec<String>,
    /// How this kernel keeps what differs between kernels, for the start-up log.
    pub choices: Vec<String>,
}

fn off(btf: &Btf, ty: &str, path: &str) -> Result<u32, BtfError> {
    btf.offset_of(ty, path)
}

/// `mem_cgroup.memory_events_local[MEMCG_OOM]`, from the css (the index is the enumerator's
/// value in this kernel's `enum memcg_memory_event`).
fn memcg_oom_events(btf: &Btf, css_in_memcg: u32, features: &mut Features) -> u32 {
    let found = btf
        .enum_value("MEMCG_OOM")
        .ok_or(BtfError::Malformed(
            "no MEMCG_OOM in enum memcg_memory_event",
        ))
        .and_then(|index| off(btf, "mem_cgroup", &format!("memory_events_local[{index}]")))
        .map(|o| o - css_in_memcg);
    features.take(
        found,
        layout_flags::MEMCG_OOM_EVENTS,
        "mem_cgroup.memory_events_local",
        "the memory cgroup an OOM kill hit is inferred from usage near its limit",
    )
}

/// What this kernel has, as `layout_flags`, and what it lacks, each with what is lost.
#[derive(Default)]
struct Features {
    flags: u32,
    missing: Vec<String>,
}

impl Features {
    /// `found`'s value with `flag` set, or the default with `what` listed as missing.
    fn take<T: Default, E: std::fmt::Display>(
        &mut self,
        found: Result<T, E>,
        flag: u32,
        what: &str,
        lost: &str,
    ) -> T {
        match found {
            Ok(value) => {
                self.flags |= flag;
                value
            }
            Err(e) => {
                self.missing.push(format!("{what} ({e}): {lost}"));
                T::default()
            }
        }
    }
}

/// Resolves every offset the programs need. Offsets the programs cannot work without are
/// errors; the rest degrade a feature and are listed in `missing`.
pub fn resolve(btf: &Btf, tracefs: &Path) -> Result<Resolved, BtfError> {
    let mut features = Features::default();
    let memcg_id = btf.enum_value("memory_cgrp_id");
    let css_set_memory_css = if let Some(id) = memcg_id {
        features.flags |= layout_flags::MEMCG;
        off(btf, "css_set", &format!("subsys[{id}]"))?
    } else {
        features
            .missing
            .push("memory controller (memory_cgrp_id): no container identity".into());
        0
    };
    let signal_live = features.take(
        off(btf, "signal_struct", "live.counter"),
        layout_flags::SIGNAL_LIVE,
        "signal_struct.live",
        "thread exits are not told from group exits in the kernel",
    );
    // `mem_cgroup.css` is its first member on every kernel; the programs hold the css pointer,
    // so page-counter offsets are taken relative to it.
    let css_in_memcg = off(btf, "mem_cgroup", "css")?;
    let memcg_usage = off(btf, "mem_cgroup", "memory.usage")? - css_in_memcg;
    let memcg_max = off(btf, "mem_cgroup", "memory.max")? - css_in_memcg;
    // 5.2+: the counter of the memcg itself (not its descendants') that mem_cgroup_oom raises
    // before the OOM killer runs: which level of the victim's chain hit its limit.
    let memcg_oom_events = memcg_oom_events(btf, css_in_memcg, &mut features);

    let mut choices = Vec::new();
    let (mm_rss_base, mm_rss_stride, rss_form) = features.take(
        mm_rss(btf),
        layout_flags::MM_RSS,
        "mm_struct.rss_stat",
        "OOM victims' RSS at the kill is unknown (null)",
    );
    if !rss_form.is_empty() {
        choices.push(format!("mm_struct.rss_stat is {rss_form}"));
    }
    let enum_u32 = |name: &str| btf.enum_value(name).map_or(0, |v| v as u32);

    let sighand_handler =
        off(btf, "sighand_struct", "action")? + off(btf, "k_sigaction", "sa.sa_handler")?;
    let k_sigaction_size = btf
        .size_of(btf.find(Kind::Struct, "k_sigaction")?)
        .ok_or(BtfError::Malformed("k_sigaction has no size"))?;

    let (execve_enter_filename, execveat_enter_filename, exec_exit_ret) = features.take(
        exec_fields(tracefs),
        layout_flags::EXEC_TRACEPOINTS,
        "syscalls/sys_{enter,exit}_execve in tracefs",
        "failed execs are not seen",
    );

    let signal_core_state = off(btf, "signal_struct", "core_state").ok();

    let oom_victim_arg = oom_victim_arg(btf);
    note_oom_victim_arg(oom_victim_arg, &mut features, &mut choices);

    let layout = KernelLayout {
        task_pid: off(btf, "task_struct", "pid")?,
        task_tgid: off(btf, "task_struct", "tgid")?,
        task_comm: off(btf, "task_struct", "comm")?,
        task_exit_code: off(btf, "task_struct", "exit_code")?,
        task_real_parent: off(btf, "task_struct", "real_parent")?,
        task_signal: off(btf, "task_struct", "signal")?,
        task_cgroups: off(btf, "task_struct", "cgroups")?,
        task_start_boottime: off(btf, "task_struct", "start_boottime")?,
        task_mm: off(btf, "task_struct", "mm")?,
        task_sighand: off(btf, "task_struct", "sighand")?,
        signal_maxrss: off(btf, "signal_struct", "maxrss")?,
        signal_live,
        signal_oom_score_adj: off(btf, "signal_struct", "oom_score_adj")?,
        css_set_memory_css,
        css_cgroup: off(btf, "cgroup_subsys_state", "cgroup")?,
        css_parent: off(btf, "cgroup_subsys_state", "parent")?,
        cgroup_kn: off(btf, "cgroup", "kn")?,
        kernfs_node_id: off(btf, "kernfs_node", "id")?,
        memcg_usage,
        memcg_max,
        mm_rss_base,
        mm_rss_stride,
        mm_file_pages_index: enum_u32("MM_FILEPAGES"),
        mm_anon_pages_index: enum_u32("MM_ANONPAGES"),
        mm_shmem_pages_index: enum_u32("MM_SHMEMPAGES"),
        sighand_handler,
        sighand_k_sigaction_size: k_sigaction_size,
        execve_enter_filename,
        execveat_enter_filename,
        exec_exit_ret,
        fatal_signals: fatal_signal_mask(),
        flags: features.flags,
        siginfo_code: off(btf, "kernel_siginfo", "si_code")?,
        task_group_leader: off(btf, "task_struct", "group_leader")?,
        cgroup_root: off(btf, "cgroup", "root")?,
        cgroup_root_subsys_mask: off(btf, "cgroup_root", "subsys_mask")?,
        memory_cgrp_id: memcg_id.map_or(0, |id| id as u32),
        signal_group_exit_code: off(btf, "signal_struct", "group_exit_code")?,
        signal_flags: off(btf, "signal_struct", "flags")?,
        signal_exiting_mask: exiting_mask(signal_core_state),
        signal_core_state: signal_core_state.unwrap_or(0),
        memcg_oom_events,
        pad: 0,
    };
    Ok(Resolved {
        layout,
        oom_victim_arg,
        group_death: group_death(btf, &mut choices),
        missing: features.missing,
        choices,
    })
}

/// `SIGNAL_GROUP_EXIT` (include/linux/sched/signal.h): the group is exiting (`exit_group`, a
/// fatal signal); `prepare_signal` then drops every signal. The same value on every kernel.
const SIGNAL_GROUP_EXIT: u32 = 0x4;
/// `SIGNAL_GROUP_COREDUMP`: a core dump is under way (dropping all but SIGKILL) on kernels
/// before 5.17, which set it instead of `SIGNAL_GROUP_EXIT`. It was removed after
/// `core_state` moved from `mm_struct` to `signal_struct` (5.16), so it counts only where BTF
/// has no `signal_struct.core_state`; where it has one, the programs read that pointer.
const SIGNAL_GROUP_COREDUMP: u32 = 0x8;

/// The bits of `signal_struct.flags` that mean "exiting: new signals are dropped" here. Flag
/// values are macros, not in BTF; which of them exist is told by the struct's members.
fn exiting_mask(signal_core_state: Option<u32>) -> u32 {
    if signal_core_state.is_some() {
        SIGNAL_GROUP_EXIT
    } else {
        SIGNAL_GROUP_EXIT | SIGNAL_GROUP_COREDUMP
    }
}

/// How `sched_process_exit` tells the group's death, from the tracepoint's BTF parameters.
fn group_death(btf: &Btf, choices: &mut Vec<String>) -> GroupDeath {
    if btf
        .tracepoint_params("sched_process_exit")
        .is_ok_and(|params| params.len() >= 2)
    {
        choices.push("sched_process_exit(task, group_dead)".into());
        GroupDeath::Argument
    } else {
        choices.push("sched_process_exit(task): group death from signal->live".into());
        GroupDeath::SignalLive
    }
}

/// How `mark_victim` passes its victim, from the tracepoint's BTF parameters.
fn note_oom_victim_arg(
    arg: Option<OomVictimArg>,
    features: &mut Features,
    choices: &mut Vec<String>,
) {
    match arg {
        Some(OomVictimArg::Task) => choices.push("mark_victim(task_struct *, uid)".into()),
        Some(OomVictimArg::Pid) => {
            // The victim is found from the SIGKILL the OOM killer sends just before.
            features.flags |= layout_flags::MARK_VICTIM_PID;
            choices.push("mark_victim(int pid): the victim from the OOM killer's SIGKILL".into());
        }
        None => features
            .missing
            .push("tracepoint oom/mark_victim: OOM kills are seen only as SIGKILL".into()),
    }
}

fn oom_victim_arg(btf: &Btf) -> Option<OomVictimArg> {
    let params = btf.tracepoint_params("mark_victim").ok()?;
    match params.first() {
        Some(&p) if btf.pointee_struct(p) == Some("task_struct") => Some(OomVictimArg::Task),
        Some(&p) if btf.kind(p) == Some(Kind::Int) => Some(OomVictimArg::Pid),
        _ => None,
    }
}

/// `mm_struct.rss_stat`: since 6.2 an array of `percpu_counter` (read `.count`, the value the
/// kernel's own `get_mm_counter` reports); before, `struct mm_rss_stat { atomic_long_t count[]; }`.
fn mm_rss(btf: &Btf) -> Result<(u32, u32, &'static str), BtfError> {
    let mm = btf.find(Kind::Struct, "mm_struct")?;
    let (rss_off, rss_ty) = btf.offset_in(mm, "mm_struct", "rss_stat")?;
    if let Some((elem, _)) = btf.array(rss_ty) {
        let (count_off, _) = btf.offset_in(elem, "percpu_counter", "count")?;
        let stride = btf
            .size_of(elem)
            .ok_or(BtfError::Malformed("percpu_counter without size"))?;
        return Ok((rss_off + count_off, stride, "percpu_counter[] (6.2+)"));
    }
    let (count_off, count_ty) = btf.offset_in(rss_ty, "mm_rss_stat", "count")?;
    let (elem, _) = btf
        .array(count_ty)
        .ok_or(BtfError::NotComposite("mm_rss_stat.count".into()))?;
    let stride = btf
        .size_of(elem)
        .ok_or(BtfError::Malformed("atomic_long_t without size"))?;
    Ok((
        rss_off + count_off,
        stride,
        "struct mm_rss_stat (before 6.2)",
    ))
}

/// Field offsets of the exec syscall tracepoints, from their tracefs `format` files.
fn exec_fields(tracefs: &Path) -> Result<(u32, u32, u32), String> {
    let field = |event: &str, name: &str| -> Result<u32, String> {
        let path = tracefs.join("events/syscalls").join(event).join("format");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        tracefs_field_offset(&text, name).ok_or_else(|| format!("{event} has no field `{name}`"))
    };
    let enter = field("sys_enter_execve", "filename")?;
    let enter_at = field("sys_enter_execveat", "filename")?;
    let ret = field("sys_exit_execve", "ret")?;
    let ret_at = field("sys_exit_execveat", "ret")?;
    if ret != ret_at {
        return Err("sys_exit_execve and sys_exit_execveat disagree on `ret`".into());
    }
    Ok((enter, enter_at, ret))
}

/// `field:const char * filename;\toffset:16;\tsize:8;\tsigned:0;` → 16.
#[must_use]
pub fn tracefs_field_offset(format: &str, name: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        let field_name = decl.rsplit([' ', '*']).next()?;
        if field_name != name {
            return None;
        }
        let offset = line
            .split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))?;
        offset.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_mask_excludes_sigchld_and_stop_signals() {
        let mask = fatal_signal_mask();
        for sig in [17u32, 18, 19, 20, 21, 22, 23, 28] {
            assert_eq!(mask & (1 << (sig - 1)), 0, "signal {sig}");
        }
        for sig in [1u32, 2, 3, 6, 9, 11, 13, 15, 31, 34, 64] {
            assert_ne!(mask & (1 << (sig - 1)), 0, "signal {sig}");
        }
    }

    #[test]
    fn tracefs_format_parsing() {
        let format = "name: sys_enter_execve\nID: 700\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:const char * filename;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;\n";
        assert_eq!(tracefs_field_offset(format, "filename"), Some(16));
        assert_eq!(tracefs_field_offset(format, "argv"), Some(24));
        assert_eq!(tracefs_field_offset(format, "envp"), None);
    }
}
