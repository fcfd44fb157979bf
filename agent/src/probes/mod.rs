//! Loading and attaching the kernel programs: BTF offsets → globals, and which probes this
//! kernel supports, decided at start-up and logged once.

pub mod btf;
pub mod layout;

use std::path::{Path, PathBuf};

use agent_ebpf::{InitProcess, KernelLayout, names};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, TracePoint},
};
use tracing::{info, warn};

use self::layout::{GroupDeath, OomVictimArg};

/// The kernel programs, compiled for the BPF target by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/coroner-probes"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program `{name}`: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map `{0}` missing from the object")]
    MissingMap(&'static str),
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("required probe `{0}` could not be attached on this kernel")]
    Required(&'static str),
}

/// `KernelLayout` as a loader global: aya needs `Pod`, which the shared `no_std` type cannot
/// implement without depending on aya.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct LayoutGlobal(KernelLayout);
// SAFETY: `KernelLayout` is `#[repr(C)]`, made only of integers, with no padding (its size is
// checked at compile time in agent-ebpf).
unsafe impl aya::Pod for LayoutGlobal {}

/// `InitProcess` as a map value, for the same reason.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct InitValue(InitProcess);
// SAFETY: `InitProcess` is `#[repr(C)]`, two u32 and a u64, no padding (size-checked).
unsafe impl aya::Pod for InitValue {}

/// How one probe fared on this kernel.
#[derive(Clone, Debug)]
pub struct ProbeStatus {
    pub name: &'static str,
    /// `tp_btf/…` or `tracepoint/…`: what it is attached to.
    pub attach: String,
    pub attached: bool,
    /// Why it is not attached (the kernel lacks it, or attaching failed).
    pub reason: Option<String>,
}

/// What the operator chose about the probes.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// A ring buffer of this many bytes (a power of two, at least a page) instead of the
    /// object's `EVENTS_BYTES`.
    pub ring_buffer_bytes: Option<u32>,
    /// Attach the exec-failure probes (`--exec-failures`). Off, they are not attached and not
    /// in [`Probes::status`]: nothing the operator turned off reads as a failure.
    pub exec_failures: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: None,
            exec_failures: true,
        }
    }
}

/// The loaded programs and the maps user space talks to.
pub struct Probes {
    /// Kept alive: dropping it detaches every program.
    _ebpf: Ebpf,
    /// Taken once by the event reader (`take_events`).
    events: Option<RingBuf<MapData>>,
    pub counters: PerCpuArray<MapData, u64>,
    /// Taken by the cgroup lookup, which marks host memcgs in it.
    pub host_memcgs: Option<BpfHashMap<MapData, u64, u8>>,
    /// Taken by the event reader (`take_reader_flag`), which parks with it.
    reader_flag: Option<Array<MapData, u32>>,
    /// Each container's init and the exec sessions, as the programs learn them; seeded at
    /// start-up for containers already running ([`Probes::seed_roles`]).
    inits: BpfHashMap<MapData, u64, InitValue>,
    exec_sessions: BpfHashMap<MapData, u32, u64>,
    pub status: Vec<ProbeStatus>,
    pub layout: KernelLayout,
}

/// Where tracefs is, mounting it when it is not (the exec-failure probes need it).
fn tracefs() -> PathBuf {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return PathBuf::from(dir);
        }
    }
    let dir = PathBuf::from("/sys/kernel/tracing");
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) with NUL-terminated strings; failure is reported, not fatal.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        info!("mounted tracefs at {}", dir.display());
    } else {
        warn!(
            "tracefs is not mounted and mounting it failed ({}): failed execs will not be seen",
            std::io::Error::last_os_error()
        );
    }
    dir
}

/// Raises `RLIMIT_MEMLOCK` for kernels before 5.11 (BPF memory charged to it); newer kernels
/// charge the memory cgroup instead, so failing here is only a warning.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        warn!(
            "setrlimit(RLIMIT_MEMLOCK) failed ({}); fine on kernels ≥ 5.11",
            std::io::Error::last_os_error()
        );
    }
}

impl Probes {
    /// Resolves the layout, loads the object and attaches every probe this kernel supports.
    /// Exit and signal probes are required; the rest degrade with a logged reason.
    pub fn load() -> Result<Self, ProbeError> {
        Self::load_with(&LoadOptions::default())
    }

