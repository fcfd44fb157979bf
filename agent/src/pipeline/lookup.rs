//! The correlator's questions about cgroups, answered by the resolver — and the answers fed
//! back to the kernel: a memory cgroup found to be outside every container goes into
//! `HOST_MEMCGS`, so the programs drop its events from then on.
//!
//! Memory files are read through a [`MemoryReader`] (kept open, read at offset 0); inside a
//! [`ResolverLookup::batch`] each cgroup is read once.

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::cgroup::{CgroupInfo, CgroupResolver, MemoryReader};
use crate::correlate::{CgroupLookup, MemoryReading};
use crate::record::OomScope;

use super::kallsyms::OomSymbols;

/// Host memcgs handed to the kernel, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostMemcgStats {
    /// Written into `HOST_MEMCGS`: the kernel drops their events from then on.
    pub marked: u64,
    /// Writes that failed: their events keep crossing (and are counted as they cross).
    pub mark_failures: u64,
}

pub struct ResolverLookup {
    pub resolver: CgroupResolver,
    memory: MemoryReader,
    host_memcgs: Option<BpfHashMap<MapData, u64, u8>>,
    oom_symbols: Option<OomSymbols>,
    pub host_memcg_stats: HostMemcgStats,
}

impl ResolverLookup {
    #[must_use]
    pub fn new(
        resolver: CgroupResolver,
        host_memcgs: Option<BpfHashMap<MapData, u64, u8>>,
        oom_symbols: Option<OomSymbols>,
    ) -> Self {
        Self {
            memory: MemoryReader::new(resolver.hierarchy().clone()),
            resolver,
            host_memcgs,
            oom_symbols,
            host_memcg_stats: HostMemcgStats::default(),
        }
    }

    /// This lookup for one drain of the correlator: the records it writes come out together,
    /// after every death they describe, so one reading of a cgroup's peak and limit serves
    /// them all (hundreds of deaths in one container in a storm). Not for `ingest`, where a
    /// later event (an OOM kill) may still raise the peak.
    pub fn batch(&mut self) -> Batch<'_> {
        self.memory.begin_batch();
        Batch { lookup: self }
    }
}

/// A [`ResolverLookup`] that reads each memory cgroup at most once, until dropped.
#[must_use = "the batch ends when dropped"]
pub struct Batch<'a> {
    lookup: &'a mut ResolverLookup,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.lookup.memory.end_batch();
    }
}

impl CgroupLookup for Batch<'_> {
    fn info(&mut self, memcg_id: u64) -> Option<CgroupInfo> {
        self.lookup.info(memcg_id)
    }

    fn memory(&mut self, path: &str) -> MemoryReading {
        self.lookup.memory(path)
    }

    fn oom_scope(&mut self, stack: &[u64]) -> Option<OomScope> {
        self.lookup.oom_scope(stack)
    }

    fn created_while_watched(&mut self, memcg_id: u64) -> bool {
        self.lookup.created_while_watched(memcg_id)
    }
}

impl CgroupLookup for ResolverLookup {
    fn info(&mut self, memcg_id: u64) -> Option<CgroupInfo> {
        let info = self.resolver.resolve(memcg_id)?;
        // Ids are never reused (64-bit kernfs ids), so the classification is final. An event
        // from a host memcg reaching us means the kernel does not know it yet (or its LRU
        // forgot it): tell it.
        if info.container.is_none()
            && let Some(map) = self.host_memcgs.as_mut()
        {
            match map.insert(memcg_id, 1, 0) {
                Ok(()) => self.host_memcg_stats.marked += 1,
                Err(e) => {
                    if self.host_memcg_stats.mark_failures == 0 {
                        tracing::warn!(
                            "cannot tell the kernel about host memcg {memcg_id}: {e}; their events keep crossing (and are counted)"
                        );
                    }
                    self.host_memcg_stats.mark_failures += 1;
                }
            }
        }
        Some(info)
    }

    fn memory(&mut self, path: &str) -> MemoryReading {
        let m = self.memory.memory(path);
        MemoryReading {
            peak_bytes: m.peak_bytes,
            limit_bytes: m.limit_bytes,
        }
    }

    fn oom_scope(&mut self, stack: &[u64]) -> Option<OomScope> {
        self.oom_symbols.as_ref()?.scope(stack)
    }

    fn created_while_watched(&mut self, memcg_id: u64) -> bool {
        self.resolver.created_after_first_walk(memcg_id)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::cgroup::{CgroupVersion, MemoryHierarchy};

    #[test]
    fn a_batch_reads_each_cgroup_once_and_ends_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kubepods/pod1/c1");
        fs::create_dir_all(&dir).unwrap();
        let peak = |bytes: u64| fs::write(dir.join("memory.peak"), format!("{bytes}\n")).unwrap();
        fs::write(dir.join("memory.max"), "1048576\n").unwrap();
        peak(100);
        let hierarchy = MemoryHierarchy::new(tmp.path(), CgroupVersion::V2);
        let mut lookup = ResolverLookup::new(CgroupResolver::new(hierarchy), None, None);
        let rel = "/kubepods/pod1/c1";
        let reading = |peak: u64| MemoryReading {
            peak_bytes: Some(peak),
            limit_bytes: Some(1 << 20),
        };

        assert_eq!(lookup.memory(rel), reading(100));
        {
            let mut batch = lookup.batch();
            peak(200);
            assert_eq!(batch.memory(rel), reading(200));
            peak(300);
            assert_eq!(batch.memory(rel), reading(200), "one reading per batch");
        }
        assert_eq!(
            lookup.memory(rel),
            reading(300),
            "the batch ended with its guard"
        );
        peak(400);
        assert_eq!(lookup.batch().memory(rel), reading(400));
    }
}
