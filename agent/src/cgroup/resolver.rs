//! Memory cgroup id → [`CgroupInfo`], by walking the hierarchy on a miss and remembering.
//!
//! The kernel reports a task's memcg id after the task is gone, and the runtime may remove
//! the cgroup soon after, so everything a walk sees is kept (bounded, least recently seen
//! first out): a container's id resolves after its cgroup is gone if any walk saw it.

use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use lru::LruCache;
use tracing::{debug, warn};

use super::CgroupInfo;
use super::hierarchy::MemoryHierarchy;
use super::layout::{self, CgroupClass};
use super::walk::walk;

/// Cgroups remembered (live and gone). A Kubernetes node has a few thousand at most; a gone
/// one is needed only until its last records are made. Each costs ≈400 B (a path, a pod uid,
/// a container id): ≈6.5 MiB at the cap, reached by the bench's churn of short-lived pods
/// (at 65,536 it was 26 MiB, the agent's whole growth in a million-death soak).
pub const MAX_CACHED_CGROUPS: usize = 16_384;
/// Ids a walk did not find, remembered for [`NEGATIVE_TTL`].
pub const MAX_UNKNOWN_IDS: usize = 4_096;
/// How long an id a walk did not find stays unknown without walking again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// The least time between the end of one walk and the start of the next.
pub const MIN_WALK_INTERVAL: Duration = Duration::from_millis(200);
/// Distinct prefixes of unmatched kubepods-like paths warned about (least recent forgotten).
pub const MAX_WARNED_PREFIXES: usize = 128;
/// Cgroup paths deeper than this are not walked; kubelet layouts are ~8 levels.
const MAX_WALK_DEPTH: usize = 64;
/// Warned prefixes are cut to this many bytes, so the warned set stays small.
const MAX_PREFIX_BYTES: usize = 256;

/// The resolver's bounds; [`Default`] gives the named constants of this module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverLimits {
    pub max_cached_cgroups: NonZeroUsize,
    pub max_unknown_ids: NonZeroUsize,
    pub negative_ttl: Duration,
    pub min_walk_interval: Duration,
    pub max_warned_prefixes: NonZeroUsize,
    /// Directories one walk visits at most. No more than `max_cached_cgroups`, so that a
    /// walk never evicts what it has just seen.
    pub max_walk_dirs: NonZeroUsize,
}

impl Default for ResolverLimits {
    fn default() -> Self {
        let non_zero = |n| NonZeroUsize::new(n).expect("the resolver's bounds are non-zero");
        Self {
            max_cached_cgroups: non_zero(MAX_CACHED_CGROUPS),
            max_unknown_ids: non_zero(MAX_UNKNOWN_IDS),
            negative_ttl: NEGATIVE_TTL,
            min_walk_interval: MIN_WALK_INTERVAL,
            max_warned_prefixes: non_zero(MAX_WARNED_PREFIXES),
            max_walk_dirs: non_zero(MAX_CACHED_CGROUPS),
        }
    }
}

/// What the resolver has done, for the agent's metrics. All counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    /// Walks of the hierarchy (failed ones included).
    pub walks: u64,
    /// Walks that hit the directory or depth bound.
    pub truncated_walks: u64,
    /// Walks that could not even read the hierarchy root.
    pub failed_walks: u64,
    /// `resolve` calls that found nothing.
    pub unknown_ids: u64,
    /// Newly seen cgroups whose path looks like a kubelet layout but matches none.
    pub unmatched_kubepods: u64,
}

/// How full the resolver's caches are now, for the agent's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverCacheSizes {
    /// Cgroups remembered, live and gone; never more than `max_cached_cgroups`.
    pub cgroups: usize,
    /// Ids a walk did not find, remembered for the negative TTL.
    pub unknown_ids: usize,
    /// Prefixes of unmatched kubelet-like paths already warned about.
    pub warned_prefixes: usize,
}

/// Resolves memory cgroup ids. Synchronous: a miss may walk the hierarchy and, right after
/// another walk, sleep up to [`MIN_WALK_INTERVAL`]; call it where blocking is fine.
pub struct CgroupResolver {
    hierarchy: MemoryHierarchy,
    limits: ResolverLimits,
    index: Index,
    /// Ids not found by a walk → when that stops counting.
    unknown: LruCache<u64, Instant>,
    last_walk_end: Option<Instant>,
    /// The highest id seen. kernfs ids only grow, so an id below it was allocated before a
    /// cgroup already seen: it is gone (or raced a walk), and waiting for a walk is futile.
    newest_seen: u64,
    /// The highest id the first walk saw: a cgroup with a higher id was made after the agent
    /// started watching.
    newest_at_start: Option<u64>,
    warned_truncation: bool,
}

