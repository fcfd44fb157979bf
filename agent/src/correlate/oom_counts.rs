//! Which memory cgroup of an OOM victim's chain hit its limit, counted rather than inferred.
//!
//! `mem_cgroup_oom` raises `memory_events_local[MEMCG_OOM]` of the memcg whose limit a charge
//! could not get under — that memcg alone, on cgroup v1 and v2 — before the OOM killer picks a
//! victim. The kernel programs sample that counter for each level of the victim's chain at
//! `mark_victim`; a level whose counter grew since this agent last saw it is the one that hit
//! its limit. Usage near the limit (the fallback) cannot tell a container close to its own
//! limit from the pod above it that hit the pod's; the counter can.
//!
//! A counter's previous value is known when an earlier kill showed it, when it is 0, or when
//! the memcg was made after the agent started watching (its counter began at 0 and every OOM
//! kill in it since was seen). Otherwise the level is unknown and, unless a known level grew,
//! the usage heuristic decides.

use std::num::NonZeroUsize;

use agent_ebpf::{MEMCG_CHAIN_LEN, MemcgSample};
use lru::LruCache;

/// memcgs whose counter is remembered: the chains of recent OOM kills (a handful of levels
/// each), enough for every container of a busy node.
const REMEMBERED: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");
/// A kill with no counter grown, in the memcg the previous kill hit with that same count, this
/// soon after it, is the same OOM: `memory.oom.group` kills the whole group, and the killer
/// may take several victims for one charge.
const SAME_OOM_NS: u64 = 5_000_000_000;

/// What the counters say about one kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// The chain's level at this index hit its limit.
    Hit(usize),
    /// No memcg of the (whole) chain hit its limit: the node ran out of memory.
    NoneHit,
    /// The counters cannot tell (the kernel has none, or a level's previous value is unknown).
    Unknown,
}

#[derive(Clone, Copy, Debug)]
struct LastHit {
    memcg_id: u64,
    count: u64,
    ktime_ns: u64,
}

pub struct OomCounts {
    last: LruCache<u64, u64>,
    last_hit: Option<LastHit>,
}

impl Default for OomCounts {
    fn default() -> Self {
        Self {
            last: LruCache::new(REMEMBERED),
            last_hit: None,
        }
    }
}

