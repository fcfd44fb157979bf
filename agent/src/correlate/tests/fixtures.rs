//! A fake cgroup lookup and builders of synthetic kernel events.

use std::collections::HashMap;
use std::time::Duration;

use agent_ebpf::{
    COMM_LEN, EventHeader, ExecFailureEvent, ExitEvent, KernelEvent, MEMCG_CHAIN_LEN, MemcgSample,
    OOM_STACK_DEPTH, OomEvent, PATH_LEN, SignalEvent, exit_flags, kind, oom_flags,
};

use crate::cgroup::{CgroupInfo, ContainerRef, QosClass, Runtime};
use crate::correlate::{BootClock, CgroupLookup, Correlator, CorrelatorConfig, MemoryReading};
use crate::record::{OomScope, TerminationRecord};

pub const PAGE: u64 = 4096;
/// Wall clock = boot time + this.
pub const OFFSET_NS: i128 = 1_750_000_000_000_000_000;
pub const HOLD_NS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

/// Container A of pod P.
pub const CTR_A: u64 = 100;
/// Container B of the same pod P.
pub const CTR_B: u64 = 101;
/// The pod's own cgroup (no container).
pub const POD: u64 = 90;
/// The burstable `QoS` cgroup.
pub const QOS: u64 = 80;
/// containerd's service cgroup.
pub const HOST: u64 = 200;
/// A memcg id the lookup cannot resolve.
pub const GONE: u64 = 999;

pub const POD_UID: &str = "0a1b2c3d-0000-4000-8000-000000000001";
pub const CID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const CID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

pub fn pod_path() -> String {
    format!("/kubepods/burstable/pod{POD_UID}")
}
pub fn path_a() -> String {
    format!("{}/{CID_A}", pod_path())
}
pub fn path_b() -> String {
    format!("{}/{CID_B}", pod_path())
}
pub const HOST_PATH: &str = "/system.slice/containerd.service";

pub struct FakeCgroups {
    pub infos: HashMap<u64, CgroupInfo>,
    pub memory: HashMap<String, MemoryReading>,
    /// What `oom_scope` answers.
    pub scope: Option<OomScope>,
    /// The stacks `oom_scope` was asked about.
    pub stacks: Vec<Vec<u64>>,
    pub info_calls: usize,
    /// memcgs made after the agent started watching.
    pub created_while_watched: Vec<u64>,
}

fn container(id: &str) -> ContainerRef {
    ContainerRef {
        pod_uid: POD_UID.to_owned(),
        container_id: id.to_owned(),
        runtime: Runtime::Unknown,
        qos: QosClass::Burstable,
    }
}

impl FakeCgroups {
    pub fn new() -> Self {
        let mut infos = HashMap::new();
        let mut add = |id, path: String, container| {
            infos.insert(id, CgroupInfo { path, container });
        };
        add(CTR_A, path_a(), Some(container(CID_A)));
        add(CTR_B, path_b(), Some(container(CID_B)));
        add(POD, pod_path(), None);
        add(QOS, "/kubepods/burstable".to_owned(), None);
        add(HOST, HOST_PATH.to_owned(), None);
        let mut memory = HashMap::new();
        memory.insert(
            path_a(),
            MemoryReading {
                peak_bytes: Some(60 << 20),
                limit_bytes: Some(64 << 20),
            },
        );
        Self {
            infos,
            memory,
            scope: None,
            stacks: Vec::new(),
            info_calls: 0,
            created_while_watched: Vec::new(),
        }
    }
}

impl CgroupLookup for FakeCgroups {
    fn info(&mut self, memcg_id: u64) -> Option<CgroupInfo> {
        self.info_calls += 1;
        self.infos.get(&memcg_id).cloned()
    }
    fn memory(&mut self, path: &str) -> MemoryReading {
        self.memory.get(path).copied().unwrap_or_default()
    }
    fn oom_scope(&mut self, stack: &[u64]) -> Option<OomScope> {
        self.stacks.push(stack.to_vec());
        self.scope
    }
    fn created_while_watched(&mut self, memcg_id: u64) -> bool {
        self.created_while_watched.contains(&memcg_id)
    }
}