/// What walks saw: id → path and identity, and the warnings given about it.
struct Index {
    known: LruCache<u64, CgroupInfo>,
    /// Ids pushed out of `known` by newer ones (a churn of short-lived cgroups does that to a
    /// host cgroup seen only by the first walk). A miss on one says nothing about the cgroup
    /// being gone: it is walked for, not declared gone.
    evicted: LruCache<u64, ()>,
    warned: LruCache<Box<str>, ()>,
    stats: ResolverStats,
}

impl CgroupResolver {
    #[must_use]
    pub fn new(hierarchy: MemoryHierarchy) -> Self {
        Self::with_limits(hierarchy, ResolverLimits::default())
    }

    #[must_use]
    pub fn with_limits(hierarchy: MemoryHierarchy, mut limits: ResolverLimits) -> Self {
        limits.max_walk_dirs = limits.max_walk_dirs.min(limits.max_cached_cgroups);
        Self {
            hierarchy,
            index: Index {
                known: LruCache::sparse(limits.max_cached_cgroups),
                evicted: LruCache::sparse(limits.max_unknown_ids),
                warned: LruCache::sparse(limits.max_warned_prefixes),
                stats: ResolverStats::default(),
            },
            unknown: LruCache::sparse(limits.max_unknown_ids),
            limits,
            last_walk_end: None,
            newest_seen: 0,
            newest_at_start: None,
            warned_truncation: false,
        }
    }

    /// The cgroup of memcg id `memcg_id`: from the cache, else from a walk of the hierarchy.
    /// `None` when no walk has seen it, e.g. a cgroup made and removed between two walks.
    pub fn resolve(&mut self, memcg_id: u64) -> Option<CgroupInfo> {
        if let Some(info) = self.index.known.get(&memcg_id) {
            return Some(info.clone());
        }
        let now = Instant::now();
        if let Some(&until) = self.unknown.peek(&memcg_id) {
            if now < until {
                return self.not_found(memcg_id, now, false);
            }
            self.unknown.pop(&memcg_id);
        }
        if let Some(last) = self.last_walk_end {
            let since = now.saturating_duration_since(last);
            if since < self.limits.min_walk_interval {
                // Seen before and not pushed out of the cache: gone since.
                if memcg_id <= self.newest_seen && !self.index.evicted.contains(&memcg_id) {
                    return self.not_found(memcg_id, now, true);
                }
                // A cgroup newer than anything seen, so probably a fresh container that died
                // fast (command not found), or one the cache let go of: worth waiting for the
                // next walk.
                thread::sleep(self.limits.min_walk_interval.saturating_sub(since));
            }
        }
        self.index.evicted.pop(&memcg_id);
        if let Some(info) = self.walk_for(Some(memcg_id)) {
            return Some(info);
        }
        self.not_found(memcg_id, Instant::now(), true)
    }

    /// Walks the hierarchy now, whatever the cool-down, so that cgroups alive now resolve
    /// later without a walk even once they are gone: at start-up, or periodically.
    pub fn refresh(&mut self) {
        self.walk_for(None);
    }

    /// Records a cgroup the caller learnt of by other means (e.g. a `cgroup_mkdir` event),
    /// so that its id resolves without a walk. `path` is relative to the hierarchy root.
    pub fn note_created(&mut self, memcg_id: u64, path: &str) {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.index.record(memcg_id, &path);
        self.newest_seen = self.newest_seen.max(memcg_id);
        self.unknown.pop(&memcg_id);
    }

    /// Whether memcg `memcg_id` was made after the first walk (kernfs ids only grow); false
    /// before it.
    #[must_use]
    pub fn created_after_first_walk(&self, memcg_id: u64) -> bool {
        self.newest_at_start.is_some_and(|newest| memcg_id > newest)
    }

    #[must_use]
    pub fn hierarchy(&self) -> &MemoryHierarchy {
        &self.hierarchy
    }

    #[must_use]
    pub fn stats(&self) -> ResolverStats {
        self.index.stats
    }

