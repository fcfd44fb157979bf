//! Kernel events → one [`TerminationRecord`] per death, with the verdict.
//!
//! The [`Correlator`] owns every piece of state, runs synchronously and does no I/O: the
//! caller feeds it decoded events with [`Correlator::ingest`] and collects finished records
//! with [`Correlator::drain_ready`]; cgroup questions go through [`CgroupLookup`].
//!
//! An exit waits `hold` (by its kernel timestamp) for events of other CPUs that were
//! generated before it but consumed after it; then the signals, OOM kill and exec failure
//! gathered for the same process — identified by `(tgid, start_boottime_ns)` — make its
//! record. The caller should drain the ring buffer before calling `drain_ready`, so that
//! everything reserved before `now` has been ingested.
//!
//! Identity contract with the kernel side: `ExitEvent::start_boottime_ns`,
//! `SignalEvent::target_start_boottime_ns` and `OomEvent::victim_start_boottime_ns` must be
//! the start time of the thread group's leader, so that events about different threads of
//! one process meet. An OOM event with a start time of 0 (old kernels give only a pid) is
//! matched to the next exit of its tgid.
//!
//! An OOM kill whose exit never comes (lost, or the victim stuck) is dropped after
//! `oom_exit_wait` and counted in [`CorrelatorStats::oom_kills_without_exit`]: no record is
//! made up. Nothing is dropped silently: every event that does not end up in a record is
//! counted in [`CorrelatorStats`].

mod assemble;
mod cause;
mod clock;
mod config;
mod errno;
mod exec;
mod oom;
mod oom_counts;
mod pending;
mod signals;
mod verdict;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::mem;
use std::num::NonZeroUsize;

use agent_ebpf::{COMM_LEN, ExitEvent, KernelEvent, OomEvent, SignalEvent, c_str_bytes};
use lru::LruCache;

pub use self::cause::CAUSE_WINDOW_NS;
use self::cause::CauseTable;
pub use self::clock::{BootClock, boottime_ns, page_size};
pub use self::config::{
    Caps, ConfigError, CorrelatorConfig, CorrelatorStats, TableEvictions, TableSizes,
};
pub use self::errno::errno_name;
use self::exec::ExecFailureTable;
use self::oom::PendingOom;
pub use self::oom::decide_scope;
use self::pending::PendingExit;
use self::signals::SignalTable;
pub use self::verdict::{Death, SenderPlace, VerdictInput, kernel_raised, reason, sender_kind};
use crate::cgroup::CgroupInfo;
use crate::record::{OomScope, TerminationRecord};

/// The questions the correlator asks about cgroups; implemented over the cgroup resolver.
pub trait CgroupLookup {
    /// What a memory cgroup id stands for; `None` when it cannot be resolved.
    fn info(&mut self, memcg_id: u64) -> Option<CgroupInfo>;
    /// A memory cgroup's peak usage and limit, read now.
    fn memory(&mut self, path: &str) -> MemoryReading;
    /// The scope of an OOM kill as its kernel stack tells it; `None` when the stack cannot
    /// be read, and then the memcg chain sampled at the kill decides.
    fn oom_scope(&mut self, stack: &[u64]) -> Option<OomScope> {
        let _ = stack;
        None
    }
    /// Whether the memory cgroup was made after the agent started watching: its OOM counter
    /// began at 0 then, and every OOM kill in it since was seen.
    fn created_while_watched(&mut self, memcg_id: u64) -> bool {
        let _ = memcg_id;
        false
    }
}

/// A memory cgroup's peak usage and limit; `None` where unknown or unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReading {
    pub peak_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
}

/// One process: pids are reused, a pid and its start time are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub tgid: u32,
    pub start_boottime_ns: u64,
}

impl ProcessKey {
    #[must_use]
    pub const fn new(tgid: u32, start_boottime_ns: u64) -> Self {
        Self {
            tgid,
            start_boottime_ns,
        }
    }

    /// The key an OOM event has when the kernel could not say when its victim started.
    const fn without_start(self) -> Self {
        Self::new(self.tgid, 0)
    }
}

pub(crate) fn comm_string(comm: &[u8; COMM_LEN]) -> String {
    String::from_utf8_lossy(c_str_bytes(comm)).into_owned()
}

