//! The last few failed execs of each memory cgroup: a shell forks, the child's exec fails,
//! the child exits 127 and so does the shell; the failure names the missing command.

use std::num::NonZeroUsize;

use agent_ebpf::{ExecFailureEvent, PATH_LEN, c_str_bytes, exec_flags};
use lru::LruCache;

use super::errno::errno_name;
use crate::record::ExecFailure;

/// Kept per memcg. One would do if events arrived in time order; a few more keep the right
/// one when a later failure (after the death being assembled) overtakes it by a hair.
const PER_MEMCG: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ExecFailureSeen {
    pub ktime_ns: u64,
    pub pid: u32,
    /// The failing process's parent: a shell that forked it, or the runtime's shim.
    pub parent_tgid: u32,
    pub errno: i32,
    pub path: String,
}

impl ExecFailureSeen {
    pub fn to_record(&self) -> ExecFailure {
        ExecFailure {
            path: self.path.clone(),
            errno: errno_name(self.errno),
            pid: self.pid,
        }
    }
}

pub(super) struct ExecFailureTable {
    by_memcg: LruCache<u64, Vec<ExecFailureSeen>>,
    /// Memcgs whose failures were forgotten to make room.
    pub evicted: u64,
}

impl ExecFailureTable {
    pub fn new(cap: NonZeroUsize) -> Self {
        Self {
            by_memcg: LruCache::new(cap),
            evicted: 0,
        }
    }

    /// Remembers a failure; `false` for a malformed event (no positive errno). A later
    /// successful exec of the same process forgets its failures: `execvp` misses on every
    /// PATH directory before the one that has the program.
    pub fn note(&mut self, event: &ExecFailureEvent) -> bool {
        if event.flags & exec_flags::LATER_SUCCESS != 0 {
            if let Some(list) = self.by_memcg.peek_mut(&event.memcg_id) {
                list.retain(|s| s.pid != event.tgid);
            }
            return true;
        }
        if event.errno <= 0 {
            return false;
        }
        let len = (event.path_len as usize).min(PATH_LEN);
        let mut path = String::from_utf8_lossy(c_str_bytes(&event.path[..len])).into_owned();
        if event.path_len as usize >= PATH_LEN {
            // The kernel cut it: say so rather than show a wrong path as if whole.
            path.push_str("...");
        }
        let seen = ExecFailureSeen {
            ktime_ns: event.header.ktime_ns,
            pid: event.tgid,
            parent_tgid: event.parent_tgid,
            errno: event.errno,
            path,
        };
        if let Some(list) = self.by_memcg.get_mut(&event.memcg_id) {
            if list.len() >= PER_MEMCG
                && let Some((oldest, _)) = list.iter().enumerate().min_by_key(|(_, s)| s.ktime_ns)
            {
                list.swap_remove(oldest);
            }
            list.push(seen);
        } else if self.by_memcg.push(event.memcg_id, vec![seen]).is_some() {
            self.evicted += 1;
        }
        true
    }

    /// The last failure in `memcg_id` between a process's start and its death, by it or by a
    /// child it forked (a shell forks before it execs); not by another process of the
    /// container, such as a `kubectl exec` whose parent is the runtime.
    pub fn last_between(
        &self,
        memcg_id: u64,
        tgid: u32,
        from_ns: u64,
        to_ns: u64,
    ) -> Option<&ExecFailureSeen> {
        self.by_memcg
            .peek(&memcg_id)?
            .iter()
            .filter(|s| s.pid == tgid || s.parent_tgid == tgid)
            .filter(|s| (from_ns..=to_ns).contains(&s.ktime_ns))
            .max_by_key(|s| s.ktime_ns)
    }

    pub fn len(&self) -> usize {
        self.by_memcg.len()
    }
}
