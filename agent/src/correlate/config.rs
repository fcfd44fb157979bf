//! The correlator's knobs and counters.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::clock::BootClock;

/// How many entries each table may hold. Every table is bounded; what a full one does is
/// counted in [`TableEvictions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Processes with a signal history (sent a SIGTERM or a fatal signal, not yet dead).
    pub signal_histories: usize,
    /// Exits waiting out the reorder hold. A full table finalises its oldest exit early.
    pub pending_exits: usize,
    /// OOM victims waiting for their exit. A full table drops its oldest (counted).
    pub oom_victims: usize,
    /// Memory cgroups with remembered exec failures.
    pub exec_failure_memcgs: usize,
    /// Deaths already handled, to drop duplicates and late events.
    pub finished: usize,
    /// Containers (memory cgroups) with recent deaths of children that may explain their
    /// init's exit (`cause`).
    pub cause_memcgs: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            signal_histories: 16_384,
            pending_exits: 16_384,
            oom_victims: 4_096,
            exec_failure_memcgs: 4_096,
            finished: 65_536,
            cause_memcgs: 4_096,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CorrelatorConfig {
    /// `node` of every record.
    pub node: String,
    /// Bytes per page, the unit of the kernel's RSS and memcg counters.
    pub page_size: u64,
    /// Boot time → wall clock; refresh with [`super::Correlator::set_clock`].
    pub clock: BootClock,
    /// How long after its kernel timestamp an exit waits for events that were generated
    /// before it on another CPU but consumed after it. The ring buffer is read in reservation
    /// order, and an event's timestamp is taken microseconds before its reservation, so a
    /// quarter of a millisecond covers the reordering with a wide margin (the programs run with
    /// preemption off, and causally related events — a signal and the exit it causes, an OOM
    /// kill and its victim's exit — are reserved in order anyway) and leaves room in the
    /// latency budget: p99 ≤ 1 ms from the exit to the record written.
    pub hold: Duration,
    /// How long an OOM victim's exit is awaited before the kill is dropped (counted). A killed
    /// task normally exits within milliseconds; one stuck in uninterruptible sleep can take
    /// much longer, and its exit, if it comes later, makes a record without the `oom` object.
    pub oom_exit_wait: Duration,
    /// How long a signal history is kept untouched: longer than any grace period worth
    /// timing (`terminationGracePeriodSeconds` is 30 s by default, rarely over an hour).
    pub signal_ttl: Duration,
    pub caps: Caps,
}

impl CorrelatorConfig {
    /// Defaults for everything but what must come from the machine.
    #[must_use]
    pub fn new(node: impl Into<String>, page_size: u64, clock: BootClock) -> Self {
        Self {
            node: node.into(),
            page_size,
            clock,
            hold: Duration::from_micros(250),
            oom_exit_wait: Duration::from_secs(30),
            signal_ttl: Duration::from_hours(2),
            caps: Caps::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("page size {0} is not a power of two")]
    PageSize(u64),
    #[error("the cap of table `{0}` is zero")]
    ZeroCap(&'static str),
}

pub(super) fn cap(value: usize, table: &'static str) -> Result<NonZeroUsize, ConfigError> {
    NonZeroUsize::new(value).ok_or(ConfigError::ZeroCap(table))
}

/// Entries a table lost to its cap (not to their natural end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableEvictions {
    pub signal_histories: u64,
    /// Exits finalised before their hold was over (their record may miss a straggler).
    pub pending_exits: u64,
    /// OOM victims dropped before their exit could arrive.
    pub oom_victims: u64,
    pub exec_failure_memcgs: u64,
    /// Finished deaths forgotten: a duplicate of one of them would not be recognised.
    pub finished: u64,
    /// Containers whose children's recent deaths were forgotten: their init's record may lack
    /// its `cause`.
    pub cause_memcgs: u64,
}

/// Counters for metrics: everything the correlator decided not to record, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorrelatorStats {
    pub records: u64,
    /// Deaths of processes whose memory cgroup is not a container's.
    pub deaths_outside_containers: u64,
    /// Deaths in containers that need no record (a child's plain `exit()`).
    pub deaths_without_record: u64,
    /// Memory cgroup ids the lookup could not resolve; a death in one is not recorded.
    pub unresolved_memcgs: u64,
    /// Senders whose memory cgroup could not be resolved: the record is written, with an
    /// empty sender cgroup and sender kind `host` — information missing, not a record lost.
    pub unresolved_senders: u64,
    /// OOM kills whose victim's exit never came (lost, or the victim stuck): not recorded.
    pub oom_kills_without_exit: u64,
    /// OOM kills outside containers, or whose victim's cgroup stayed unknown with no exit.
    pub oom_kills_not_recorded: u64,
    /// A second exit or OOM event for a process already handled.
    pub duplicates: u64,
    /// A signal or OOM event older than its process's exit, arriving after the record was
    /// final: it was generated more than `hold` before it was consumed.
    pub late_events: u64,
    /// Events with impossible values (a signal number over 64, an errno ≤ 0).
    pub malformed_events: u64,
    /// Signal histories dropped at their TTL (normal: processes that survived a SIGTERM).
    pub signal_histories_expired: u64,
    pub evictions: TableEvictions,
}

/// How full each table is now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    pub signal_histories: usize,
    pub pending_exits: usize,
    pub oom_victims: usize,
    pub exec_failure_memcgs: usize,
    pub finished: usize,
    pub cause_memcgs: usize,
}
