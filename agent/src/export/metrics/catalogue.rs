//! Every counter the stages keep, and where it shows on `/metrics`: the one place a stats field
//! becomes a metric.
//!
//! Each stats struct is listed field by field with [`export!`], whose pattern is exhaustive: a
//! field added to a struct and not listed here does not compile. An entry names its family (and
//! label), and whether what it counts is a loss: losses are summed into
//! `coroner_events_lost_total{stage}` as well, so that metric is never kept apart from the
//! counters it is made of. Deaths and events that deliberately end in no record (outside
//! containers, a child's plain exit, duplicates, late events) have families of their own and no
//! stage.

use agent_ebpf::counter;

use super::collector::{KernelStageStats, ReaderStats, Samples};
use super::labels::{EventKind, FilteredKind, LossStage};
use crate::cgroup::{ResolverCacheSizes, ResolverStats};
use crate::correlate::{CorrelatorStats, TableEvictions, TableSizes};
use crate::pipeline::lookup::HostMemcgStats;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// A metric family: its name without the `coroner_` prefix (and, for counters, without the
/// `_total` the encoder adds), its help and type.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: Kind::Counter,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: Kind::Gauge,
    }
}

/// Where one stats field goes: a family (with at most one label), the loss stage it also
/// counts in, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub family: Option<&'static Family>,
    pub label: Option<(&'static str, &'static str)>,
    pub loss: Option<LossStage>,
}

impl Entry {
    const fn of(family: &'static Family) -> Self {
        Self {
            family: Some(family),
            label: None,
            loss: None,
        }
    }

    const fn by(family: &'static Family, key: &'static str, value: &'static str) -> Self {
        Self {
            family: Some(family),
            label: Some((key, value)),
            loss: None,
        }
    }

    /// Only in `coroner_events_lost_total{stage}`: for a stage that has this one cause.
    pub(super) const fn loss(stage: LossStage) -> Self {
        Self {
            family: None,
            label: None,
            loss: Some(stage),
        }
    }

    /// Also counted as lost at `stage`.
    const fn lost_at(self, stage: LossStage) -> Self {
        Self {
            loss: Some(stage),
            ..self
        }
    }
}

/// What a stats field is exported as: an [`Entry`] for a number, a function for a nested
/// stats struct.
pub(super) trait Export<V> {
    fn export(self, value: V, out: &mut Samples);
}

impl Export<u64> for Entry {
    fn export(self, value: u64, out: &mut Samples) {
        out.add(self, value);
    }
}

impl Export<usize> for Entry {
    fn export(self, value: usize, out: &mut Samples) {
        out.add(self, value as u64);
    }
}

impl Export<bool> for Entry {
    fn export(self, value: bool, out: &mut Samples) {
        out.add(self, u64::from(value));
    }
}

impl<V, F: FnOnce(V, &mut Samples)> Export<V> for F {
    fn export(self, value: V, out: &mut Samples) {
        self(value, out);
    }
}

/// `export!(out, stats, Struct { field => entry, … })`: every field of `stats`, each under its
/// entry; the pattern is exhaustive.
macro_rules! export {
    ($out:expr, $stats:expr, $ty:ident { $($field:ident => $entry:expr),+ $(,)? }) => {{
        let $ty { $($field),+ } = $stats;
        $( Export::export($entry, $field, $out); )+
    }};
}

mod kube;
pub(super) use kube::kube;

// The families. Names follow Prometheus' conventions: counters get `_total` from the encoder;
// a unit, where there is one, ends the name.

