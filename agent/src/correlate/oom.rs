//! OOM kills: which scope (a memory cgroup's limit, or the whole node), which limit, and the
//! victim's size at the kill.

use agent_ebpf::{COMM_LEN, MEMCG_CHAIN_LEN, MemcgSample, OOM_STACK_DEPTH, OomEvent, oom_flags};

use super::oom_counts::{Counted, OomCounts};
use super::{CgroupLookup, comm_string};
use crate::cgroup::CgroupInfo;
use crate::record::{OomKill, OomScope};

/// The smallest distance from its limit at which a memcg is taken to have hit it: one charge
/// batch (`MEMCG_CHARGE_BATCH`, 64 pages = 256 KiB with 4 KiB pages). Why the usage sampled
/// at `mark_victim` is that close: the memcg OOM killer only runs for a charge of at most
/// `PAGE_ALLOC_COSTLY_ORDER` (8 pages) that failed after reclaim, so usage was within 32 KiB
/// of the limit; what it may have drifted since is what other CPUs uncharged meanwhile and
/// their per-CPU charge stocks, each at most a batch.
const MIN_MARGIN_BYTES: u64 = 256 << 10;
/// For large limits the drift scales with the activity of the group: 1% of the limit, which
/// stays far below the headroom of an ancestor that did not hit its own limit in practice
/// (a pod limit is the sum of its containers' limits, and a `QoS` or node-level parent has
/// the node's allocatable, gigabytes away).
const MARGIN_PERCENT: u64 = 1;

/// A victim the OOM killer chose, waiting for its exit.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PendingOom {
    pub ktime_ns: u64,
    pub victim_tgid: u32,
    pub victim_memcg_id: u64,
    /// The victim's cgroup resolved at the kill; `None` when the kernel did not name it (old
    /// kernels give only a pid) or it could not be resolved: the exit's decides then.
    pub victim_cgroup: Option<CgroupInfo>,
    pub victim_comm: [u8; COMM_LEN],
    pub kill: OomKill,
}

/// `PAGE_COUNTER_MAX` is `LONG_MAX / PAGE_SIZE`: a max at or above it is "no limit".
fn unlimited(max_pages: u64, page_size: u64) -> bool {
    max_pages >= (i64::MAX as u64) / page_size.max(1)
}

/// Whether this memcg's usage at the kill was close enough to its limit to have hit it.
fn at_limit(sample: &MemcgSample, page_size: u64) -> bool {
    if unlimited(sample.max_pages, page_size) {
        return false;
    }
    let margin_pages =
        (sample.max_pages * MARGIN_PERCENT / 100).max(MIN_MARGIN_BYTES.div_ceil(page_size.max(1)));
    sample.usage_pages.saturating_add(margin_pages) >= sample.max_pages
}

/// The scope of an OOM kill and the memcg whose limit was hit. `given` is the verdict of the
/// kernel stack (when it could be symbolised). Without it the chain decides: the kernel
/// charges from the victim's memcg upwards and fails at the first counter over its max, so
/// the lowest memcg at its limit is the one that hit it; none at its limit → global.
#[must_use]
pub fn decide_scope(
    given: Option<OomScope>,
    chain: &[MemcgSample],
    page_size: u64,
) -> (OomScope, Option<MemcgSample>) {
    let hit = chain.iter().find(|s| at_limit(s, page_size)).copied();
    match given {
        Some(OomScope::Global) => (OomScope::Global, None),
        // The stack says a memcg hit its limit even if usage has drifted away since: name the
        // lowest memcg that has a limit at all.
        Some(OomScope::Memcg) => (
            OomScope::Memcg,
            hit.or_else(|| {
                chain
                    .iter()
                    .find(|s| !unlimited(s.max_pages, page_size))
                    .copied()
            }),
        ),
        None => match hit {
            Some(sample) => (OomScope::Memcg, Some(sample)),
            None => (OomScope::Global, None),
        },
    }
}

/// Everything about the kill that is known at `mark_victim`. The memcgs' own OOM counters
/// decide which limit was hit where they can; else the kernel stack (scope only) and the
/// usage near each limit.
pub(super) fn assess(
    event: &OomEvent,
    page_size: u64,
    counts: &mut OomCounts,
    cgroups: &mut impl CgroupLookup,
) -> OomKill {
    let chain_len = (event.memcg_chain_len as usize).min(MEMCG_CHAIN_LEN);
    let chain = &event.memcg_chain[..chain_len];
    let counted = counts.decide(chain, event.header.ktime_ns, |id| {
        cgroups.created_while_watched(id)
    });
    let (scope, limited) = match counted {
        Counted::Hit(i) => (OomScope::Memcg, Some(chain[i])),
        Counted::NoneHit => (OomScope::Global, None),
        Counted::Unknown => {
            let given = if event.flags & oom_flags::STACK != 0 {
                let frames = (event.stack_bytes as usize / 8).min(OOM_STACK_DEPTH);
                cgroups.oom_scope(&event.stack[..frames])
            } else {
                None
            };
            decide_scope(given, chain, page_size)
        }
    };
    let bytes = |pages: u64| pages.saturating_mul(page_size);
    // Unknown when the kernel could not read the victim's mm (it had none left, or a 5.x
    // victim that was already exiting got no SIGKILL to find it by).
    let rss = (event.flags & oom_flags::RSS_FROM_MM != 0).then(|| {
        (
            bytes(event.anon_rss_pages),
            bytes(event.file_rss_pages),
            bytes(event.shmem_rss_pages),
        )
    });
    OomKill {
        scope,
        victim_rss_bytes: rss
            .map(|(anon, file, shmem)| anon.saturating_add(file).saturating_add(shmem)),
        anon_rss_bytes: rss.map(|r| r.0),
        file_rss_bytes: rss.map(|r| r.1),
        shmem_rss_bytes: rss.map(|r| r.2),
        memory_limit_bytes: limited.map(|s| bytes(s.max_pages)),
        limit_cgroup: limited
            .and_then(|s| cgroups.info(s.id))
            .map(|info| info.path),
        trigger_pid: event.trigger_tgid,
        trigger_comm: comm_string(&event.trigger_comm),
        oom_score_adj: event.oom_score_adj,
    }
}