    /// [`Probes::load`] as the operator asked ([`LoadOptions`]).
    pub fn load_with(options: &LoadOptions) -> Result<Self, ProbeError> {
        let LoadOptions {
            ring_buffer_bytes,
            exec_failures,
        } = *options;
        raise_memlock();
        let started = std::time::Instant::now();
        let resolved = {
            let btf = btf::Btf::from_sys()?;
            layout::resolve(&btf, &tracefs())?
        };
        info!(
            elapsed_ms = started.elapsed().as_millis(),
            "kernel layout resolved from BTF"
        );
        info!(choices = %resolved.choices.join("; "), "this kernel's layout");
        for gap in &resolved.missing {
            warn!("this kernel lacks {gap}");
        }
        let global = LayoutGlobal(resolved.layout);
        let mut loader = EbpfLoader::new();
        loader.override_global(names::LAYOUT, &global, true);
        if let Some(bytes) = ring_buffer_bytes {
            loader.map_max_entries(names::EVENTS, bytes);
        }
        let mut ebpf = loader.load(OBJECT)?;
        let status = attach(&mut ebpf, &resolved, exec_failures)?;

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))
        };
        let map_err = |name: &'static str| move |source| ProbeError::Map { name, source };
        let events =
            RingBuf::try_from(take(&mut ebpf, names::EVENTS)?).map_err(map_err(names::EVENTS))?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, names::COUNTERS)?)
            .map_err(map_err(names::COUNTERS))?;
        let host_memcgs = BpfHashMap::try_from(take(&mut ebpf, names::HOST_MEMCGS)?)
            .map_err(map_err(names::HOST_MEMCGS))?;
        let reader_flag =
            Array::try_from(take(&mut ebpf, names::READER)?).map_err(map_err(names::READER))?;
        let inits =
            BpfHashMap::try_from(take(&mut ebpf, names::INITS)?).map_err(map_err(names::INITS))?;
        let exec_sessions = BpfHashMap::try_from(take(&mut ebpf, names::EXEC_SESSIONS)?)
            .map_err(map_err(names::EXEC_SESSIONS))?;
        Ok(Probes {
            _ebpf: ebpf,
            events: Some(events),
            counters,
            host_memcgs: Some(host_memcgs),
            reader_flag: Some(reader_flag),
            inits,
            exec_sessions,
            status,
            layout: resolved.layout,
        })
    }

    /// Tells the programs the init and exec sessions of containers that were running before
    /// they were attached (they learn roles from execs, which these did before). Called after
    /// attaching, so an exec in between is not missed; what `/proc` says overwrites it.
    pub fn seed_roles(&mut self, running: &[crate::cgroup::RunningContainer]) {
        let mut failed = 0usize;
        for container in running {
            let init = InitProcess {
                tgid: container.init_tgid,
                flags: 0,
                start_boottime_ns: 0,
            };
            if self
                .inits
                .insert(container.memcg_id, InitValue(init), 0)
                .is_err()
            {
                failed += 1;
            }
            for &tgid in &container.exec_tgids {
                if self.exec_sessions.insert(tgid, 0, 0).is_err() {
                    failed += 1;
                }
            }
        }
        info!(
            containers = running.len(),
            "roles of running containers handed to the kernel"
        );
        if failed > 0 {
            warn!(
                failed,
                "some roles of running containers could not be stored"
            );
        }
    }

    /// The ring buffer, for the one reader that consumes it. The programs stay attached as
    /// long as `self` lives.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// The programs' `READER` flag, for the one reader that parks with it
    /// ([`crate::events::EventReader::with_parking`]).
    pub fn take_reader_flag(&mut self) -> Option<Array<MapData, u32>> {
        self.reader_flag.take()
    }

    /// Sums a per-CPU counter slot, or says why it cannot be read.
    pub fn try_counter(&self, slot: u32) -> Result<u64, aya::maps::MapError> {
        self.counters
            .get(&slot, 0)
            .map(|values| values.iter().sum())
    }

    /// Sums a per-CPU counter slot (`agent_ebpf::counter::*`).
    #[must_use]
    pub fn counter(&self, slot: u32) -> u64 {
        self.counters
            .get(&slot, 0)
            .map_or(0, |values| values.iter().sum())
    }

    /// Whether every probe this kernel supports is attached (what `/healthz` reports).
    pub fn readiness(&self) -> Result<(), String> {
        let failed: Vec<String> = self
            .status
            .iter()
            .filter(|p| !p.attached)
            .map(|p| {
                format!(
                    "{} ({})",
                    p.name,
                    p.reason.as_deref().unwrap_or("not attached")
                )
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("probes not attached: {}", failed.join(", ")))
        }
    }
}