pub(super) static EVENTS_LOST: Family = counter(
    "events_lost",
    "Events dropped, by the stage that dropped them",
);
static EVENTS: Family = counter("events", "Kernel events handled by the agent");
static KERNEL_EVENTS_FILTERED: Family = counter(
    "kernel_events_filtered",
    "Kernel events the programs did not send to user space, as not needed",
);
static KERNEL_EVENTS_EMITTED: Family = counter(
    "kernel_events_emitted",
    "Events the programs put into the ring buffer",
);
static KERNEL_EVENTS_LOST: Family = counter(
    "kernel_events_lost",
    "Events the programs dropped because the ring buffer was full, by kind (in stage kernel)",
);
static KERNEL_EXEC_STASH_FULL: Family = counter(
    "kernel_exec_stash_full",
    "Failed execs the programs could not follow: the per-thread stash was full (in stage kernel)",
);
static READER_PARK_ERRORS: Family = counter(
    "reader_park_errors",
    "Failures to raise the ring buffer reader's park flag (the reader then polls on a timer)",
);
static DEATHS_OUTSIDE_CONTAINERS: Family = counter(
    "deaths_outside_containers",
    "Process deaths outside any container, counted but not recorded",
);
static DEATHS_WITHOUT_RECORD: Family = counter(
    "deaths_without_record",
    "Deaths in containers that need no record (a child's plain exit)",
);
static CORRELATOR_RECORDS: Family = counter(
    "correlator_records",
    "Termination records the correlator made, before labelling and the outputs",
);
static SENDERS_UNRESOLVED: Family = counter(
    "senders_unresolved",
    "Records whose sender's memory cgroup did not resolve: written with sender kind host",
);
static OOM_KILLS_WITHOUT_EXIT: Family = counter(
    "correlator_oom_kills_without_exit",
    "OOM kills whose victim's exit never came (lost, or the victim stuck): no record is made up",
);
static EXITS_WITHOUT_RECORD: Family = counter(
    "exits_without_record",
    "Clean exits the kernel kept to itself by the process's role: runtime helpers (runc's bootstrap) and exec sessions (exec probes, kubectl exec)",
);
static UNRECORDED_OOM_KILLS: Family = counter(
    "unrecorded_oom_kills",
    "OOM kills outside containers, or of a victim whose cgroup and exit both stayed unknown",
);
static DUPLICATE_EVENTS: Family = counter(
    "duplicate_events",
    "A second exit or OOM event for a process already handled, dropped",
);
static LATE_EVENTS: Family = counter(
    "late_events",
    "Signal or OOM events that came after their process's record was final, left out of it",
);
static MALFORMED_EVENTS: Family = counter(
    "malformed_events",
    "Events dropped for impossible values, e.g. a signal over 64 (in stage decode)",
);
static SIGNAL_HISTORIES_EXPIRED: Family = counter(
    "signal_histories_expired",
    "Signal histories dropped at their TTL: processes that outlived their signals",
);
static CORRELATOR_EVICTIONS: Family = counter(
    "correlator_evictions",
    "Entries a correlator table gave up to its cap (signal_histories, exec_failure_memcgs, cause_memcgs: in stage correlate)",
);
static CORRELATOR_TABLE_ENTRIES: Family = gauge(
    "correlator_table_entries",
    "Entries in each correlator table now",
);
static CGROUP_WALKS: Family = counter(
    "cgroup_walks",
    "Walks of the memory cgroup hierarchy, failed ones included",
);
static CGROUP_WALKS_TRUNCATED: Family = counter(
    "cgroup_walks_truncated",
    "Walks of the memory cgroup hierarchy that stopped at the directory or depth bound",
);
static CGROUP_WALKS_FAILED: Family = counter(
    "cgroup_walks_failed",
    "Walks that could not read the memory cgroup hierarchy's root",
);
static CGROUP_IDS_UNRESOLVED: Family = counter(
    "cgroup_ids_unresolved",
    "Memory cgroup id lookups that found nothing (deaths among them are in stage cgroup)",
);
static CGROUP_PATHS_UNMATCHED: Family = counter(
    "cgroup_paths_unmatched",
    "New cgroups whose path looks like a kubelet's but matches no known layout: not containers",
);
static CGROUP_CACHE_ENTRIES: Family = gauge(
    "cgroup_cache_entries",
    "Entries in the cgroup resolver's caches now",
);
static HOST_MEMCGS_MARKED: Family = counter(
    "host_memcgs_marked",
    "Memory cgroups outside containers handed to the kernel, whose events it drops from then on",
);
static HOST_MEMCG_MARK_FAILURES: Family = counter(
    "host_memcg_mark_failures",
    "Memory cgroups outside containers the kernel could not be told about",
);
const RING_FULL: LossStage = LossStage::Kernel;

/// The kernel's per-CPU counter slots, by `agent_ebpf::counter` index: the array's length is
/// the slot count, so a slot added there and not here does not compile.
pub(super) const KERNEL_SLOTS: [(u32, Entry); counter::COUNT as usize] = [
    (
        counter::LOST_EXIT,
        Entry::by(&KERNEL_EVENTS_LOST, "kind", EventKind::Exit.as_str()).lost_at(RING_FULL),
    ),
    (
        counter::LOST_SIGNAL,
        Entry::by(&KERNEL_EVENTS_LOST, "kind", EventKind::Signal.as_str()).lost_at(RING_FULL),
    ),
    (
        counter::LOST_OOM,
        Entry::by(&KERNEL_EVENTS_LOST, "kind", EventKind::Oom.as_str()).lost_at(RING_FULL),
    ),
    (
        counter::LOST_EXEC_FAILURE,
        Entry::by(&KERNEL_EVENTS_LOST, "kind", EventKind::ExecFailure.as_str()).lost_at(RING_FULL),
    ),
    (
        counter::EXIT_FILTERED,
        Entry::by(&KERNEL_EVENTS_FILTERED, "kind", FilteredKind::Exit.as_str()),
    ),
    (
        counter::SIGNAL_FILTERED,
        Entry::by(
            &KERNEL_EVENTS_FILTERED,
            "kind",
            FilteredKind::Signal.as_str(),
        ),
    ),
    (
        counter::EXEC_STASH_FULL,
        Entry::of(&KERNEL_EXEC_STASH_FULL).lost_at(RING_FULL),
    ),
    (counter::EMITTED, Entry::of(&KERNEL_EVENTS_EMITTED)),
    // Also in EXIT_FILTERED: the deaths outside containers the kernel kept to itself.
    (counter::EXIT_HOST, Entry::of(&DEATHS_OUTSIDE_CONTAINERS)),
    (
        counter::LOST_CGROUP_MKDIR,
        Entry::by(&KERNEL_EVENTS_LOST, "kind", EventKind::CgroupMkdir.as_str()).lost_at(RING_FULL),
    ),
    // Also in EXIT_FILTERED.
    (
        counter::EXIT_RUNTIME,
        Entry::by(&EXITS_WITHOUT_RECORD, "role", "runtime"),
    ),
    (
        counter::EXIT_EXEC,
        Entry::by(&EXITS_WITHOUT_RECORD, "role", "exec"),
    ),
];