    #[must_use]
    pub fn cache_sizes(&self) -> ResolverCacheSizes {
        ResolverCacheSizes {
            cgroups: self.cached_cgroups(),
            unknown_ids: self.unknown_ids(),
            warned_prefixes: self.warned_prefixes(),
        }
    }

    /// Cgroups remembered; never more than `max_cached_cgroups`.
    #[must_use]
    pub fn cached_cgroups(&self) -> usize {
        self.index.known.len()
    }

    /// Ids remembered as unknown; never more than `max_unknown_ids`.
    #[must_use]
    pub fn unknown_ids(&self) -> usize {
        self.unknown.len()
    }

    /// Prefixes of unmatched kubepods-like paths warned about; never more than
    /// `max_warned_prefixes`.
    #[must_use]
    pub fn warned_prefixes(&self) -> usize {
        self.index.warned.len()
    }

    fn not_found(&mut self, memcg_id: u64, now: Instant, remember: bool) -> Option<CgroupInfo> {
        self.index.stats.unknown_ids += 1;
        if remember {
            self.unknown.put(memcg_id, now + self.limits.negative_ttl);
        }
        None
    }

    /// Walks the whole hierarchy, indexing every directory; returns `target` if seen.
    fn walk_for(&mut self, target: Option<u64>) -> Option<CgroupInfo> {
        let started = Instant::now();
        let mut found = None;
        let mut newest = self.newest_seen;
        let index = &mut self.index;
        let result = walk(
            &self.hierarchy.root,
            self.limits.max_walk_dirs.get(),
            MAX_WALK_DEPTH,
            |id, rel| {
                let info = index.record(id, rel);
                if target == Some(id) {
                    found = Some(info.clone());
                }
                newest = newest.max(id);
            },
        );
        self.newest_seen = newest;
        self.newest_at_start.get_or_insert(newest);
        self.index.stats.walks += 1;
        self.last_walk_end = Some(Instant::now());
        match result {
            Ok(summary) => {
                debug!(dirs = summary.dirs, elapsed = ?started.elapsed(), "walked the memory cgroup hierarchy");
                if summary.truncated {
                    self.index.stats.truncated_walks += 1;
                    if !self.warned_truncation {
                        self.warned_truncation = true;
                        warn!(
                            root = %self.hierarchy.root.display(),
                            max_dirs = self.limits.max_walk_dirs,
                            max_depth = MAX_WALK_DEPTH,
                            "memory cgroup hierarchy larger than a walk covers; cgroups beyond it stay unresolved"
                        );
                    }
                }
            }
            Err(error) => {
                self.index.stats.failed_walks += 1;
                warn!(root = %self.hierarchy.root.display(), %error, "cannot walk the memory cgroup hierarchy");
            }
        }
        found
    }
}

impl Index {
    /// Remembers that `id` is the cgroup at `rel` (or refreshes it), and returns what it is.
    fn record(&mut self, id: u64, rel: &str) -> &CgroupInfo {
        // v1 cgroups can be renamed, so a known id is re-classified when its path changed.
        let unchanged = self.known.get(&id).is_some_and(|info| info.path == rel);
        if !unchanged {
            let analysis = layout::analyse(rel);
            if let Some(prefix) = analysis.mismatch {
                self.stats.unmatched_kubepods += 1;
                self.warn_unmatched(prefix, rel);
            }
            let container = match analysis.class {
                CgroupClass::Container(container) => Some(container),
                CgroupClass::Pod { .. } | CgroupClass::Host => None,
            };
            let info = CgroupInfo {
                path: rel.to_owned(),
                container,
            };
            if let Some((out, _)) = self.known.push(id, info)
                && out != id
            {
                self.evicted.put(out, ());
            }
            self.evicted.pop(&id);
        }
        self.known.peek(&id).expect("just looked up or inserted")
    }

    /// Warns once per prefix (while the prefix is remembered).
    fn warn_unmatched(&mut self, prefix: &str, path: &str) {
        let prefix = truncate(prefix, MAX_PREFIX_BYTES);
        if self.warned.get(prefix).is_some() {
            return;
        }
        self.warned.put(prefix.into(), ());
        warn!(
            path = truncate(path, 4 * MAX_PREFIX_BYTES),
            prefix,
            "cgroup path looks like a kubelet cgroup but matches no known layout; not treated as a container"
        );
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
