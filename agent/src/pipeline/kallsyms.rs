//! Telling a memcg OOM from a global one by the killing path: `mark_victim` runs under
//! `mem_cgroup_out_of_memory()` only when a memory cgroup hit its limit; a node-wide OOM
//! reaches `out_of_memory()` from the page allocator instead. The kernel programs send the
//! stack; this resolves it against `/proc/kallsyms`, read once at start-up.

use std::ops::Range;

use crate::record::OomScope;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomSymbols {
    memcg_oom: Range<u64>,
    out_of_memory: Range<u64>,
}

impl OomSymbols {
    /// `None` when kallsyms hides addresses (`kptr_restrict`) or lacks the functions: then the
    /// memcg chain sampled at the kill decides.
    #[must_use]
    pub fn load() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/kallsyms").ok()?)
    }

    /// Each function's range runs to the next symbol above its start.
    #[must_use]
    pub fn parse(kallsyms: &str) -> Option<Self> {
        let mut memcg_start = None;
        let mut oom_start = None;
        let mut addresses = Vec::new();
        for line in kallsyms.lines() {
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(_kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue;
            }
            match name {
                "mem_cgroup_out_of_memory" => memcg_start = Some(addr),
                "out_of_memory" => oom_start = Some(addr),
                _ => {}
            }
            addresses.push(addr);
        }
        let end_after = |start: u64| {
            addresses
                .iter()
                .copied()
                .filter(|&a| a > start)
                .min()
                .unwrap_or(start + 1)
        };
        let (memcg, oom) = (memcg_start?, oom_start?);
        Some(Self {
            memcg_oom: memcg..end_after(memcg),
            out_of_memory: oom..end_after(oom),
        })
    }

    /// Return addresses point just past a call: an address in a function's range means the
    /// kill ran under it.
    #[must_use]
    pub fn scope(&self, stack: &[u64]) -> Option<OomScope> {
        if stack.iter().any(|ip| self.memcg_oom.contains(ip)) {
            Some(OomScope::Memcg)
        } else if stack.iter().any(|ip| self.out_of_memory.contains(ip)) {
            Some(OomScope::Global)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "ffffffff81300000 T out_of_memory\nffffffff81300800 t oom_reaper\n\
        ffffffff81400000 T mem_cgroup_out_of_memory\nffffffff81400400 T mem_cgroup_oom_synchronize\n\
        ffffffff81000000 T _stext\n";

    #[test]
    fn memcg_path_wins_over_the_shared_out_of_memory() {
        let symbols = OomSymbols::parse(KALLSYMS).unwrap();
        // memcg OOM: mark_victim ← … ← out_of_memory ← mem_cgroup_out_of_memory
        assert_eq!(
            symbols.scope(&[0xffff_ffff_8130_0100, 0xffff_ffff_8140_0123]),
            Some(OomScope::Memcg)
        );
        // global OOM: … ← out_of_memory ← __alloc_pages_may_oom
        assert_eq!(
            symbols.scope(&[0xffff_ffff_8130_0100, 0xffff_ffff_8150_0000]),
            Some(OomScope::Global)
        );
        assert_eq!(
            symbols.scope(&[0xffff_ffff_8130_0900]),
            None,
            "past out_of_memory's end"
        );
        assert_eq!(symbols.scope(&[]), None);
    }

    #[test]
    fn hidden_addresses_give_no_answer() {
        let hidden =
            "0000000000000000 T out_of_memory\n0000000000000000 T mem_cgroup_out_of_memory\n";
        assert_eq!(OomSymbols::parse(hidden), None);
    }
}