/// The exec-failure probes and their syscall tracepoints.
const EXEC_FAILURE_PROBES: [(&str, &str); 4] = [
    (names::EXECVE_ENTER, "sys_enter_execve"),
    (names::EXECVEAT_ENTER, "sys_enter_execveat"),
    (names::EXECVE_EXIT, "sys_exit_execve"),
    (names::EXECVEAT_EXIT, "sys_exit_execveat"),
];

/// Attaches every probe this kernel supports and logs how each fared. Exit and signal probes
/// are required; the rest degrade with their reason in the status.
fn attach(
    ebpf: &mut Ebpf,
    resolved: &layout::Resolved,
    exec_failures: bool,
) -> Result<Vec<ProbeStatus>, ProbeError> {
    let kernel_btf = aya::Btf::from_sys_fs().map_err(|e| {
        ProbeError::Btf(btf::BtfError::Read {
            path: "/sys/kernel/btf/vmlinux".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })?;

    let mut status = Vec::new();
    let mut attach_btf = |ebpf: &mut Ebpf, name: &'static str, tracepoint: &str| {
        let result = (|| -> Result<(), aya::programs::ProgramError> {
            let program: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or(aya::programs::ProgramError::UnexpectedProgramType)?
                .try_into()?;
            program.load(tracepoint, &kernel_btf)?;
            program.attach()?;
            Ok(())
        })();
        status.push(ProbeStatus {
            name,
            attach: format!("tp_btf/{tracepoint}"),
            attached: result.is_ok(),
            reason: result.err().map(|e| format!("{e}: {}", error_chain(&e))),
        });
    };
    match resolved.group_death {
        GroupDeath::Argument => attach_btf(ebpf, names::PROCESS_EXIT, "sched_process_exit"),
        GroupDeath::SignalLive => {
            attach_btf(ebpf, names::PROCESS_EXIT_LIVE, "sched_process_exit");
        }
    }
    attach_btf(ebpf, names::PROCESS_EXEC, "sched_process_exec");
    attach_btf(ebpf, names::SIGNAL_GENERATE, "signal_generate");
    attach_btf(ebpf, names::CGROUP_MKDIR, "cgroup_mkdir");
    match resolved.oom_victim_arg {
        Some(OomVictimArg::Task) => attach_btf(ebpf, names::MARK_VICTIM, "mark_victim"),
        Some(OomVictimArg::Pid) => attach_btf(ebpf, "mark_victim_pid", "mark_victim"),
        None => status.push(ProbeStatus {
            name: names::MARK_VICTIM,
            attach: "tp_btf/mark_victim".into(),
            attached: false,
            reason: Some("this kernel has no oom/mark_victim tracepoint".into()),
        }),
    }
    let exec_ok = resolved.layout.flags & agent_ebpf::layout_flags::EXEC_TRACEPOINTS != 0;
    let exec_probes = if exec_failures {
        EXEC_FAILURE_PROBES.as_slice()
    } else {
        // Enabling any syscall tracepoint puts every syscall of every task on the node on the
        // tracing slow path; an operator may not want that for the context of an exit 127.
        info!("--exec-failures off: the exec-failure probes are not attached");
        &[]
    };
    for &(name, event) in exec_probes {
        let result = if exec_ok {
            (|| -> Result<(), aya::programs::ProgramError> {
                let program: &mut TracePoint = ebpf
                    .program_mut(name)
                    .ok_or(aya::programs::ProgramError::UnexpectedProgramType)?
                    .try_into()?;
                program.load()?;
                program.attach("syscalls", event)?;
                Ok(())
            })()
            .map_err(|e| format!("{e}: {}", error_chain(&e)))
        } else {
            Err("tracefs or the syscall tracepoints are not available".into())
        };
        status.push(ProbeStatus {
            name,
            attach: format!("tracepoint/syscalls/{event}"),
            attached: result.is_ok(),
            reason: result.err(),
        });
    }
    for probe in &status {
        match &probe.reason {
            None => info!(probe = probe.name, attach = %probe.attach, "attached"),
            Some(why) => {
                warn!(probe = probe.name, attach = %probe.attach, "not attached: {why}");
            }
        }
    }
    // Either form of the exit program will do.
    let attached = |names: &[&str]| status.iter().any(|p| names.contains(&p.name) && p.attached);
    if !attached(&[names::PROCESS_EXIT, names::PROCESS_EXIT_LIVE]) {
        return Err(ProbeError::Required(names::PROCESS_EXIT));
    }
    if !attached(&[names::SIGNAL_GENERATE]) {
        return Err(ProbeError::Required(names::SIGNAL_GENERATE));
    }
    Ok(status)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&s.to_string());
        out.push_str("; ");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