/// Everything the kernel stage keeps.
pub(super) fn kernel_stage(stats: &KernelStageStats, out: &mut Samples) {
    export!(out, *stats, KernelStageStats {
        kernel => |kernel: super::KernelCounters, out: &mut Samples| {
            for (slot, entry) in KERNEL_SLOTS {
                out.add(entry, kernel.slot(slot));
            }
        },
        events => |events: super::collector::EventCounts, out: &mut Samples| {
            for kind in EventKind::ALL {
                out.add(Entry::by(&EVENTS, "kind", kind.as_str()), events.get(kind));
            }
        },
        reader => export_reader,
        correlator => export_correlator,
        tables => export_tables,
        resolver => export_resolver,
        resolver_cache => export_resolver_cache,
        host_memcgs => export_host_memcgs,
    });
}

fn export_reader(stats: ReaderStats, out: &mut Samples) {
    export!(out, stats, ReaderStats {
        undecodable => Entry::loss(LossStage::Decode),
        park_errors => Entry::of(&READER_PARK_ERRORS),
    });
}

fn export_correlator(stats: CorrelatorStats, out: &mut Samples) {
    export!(out, stats, CorrelatorStats {
        records => Entry::of(&CORRELATOR_RECORDS),
        deaths_outside_containers => Entry::of(&DEATHS_OUTSIDE_CONTAINERS),
        deaths_without_record => Entry::of(&DEATHS_WITHOUT_RECORD),
        unresolved_memcgs => Entry::loss(LossStage::Cgroup),
        unresolved_senders => Entry::of(&SENDERS_UNRESOLVED),
        oom_kills_without_exit => Entry::of(&OOM_KILLS_WITHOUT_EXIT),
        oom_kills_not_recorded => Entry::of(&UNRECORDED_OOM_KILLS),
        duplicates => Entry::of(&DUPLICATE_EVENTS),
        late_events => Entry::of(&LATE_EVENTS),
        malformed_events => Entry::of(&MALFORMED_EVENTS).lost_at(LossStage::Decode),
        signal_histories_expired => Entry::of(&SIGNAL_HISTORIES_EXPIRED),
        evictions => export_evictions,
    });
}

fn export_evictions(stats: TableEvictions, out: &mut Samples) {
    let table = |name| Entry::by(&CORRELATOR_EVICTIONS, "table", name);
    export!(out, stats, TableEvictions {
        // A history or exec failure evicted is information lost; the other evictions only
        // finalise a record early.
        signal_histories => table("signal_histories").lost_at(LossStage::Correlate),
        pending_exits => table("pending_exits"),
        oom_victims => table("oom_victims"),
        exec_failure_memcgs => table("exec_failure_memcgs").lost_at(LossStage::Correlate),
        finished => table("finished"),
        // A container's children's deaths forgotten: its init's record may lack its cause.
        cause_memcgs => table("cause_memcgs").lost_at(LossStage::Correlate),
    });
}

fn export_tables(stats: TableSizes, out: &mut Samples) {
    let table = |name| Entry::by(&CORRELATOR_TABLE_ENTRIES, "table", name);
    export!(out, stats, TableSizes {
        signal_histories => table("signal_histories"),
        pending_exits => table("pending_exits"),
        oom_victims => table("oom_victims"),
        exec_failure_memcgs => table("exec_failure_memcgs"),
        finished => table("finished"),
        cause_memcgs => table("cause_memcgs"),
    });
}

fn export_resolver(stats: ResolverStats, out: &mut Samples) {
    export!(out, stats, ResolverStats {
        walks => Entry::of(&CGROUP_WALKS),
        truncated_walks => Entry::of(&CGROUP_WALKS_TRUNCATED),
        failed_walks => Entry::of(&CGROUP_WALKS_FAILED),
        unknown_ids => Entry::of(&CGROUP_IDS_UNRESOLVED),
        unmatched_kubepods => Entry::of(&CGROUP_PATHS_UNMATCHED),
    });
}

fn export_resolver_cache(stats: ResolverCacheSizes, out: &mut Samples) {
    let cache = |name| Entry::by(&CGROUP_CACHE_ENTRIES, "cache", name);
    export!(out, stats, ResolverCacheSizes {
        cgroups => cache("cgroups"),
        unknown_ids => cache("unknown_ids"),
        warned_prefixes => cache("warned_prefixes"),
    });
}

fn export_host_memcgs(stats: HostMemcgStats, out: &mut Samples) {
    export!(out, stats, HostMemcgStats {
        marked => Entry::of(&HOST_MEMCGS_MARKED),
        mark_failures => Entry::of(&HOST_MEMCG_MARK_FAILURES),
    });
}