impl OomCounts {
    /// Decides for the kill sampled as `chain` (victim's memcg first) at `ktime_ns`, and
    /// remembers the counters. `created_while_watched` says whether a memcg was made after
    /// the agent started watching.
    pub fn decide(
        &mut self,
        chain: &[MemcgSample],
        ktime_ns: u64,
        mut created_while_watched: impl FnMut(u64) -> bool,
    ) -> Counted {
        if chain.is_empty()
            || chain
                .iter()
                .any(|s| s.oom_events == MemcgSample::OOM_EVENTS_UNKNOWN)
        {
            return Counted::Unknown;
        }
        let mut unknown = false;
        let mut hit = None;
        for (i, sample) in chain.iter().enumerate() {
            let before = self.last.get(&sample.id).copied().or_else(|| {
                (sample.oom_events == 0 || created_while_watched(sample.id)).then_some(0)
            });
            match before {
                Some(before) if sample.oom_events > before => {
                    hit = Some(i);
                    break;
                }
                Some(_) => {}
                None => unknown = true,
            }
        }
        let same_oom = || {
            let last = self.last_hit?;
            let i = chain.iter().position(|s| s.id == last.memcg_id)?;
            (chain[i].oom_events == last.count
                && ktime_ns.saturating_sub(last.ktime_ns) <= SAME_OOM_NS)
                .then_some(i)
        };
        let counted = match hit.or_else(same_oom) {
            Some(i) => Counted::Hit(i),
            // A full chain may stop below the memcg that hit its limit.
            None if unknown || chain.len() >= MEMCG_CHAIN_LEN => Counted::Unknown,
            None => Counted::NoneHit,
        };
        for sample in chain {
            self.last.put(sample.id, sample.oom_events);
        }
        if let Counted::Hit(i) = counted {
            self.last_hit = Some(LastHit {
                memcg_id: chain[i].id,
                count: chain[i].oom_events,
                ktime_ns,
            });
        }
        counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn level(id: u64, oom_events: u64) -> MemcgSample {
        MemcgSample {
            id,
            usage_pages: 0,
            max_pages: u64::MAX,
            oom_events,
        }
    }

    /// container 30 → pod 20 → `QoS` 10 → root 1.
    fn chain(container: u64, pod: u64, qos: u64) -> Vec<MemcgSample> {
        vec![
            level(30, container),
            level(20, pod),
            level(10, qos),
            level(1, 0),
        ]
    }

    #[test]
    fn the_level_whose_own_counter_grew_hit_its_limit() {
        let mut counts = OomCounts::default();
        let new = |id| id >= 20;
        // A new pod's limit: the container below it never hit its own.
        assert_eq!(counts.decide(&chain(0, 1, 0), SEC, new), Counted::Hit(1));
        // Later the container's own limit, the pod's counter unchanged.
        assert_eq!(
            counts.decide(&chain(1, 1, 0), 60 * SEC, new),
            Counted::Hit(0)
        );
        // Then nothing grew anywhere: a node-wide OOM.
        assert_eq!(
            counts.decide(&chain(1, 1, 0), 120 * SEC, new),
            Counted::NoneHit
        );
    }

    #[test]
    fn a_counter_seen_for_the_first_time_above_zero_is_unknown() {
        let mut counts = OomCounts::default();
        // The pod existed before the agent and had hit its limit then: this kill may or may
        // not be another one there.
        let before_agent = |_| false;
        assert_eq!(
            counts.decide(&chain(0, 3, 0), SEC, before_agent),
            Counted::Unknown
        );
        // Now its count is known: the next kill there is counted.
        assert_eq!(
            counts.decide(&chain(0, 4, 0), 90 * SEC, before_agent),
            Counted::Hit(1)
        );
    }

    #[test]
    fn a_known_level_that_grew_decides_even_with_unknown_levels_above() {
        let mut counts = OomCounts::default();
        let only_container_new = |id| id == 30;
        assert_eq!(
            counts.decide(&chain(1, 0, 7), SEC, only_container_new),
            Counted::Hit(0)
        );
    }

    #[test]
    fn more_victims_of_one_oom_are_the_same_hit() {
        let mut counts = OomCounts::default();
        let new = |_| true;
        assert_eq!(counts.decide(&chain(0, 1, 0), SEC, new), Counted::Hit(1));
        // memory.oom.group: a second victim, no counter grew.
        assert_eq!(
            counts.decide(&chain(0, 1, 0), SEC + SEC / 10, new),
            Counted::Hit(1)
        );
        // Much later, nothing grew: not that OOM any more.
        assert_eq!(
            counts.decide(&chain(0, 1, 0), 30 * SEC, new),
            Counted::NoneHit
        );
    }

    #[test]
    fn a_kernel_without_the_counter_leaves_it_to_the_usage() {
        let mut counts = OomCounts::default();
        let mut c = chain(0, 1, 0);
        c[2].oom_events = MemcgSample::OOM_EVENTS_UNKNOWN;
        assert_eq!(counts.decide(&c, SEC, |_| true), Counted::Unknown);
        assert_eq!(counts.decide(&[], SEC, |_| true), Counted::Unknown);
    }

    #[test]
    fn a_full_chain_without_growth_is_not_called_global() {
        let mut counts = OomCounts::default();
        let full: Vec<_> = (0..MEMCG_CHAIN_LEN as u64)
            .map(|i| level(100 + i, 0))
            .collect();
        assert_eq!(counts.decide(&full, SEC, |_| true), Counted::Unknown);
    }
}
