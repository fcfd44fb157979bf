//! Exits waiting out the reorder hold, and how a finished death becomes a record (or a
//! counter).

use std::cmp::Ordering;

use agent_ebpf::{ExitEvent, exit_flags};

use super::assemble::{Assembler, Evidence, Victim};
use super::oom::PendingOom;
use super::verdict::{Death, sig};
use super::{CgroupLookup, Correlator, ProcessKey, comm_string};
use crate::cgroup::CgroupInfo;
use crate::record::TerminationRecord;

/// An exit waiting out the reorder hold.
pub(super) struct PendingExit {
    pub deadline_ns: u64,
    /// Arrival order, to break deadline ties deterministically.
    pub seq: u64,
    pub exit: ExitEvent,
    pub cgroup: CgroupInfo,
    pub oom: Option<PendingOom>,
}

impl PendingExit {
    fn key(&self) -> ProcessKey {
        ProcessKey::new(self.exit.tgid, self.exit.start_boottime_ns)
    }
}

impl PartialEq for PendingExit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for PendingExit {}
impl PartialOrd for PendingExit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PendingExit {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline_ns, self.seq).cmp(&(other.deadline_ns, other.seq))
    }
}

impl Correlator {
    /// Marks a death handled; `false` when it already was.
    pub(super) fn finish(&mut self, key: ProcessKey, died_ns: u64) -> bool {
        if self.finished.contains(&key) {
            self.stats.duplicates += 1;
            return false;
        }
        if self.finished.push(key, died_ns).is_some() {
            self.stats.evictions.finished += 1;
        }
        true
    }

    pub(super) fn finalize(
        &mut self,
        pending: PendingExit,
        cgroups: &mut impl CgroupLookup,
    ) -> Option<TerminationRecord> {
        let key = pending.key();
        let exit = &pending.exit;
        let died_ns = exit.header.ktime_ns;
        if !self.finish(key, died_ns) {
            return None;
        }
        let oom = pending
            .oom
            .or_else(|| self.oom_victims.pop(&key))
            .or_else(|| self.oom_victims.pop(&key.without_start()));
        let history = self.signals.take(&key);
        let death = Death::from_exit_code(exit.exit_code);
        let main_process = exit.flags & exit_flags::PARENT_OUTSIDE != 0;
        if !main_process && oom.is_none() && death.signal().is_none() {
            self.stats.deaths_without_record += 1;
            return None;
        }
        let victim = Victim {
            key,
            ppid: exit.parent_tgid,
            comm: comm_string(&exit.comm),
            main_process,
            memcg_id: exit.memcg_id,
            cgroup: &pending.cgroup,
            death,
            died_ns,
            peak_rss_bytes: exit.maxrss_pages.saturating_mul(self.page_size),
        };
        let exec_failure = self.exec_failures.last_between(
            exit.memcg_id,
            exit.tgid,
            exit.start_boottime_ns,
            died_ns,
        );
        let evidence = Evidence {
            oom: oom.as_ref(),
            signals: history.as_ref(),
            exec_failure,
        };
        let record = Assembler {
            node: &self.node,
            clock: self.clock,
            cgroups,
            unresolved: &mut self.stats.unresolved_senders,
        }
        .record(&victim, evidence);
        self.stats.records += 1;
        Some(record)
    }

    pub(super) fn record_without_exit(
        &mut self,
        key: ProcessKey,
        oom: &PendingOom,
        cgroups: &mut impl CgroupLookup,
    ) -> Option<TerminationRecord> {
        let Some(cgroup) = oom.victim_cgroup.as_ref() else {
            tracing::warn!(
                pid = key.tgid,
                "OOM victim without exit nor known cgroup: not recorded"
            );
            self.stats.oom_kills_not_recorded += 1;
            return None;
        };
        if !self.finish(key, oom.ktime_ns) {
            return None;
        }
        tracing::warn!(pid = key.tgid, cgroup = %cgroup.path, "OOM victim's exit never came: recorded without it");
        let history = self.signals.take(&key);
        let victim = Victim {
            key,
            ppid: 0,
            comm: comm_string(&oom.victim_comm),
            main_process: false,
            memcg_id: oom.victim_memcg_id,
            cgroup,
            death: Death::Signaled {
                signal: sig::SIGKILL,
                core_dumped: false,
            },
            died_ns: oom.ktime_ns,
            peak_rss_bytes: oom.kill.victim_rss_bytes,
        };
        let exec_failure = self.exec_failures.last_between(
            oom.victim_memcg_id,
            key.tgid,
            key.start_boottime_ns,
            oom.ktime_ns,
        );
        let evidence = Evidence {
            oom: Some(oom),
            signals: history.as_ref(),
            exec_failure,
        };
        let record = Assembler {
            node: &self.node,
            clock: self.clock,
            cgroups,
            unresolved: &mut self.stats.unresolved_senders,
        }
        .record(&victim, evidence);
        self.stats.records += 1;
        self.stats.oom_records_without_exit += 1;
        Some(record)
    }
}