pub fn config() -> CorrelatorConfig {
    let mut config = CorrelatorConfig::new("node-1", PAGE, BootClock::from_offset_ns(OFFSET_NS));
    config.hold = Duration::from_nanos(HOLD_NS);
    config
}

pub fn correlator() -> Correlator {
    Correlator::new(config()).expect("valid config")
}

/// Ingests the events, then drains well after the last one's hold.
pub fn run(
    c: &mut Correlator,
    cg: &mut FakeCgroups,
    events: &[KernelEvent],
) -> Vec<TerminationRecord> {
    let last = events.iter().map(ktime).max().unwrap_or(0);
    for e in events {
        c.ingest(e, cg);
    }
    c.drain_ready(last + HOLD_NS, cg)
}

pub fn only(records: Vec<TerminationRecord>) -> TerminationRecord {
    assert_eq!(records.len(), 1, "expected one record, got {records:#?}");
    records.into_iter().next().expect("one record")
}

pub fn ktime(e: &KernelEvent) -> u64 {
    match e {
        KernelEvent::Exit(e) => e.header.ktime_ns,
        KernelEvent::Signal(e) => e.header.ktime_ns,
        KernelEvent::Oom(e) => e.header.ktime_ns,
        KernelEvent::ExecFailure(e) => e.header.ktime_ns,
        KernelEvent::CgroupMkdir(e) => e.header.ktime_ns,
    }
}

pub fn comm(s: &str) -> [u8; COMM_LEN] {
    let mut out = [0; COMM_LEN];
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}

fn header(kind: u32, at: u64) -> EventHeader {
    EventHeader {
        kind,
        cpu: 0,
        ktime_ns: at,
    }
}

/// Wall-clock nanoseconds of a kernel time.
pub fn wall(at: u64) -> i128 {
    i128::from(at) + OFFSET_NS
}

// ---- events ------------------------------------------------------------------------------

/// A process: tgid and start time, in the container `memcg`.
#[derive(Clone, Copy)]
pub struct Proc {
    pub tgid: u32,
    pub start: u64,
    pub memcg: u64,
}

pub const fn proc(tgid: u32, start: u64, memcg: u64) -> Proc {
    Proc { tgid, start, memcg }
}

/// The exit of `p`: `raw` is `task->exit_code` (`code << 8`, or the signal).
pub fn exit(p: Proc, at: u64, raw: u32, main: bool) -> ExitEvent {
    ExitEvent {
        header: header(kind::EXIT, at),
        pid: p.tgid,
        tgid: p.tgid,
        parent_tgid: 1,
        exit_code: raw,
        memcg_id: p.memcg,
        parent_memcg_id: if main { HOST } else { p.memcg },
        start_boottime_ns: p.start,
        maxrss_pages: 2560,
        flags: if main { exit_flags::PARENT_OUTSIDE } else { 0 },
        role: if main {
            agent_ebpf::role::INIT
        } else {
            agent_ebpf::role::CHILD
        },
        comm: comm("app"),
    }
}

pub fn exited(p: Proc, at: u64, code: u8, main: bool) -> KernelEvent {
    KernelEvent::Exit(exit(p, at, u32::from(code) << 8, main))
}

pub fn killed(p: Proc, at: u64, signal: u8, main: bool) -> KernelEvent {
    KernelEvent::Exit(exit(p, at, u32::from(signal), main))
}

/// A signal `sig` from `sender` (tgid, memcg) to `target`, with `si_code` `code`, delivered.
pub fn signal(at: u64, sig: u8, code: i32, sender: (u32, u64), target: Proc) -> SignalEvent {
    SignalEvent {
        header: header(kind::SIGNAL, at),
        sig: u32::from(sig),
        code,
        result: 0,
        group: 1,
        flags: 0,
        pad: 0,
        sender_pid: sender.0,
        sender_tgid: sender.0,
        target_pid: target.tgid,
        target_tgid: target.tgid,
        sender_memcg_id: sender.1,
        target_memcg_id: target.memcg,
        target_start_boottime_ns: target.start,
        sender_comm: comm(if sender.1 == HOST {
            "containerd-shim"
        } else {
            "sender"
        }),
        target_comm: comm("app"),
    }
}