/// Kernel events in, termination records out. See the module documentation.
pub struct Correlator {
    node: String,
    page_size: u64,
    clock: BootClock,
    hold_ns: u64,
    oom_exit_wait_ns: u64,
    signals: SignalTable,
    exec_failures: ExecFailureTable,
    oom_victims: LruCache<ProcessKey, PendingOom>,
    /// The memcgs' own OOM counters as the last kill showed them.
    oom_counts: oom_counts::OomCounts,
    pending: BinaryHeap<Reverse<PendingExit>>,
    pending_cap: NonZeroUsize,
    /// Deaths handled (recorded or not), with their kernel time, to spot duplicates and
    /// events that arrive after their process's record was final.
    finished: LruCache<ProcessKey, u64>,
    /// Children's recent deaths per container, for their init's `cause`.
    causes: CauseTable,
    /// Records made while ingesting (a full table forced them out), handed out next drain.
    ready: Vec<TerminationRecord>,
    seq: u64,
    stats: CorrelatorStats,
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Correlator {
    pub fn new(config: CorrelatorConfig) -> Result<Self, ConfigError> {
        if !config.page_size.is_power_of_two() {
            return Err(ConfigError::PageSize(config.page_size));
        }
        let caps = config.caps;
        Ok(Self {
            signals: SignalTable::new(
                config::cap(caps.signal_histories, "signal_histories")?,
                nanos(config.signal_ttl),
            ),
            exec_failures: ExecFailureTable::new(config::cap(
                caps.exec_failure_memcgs,
                "exec_failure_memcgs",
            )?),
            oom_victims: LruCache::new(config::cap(caps.oom_victims, "oom_victims")?),
            oom_counts: oom_counts::OomCounts::default(),
            pending: BinaryHeap::new(),
            pending_cap: config::cap(caps.pending_exits, "pending_exits")?,
            finished: LruCache::new(config::cap(caps.finished, "finished")?),
            causes: CauseTable::new(config::cap(caps.cause_memcgs, "cause_memcgs")?),
            ready: Vec::new(),
            seq: 0,
            stats: CorrelatorStats::default(),
            hold_ns: nanos(config.hold),
            oom_exit_wait_ns: nanos(config.oom_exit_wait),
            node: config.node,
            page_size: config.page_size,
            clock: config.clock,
        })
    }

    /// Replaces the boot-time → wall-clock offset (after the real-time clock was stepped).
    pub fn set_clock(&mut self, clock: BootClock) {
        self.clock = clock;
    }

    #[must_use]
    pub fn stats(&self) -> CorrelatorStats {
        let mut stats = self.stats;
        stats.evictions.signal_histories = self.signals.evicted;
        stats.signal_histories_expired = self.signals.expired;
        stats.evictions.exec_failure_memcgs = self.exec_failures.evicted;
        stats.evictions.cause_memcgs = self.causes.evicted;
        stats
    }

    #[must_use]
    pub fn sizes(&self) -> TableSizes {
        TableSizes {
            signal_histories: self.signals.len(),
            pending_exits: self.pending.len(),
            oom_victims: self.oom_victims.len(),
            exec_failure_memcgs: self.exec_failures.len(),
            finished: self.finished.len(),
            cause_memcgs: self.causes.len(),
        }
    }

    pub fn ingest(&mut self, event: &KernelEvent, cgroups: &mut impl CgroupLookup) {
        match event {
            KernelEvent::Exit(exit) => self.on_exit(exit, cgroups),
            KernelEvent::Signal(signal) => self.on_signal(signal),
            KernelEvent::Oom(oom) => self.on_oom(oom, cgroups),
            // Cgroup creation feeds the resolver, not the correlator.
            KernelEvent::CgroupMkdir(_) => {}
            KernelEvent::ExecFailure(failure) => {
                if !self.exec_failures.note(failure) {
                    self.stats.malformed_events += 1;
                }
            }
        }
    }

    /// When [`Self::drain_ready`] next has a record to give (`CLOCK_BOOTTIME` ns): now when
    /// one is ready, else the earliest end of a hold; `None` when no exit is waiting. OOM
    /// kills waiting for their exit are left to the caller's regular tick (their wait is
    /// seconds).
    #[must_use]
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if !self.ready.is_empty() {
            return Some(0);
        }
        self.pending.peek().map(|Reverse(p)| p.deadline_ns)
    }

