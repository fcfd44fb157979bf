//! Exits waiting out the reorder hold, and how a finished death becomes a record (or a
//! counter).

use std::cmp::Ordering;

use agent_ebpf::{ExitEvent, exit_flags, role};

use super::assemble::{Assembler, Evidence, Victim};
use super::cause::ChildDeath;
use super::oom::PendingOom;
use super::verdict::Death;
use super::{CgroupLookup, Correlator, ProcessKey, comm_string};
use crate::cgroup::CgroupInfo;
use crate::record::{Role, TerminationRecord};

/// The pod sandbox's process is the init of its own container: the pause image's `/pause`
/// (registry.k8s.io/pause, and the CRI runtimes' defaults).
const SANDBOX_COMM: &str = "pause";

/// Whether a failed exec's path is the pause image's entrypoint (`/pause`).
fn is_sandbox_command(path: &str) -> bool {
    path.rsplit('/').next() == Some(SANDBOX_COMM)
}

/// The role the kernel decided, in the record's terms.
fn role_of(exit: &ExitEvent, comm: &str) -> Role {
    match exit.role {
        role::INIT if comm == SANDBOX_COMM => Role::Sandbox,
        role::INIT => Role::Init,
        role::EXEC => Role::Exec,
        role::RUNTIME => Role::Runtime,
        // Unknown (no memory controller): a parent outside still means the runtime started it.
        role::UNKNOWN if exit.flags & exit_flags::PARENT_OUTSIDE != 0 => Role::Init,
        _ => Role::Child,
    }
}

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
        let comm = comm_string(&exit.comm);
        let start_failed = exit.flags & exit_flags::NO_EXEC != 0;
        let exec_failure = self.exec_failures.last_between(
            exit.memcg_id,
            exit.tgid,
            exit.start_boottime_ns,
            died_ns,
        );
        let mut role = role_of(exit, &comm);
        // A pod torn down while its sandbox was still becoming `/pause` (deleted as it
        // started): the runtime's SIGKILL cut the exec short, and only the exec's path says
        // what the process was to become.
        if role == Role::Init
            && start_failed
            && exec_failure.is_some_and(|f| f.pid == exit.tgid && is_sandbox_command(&f.path))
        {
            role = Role::Sandbox;
        }
        // Every death of an init (or the sandbox) is recorded; the others only when the OOM
        // killer or a signal ended them.
        let always = matches!(role, Role::Init | Role::Sandbox);
        if !always && oom.is_none() && death.signal().is_none() {
            self.stats.deaths_without_record += 1;
            return None;
        }
        let victim = Victim {
            key,
            ppid: exit.parent_tgid,
            comm,
            role,
            start_failed,
            memcg_id: exit.memcg_id,
            cgroup: &pending.cgroup,
            death,
            died_ns,
            peak_rss_bytes: exit.maxrss_pages.saturating_mul(self.page_size),
        };
        let evidence = Evidence {
            oom: oom.as_ref(),
            signals: history.as_ref(),
            exec_failure,
        };
        let mut record = Assembler {
            node: &self.node,
            clock: self.clock,
            cgroups,
            unresolved: &mut self.stats.unresolved_senders,
        }
        .record(&victim, evidence);
        // Records are made in the order of the deaths (see `cause`): a child's is noted before
        // its init's is assembled.
        match role {
            Role::Child => {
                if let Some(death) = ChildDeath::of(&record, died_ns) {
                    self.causes.note(exit.memcg_id, death);
                }
            }
            Role::Init => {
                let stopped = history
                    .as_ref()
                    .is_some_and(|h| h.first_stop_before(died_ns).is_some());
                record.cause = self
                    .causes
                    .explain(exit.memcg_id, &record, died_ns, stopped);
            }
            Role::Exec | Role::Runtime | Role::Sandbox => {}
        }
        self.stats.records += 1;
        Some(record)
    }

    /// An OOM kill whose victim's exit never came. The kernel marks a task that was already
    /// exiting without killing it, and the programs never filter a marked task's exit, so its
    /// real exit normally comes; when it does not (lost, or stuck), nothing is made up: the
    /// kill is counted and logged.
    pub(super) fn oom_kill_without_exit(&mut self, key: ProcessKey, oom: &PendingOom) {
        tracing::warn!(
            pid = key.tgid,
            cgroup = oom.victim_cgroup.as_ref().map_or("", |c| c.path.as_str()),
            "OOM victim's exit never came: no record"
        );
        self.stats.oom_kills_without_exit += 1;
    }
}
