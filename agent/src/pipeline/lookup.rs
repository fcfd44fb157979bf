//! The correlator's questions about cgroups, answered by the resolver — and the answers fed
//! back to the kernel: a memory cgroup found to be outside every container goes into
//! `HOST_MEMCGS`, so the programs drop its events from then on.

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::cgroup::{CgroupInfo, CgroupResolver};
use crate::correlate::{CgroupLookup, MemoryReading};
use crate::record::OomScope;

use super::kallsyms::OomSymbols;

pub struct ResolverLookup {
    pub resolver: CgroupResolver,
    host_memcgs: Option<BpfHashMap<MapData, u64, u8>>,
    oom_symbols: Option<OomSymbols>,
    /// Host memcgs handed to the kernel (and failures to), for metrics.
    pub host_memcgs_marked: u64,
    pub host_memcg_mark_failures: u64,
}

impl ResolverLookup {
    #[must_use]
    pub fn new(
        resolver: CgroupResolver,
        host_memcgs: Option<BpfHashMap<MapData, u64, u8>>,
        oom_symbols: Option<OomSymbols>,
    ) -> Self {
        Self {
            resolver,
            host_memcgs,
            oom_symbols,
            host_memcgs_marked: 0,
            host_memcg_mark_failures: 0,
        }
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
                Ok(()) => self.host_memcgs_marked += 1,
                Err(e) => {
                    if self.host_memcg_mark_failures == 0 {
                        tracing::warn!(
                            "cannot tell the kernel about host memcg {memcg_id}: {e}; their events keep crossing (and are counted)"
                        );
                    }
                    self.host_memcg_mark_failures += 1;
                }
            }
        }
        Some(info)
    }

    fn memory(&mut self, path: &str) -> MemoryReading {
        let m = self.resolver.hierarchy().memory(path);
        MemoryReading {
            peak_bytes: m.peak_bytes,
            limit_bytes: m.limit_bytes,
        }
    }

    fn oom_scope(&mut self, stack: &[u64]) -> Option<OomScope> {
        self.oom_symbols.as_ref()?.scope(stack)
    }
}