pub fn sent(at: u64, sig: u8, code: i32, sender: (u32, u64), target: Proc) -> KernelEvent {
    KernelEvent::Signal(signal(at, sig, code, sender, target))
}

/// An OOM kill of `victim`, triggered by `trigger_tgid`, with the memcg chain as
/// `(id, usage_pages, max_pages)` from the victim's memcg upwards, on a kernel without the
/// memcgs' own OOM counters (the usage decides; [`oom_counted`] has them).
pub fn oom(at: u64, victim: Proc, trigger_tgid: u32, chain: &[(u64, u64, u64)]) -> OomEvent {
    let counted: Vec<_> = chain
        .iter()
        .map(|&(id, usage, max)| (id, usage, max, MemcgSample::OOM_EVENTS_UNKNOWN))
        .collect();
    oom_counted(at, victim, trigger_tgid, &counted)
}

/// [`oom`] with each level's OOM counter: `(id, usage_pages, max_pages, oom_events)`.
pub fn oom_counted(
    at: u64,
    victim: Proc,
    trigger_tgid: u32,
    chain: &[(u64, u64, u64, u64)],
) -> OomEvent {
    let mut memcg_chain = [MemcgSample::default(); MEMCG_CHAIN_LEN];
    for (slot, &(id, usage_pages, max_pages, oom_events)) in memcg_chain.iter_mut().zip(chain) {
        *slot = MemcgSample {
            id,
            usage_pages,
            max_pages,
            oom_events,
        };
    }
    let mut stack = [0; OOM_STACK_DEPTH];
    stack[0] = 0xffff_ffff_8100_0001;
    stack[1] = 0xffff_ffff_8100_0002;
    OomEvent {
        header: header(kind::OOM, at),
        victim_pid: victim.tgid,
        victim_tgid: victim.tgid,
        trigger_pid: trigger_tgid,
        trigger_tgid,
        victim_memcg_id: victim.memcg,
        victim_start_boottime_ns: victim.start,
        anon_rss_pages: 15_000,
        file_rss_pages: 300,
        shmem_rss_pages: 20,
        oom_score_adj: 984,
        flags: oom_flags::RSS_FROM_MM | oom_flags::STACK,
        memcg_chain_len: chain.len() as u32,
        stack_bytes: 16,
        victim_comm: comm("app"),
        trigger_comm: comm("allocator"),
        memcg_chain,
        stack,
    }
}

/// No limit: `PAGE_COUNTER_MAX` with 4 KiB pages.
pub const UNLIMITED: u64 = (i64::MAX as u64) / PAGE;
/// 64 MiB in pages.
pub const LIMIT_64M: u64 = (64 << 20) / PAGE;

/// The tgid the exec-failure fixtures' processes are children of: the tests' main process.
pub const EXEC_PARENT: u32 = 4242;

/// A failed exec by `tgid`, a child of the tests' main process (or the main process itself).
pub fn exec_failure(at: u64, tgid: u32, memcg: u64, errno: i32, path: &str) -> KernelEvent {
    exec_failure_by(at, tgid, EXEC_PARENT, memcg, errno, path)
}

/// `tgid` (child of `parent`) exec'd successfully after failing: its failures explain nothing.
pub fn exec_later_success(at: u64, tgid: u32, memcg: u64) -> KernelEvent {
    let KernelEvent::ExecFailure(mut e) = exec_failure_by(at, tgid, EXEC_PARENT, memcg, 0, "")
    else {
        unreachable!()
    };
    e.flags = agent_ebpf::exec_flags::LATER_SUCCESS;
    KernelEvent::ExecFailure(e)
}

pub fn exec_failure_by(
    at: u64,
    tgid: u32,
    parent: u32,
    memcg: u64,
    errno: i32,
    path: &str,
) -> KernelEvent {
    let mut buf = [0; PATH_LEN];
    buf[..path.len()].copy_from_slice(path.as_bytes());
    KernelEvent::ExecFailure(ExecFailureEvent {
        header: header(kind::EXEC_FAILURE, at),
        pid: tgid,
        tgid,
        errno,
        path_len: path.len() as u32,
        parent_tgid: parent,
        flags: 0,
        memcg_id: memcg,
        comm: comm("sh"),
        path: buf,
    })
}