    /// The records whose hold is over at `now_boot_ns` (`CLOCK_BOOTTIME`), plus those of OOM
    /// kills whose exit did not come in time. O(1) when nothing is due.
    pub fn drain_ready(
        &mut self,
        now_boot_ns: u64,
        cgroups: &mut impl CgroupLookup,
    ) -> Vec<TerminationRecord> {
        let mut out = mem::take(&mut self.ready);
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(p)| p.deadline_ns <= now_boot_ns)
        {
            let Some(Reverse(pending)) = self.pending.pop() else {
                break;
            };
            out.extend(self.finalize(pending, cgroups));
        }
        while let Some((_, oom)) = self.oom_victims.peek_lru() {
            if oom.ktime_ns.saturating_add(self.oom_exit_wait_ns) > now_boot_ns {
                break;
            }
            let Some((key, oom)) = self.oom_victims.pop_lru() else {
                break;
            };
            self.oom_kill_without_exit(key, &oom);
        }
        self.signals.expire(now_boot_ns);
        out
    }

    /// Everything still waiting, as records now: for shutdown.
    pub fn flush(&mut self, cgroups: &mut impl CgroupLookup) -> Vec<TerminationRecord> {
        let mut out = mem::take(&mut self.ready);
        while let Some(Reverse(pending)) = self.pending.pop() {
            out.extend(self.finalize(pending, cgroups));
        }
        while let Some((key, oom)) = self.oom_victims.pop_lru() {
            self.oom_kill_without_exit(key, &oom);
        }
        out
    }

    fn on_signal(&mut self, signal: &SignalEvent) {
        let key = ProcessKey::new(signal.target_tgid, signal.target_start_boottime_ns);
        if let Some(&died_ns) = self.finished.peek(&key) {
            // After the death it is a signal to a zombie, harmless; before, it came too late.
            if signal.header.ktime_ns <= died_ns {
                self.stats.late_events += 1;
            }
            return;
        }
        if !self.signals.note(signal) {
            self.stats.malformed_events += 1;
        }
    }

    fn on_oom(&mut self, event: &OomEvent, cgroups: &mut impl CgroupLookup) {
        let key = ProcessKey::new(event.victim_tgid, event.victim_start_boottime_ns);
        if self.finished.contains(&key) {
            self.stats.late_events += 1;
            return;
        }
        if self.oom_victims.contains(&key) {
            self.stats.duplicates += 1;
            return;
        }
        let victim_cgroup = if event.victim_memcg_id == 0 {
            None
        } else if let Some(info) = cgroups.info(event.victim_memcg_id) {
            if info.container.is_none() {
                self.stats.oom_kills_not_recorded += 1;
                return;
            }
            Some(info)
        } else {
            self.stats.unresolved_memcgs += 1;
            None
        };
        let pending = PendingOom {
            ktime_ns: event.header.ktime_ns,
            victim_tgid: event.victim_tgid,
            victim_memcg_id: event.victim_memcg_id,
            victim_cgroup,
            victim_comm: event.victim_comm,
            kill: oom::assess(event, self.page_size, &mut self.oom_counts, cgroups),
        };
        if let Some((evicted_key, evicted)) = self.oom_victims.push(key, pending) {
            self.stats.evictions.oom_victims += 1;
            self.oom_kill_without_exit(evicted_key, &evicted);
        }
    }

    fn on_exit(&mut self, exit: &ExitEvent, cgroups: &mut impl CgroupLookup) {
        let key = ProcessKey::new(exit.tgid, exit.start_boottime_ns);
        if self.finished.contains(&key) {
            self.stats.duplicates += 1;
            return;
        }
        // Claimed now, so that its wait cannot run out while the exit is held.
        let oom = self
            .oom_victims
            .pop(&key)
            .or_else(|| self.oom_victims.pop(&key.without_start()));
        // Resolved now, not after the hold: the runtime removes a dead container's cgroup.
        // An unresolvable id may still be known from the OOM kill, resolved earlier.
        let cgroup = cgroups.info(exit.memcg_id).or_else(|| {
            oom.as_ref()
                .filter(|o| o.victim_memcg_id == exit.memcg_id)
                .and_then(|o| o.victim_cgroup.clone())
        });
        let Some(cgroup) = cgroup else {
            self.stats.unresolved_memcgs += 1;
            self.signals.take(&key);
            return;
        };
        if cgroup.container.is_none() {
            self.stats.deaths_outside_containers += 1;
            self.signals.take(&key);
            return;
        }
        self.seq += 1;
        self.pending.push(Reverse(PendingExit {
            deadline_ns: exit.header.ktime_ns.saturating_add(self.hold_ns),
            seq: self.seq,
            exit: *exit,
            cgroup,
            oom,
        }));
        if self.pending.len() > self.pending_cap.get()
            && let Some(Reverse(oldest)) = self.pending.pop()
        {
            self.stats.evictions.pending_exits += 1;
            let record = self.finalize(oldest, cgroups);
            self.ready.extend(record);
        }
    }
}
