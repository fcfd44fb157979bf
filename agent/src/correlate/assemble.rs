//! One death and the evidence gathered for it → the termination record.

use super::clock::BootClock;
use super::exec::ExecFailureSeen;
use super::oom::PendingOom;
use super::signals::{SignalHistory, SignalSeen};
use super::verdict::{self, Death, SenderPlace, VerdictInput, sig};
use super::{CgroupLookup, ProcessKey, comm_string};
use crate::cgroup::CgroupInfo;
use crate::record::{Initiator, Reason, Role, Sender, SenderKind, TerminationRecord};

/// How soon after its own failed exec a process's non-zero exit is taken to be caused by it
/// (it reported the failure and gave up): seconds would already be another story.
const EXEC_FAILURE_EXPLAINS_NS: u64 = 1_000_000_000;

/// The dead process, from its exit event (or, without one, from its OOM kill).
pub(super) struct Victim<'a> {
    pub key: ProcessKey,
    pub ppid: u32,
    pub comm: String,
    pub role: Role,
    /// Its role is init but it never executed the container's command.
    pub start_failed: bool,
    pub memcg_id: u64,
    pub cgroup: &'a CgroupInfo,
    pub death: Death,
    pub died_ns: u64,
    pub peak_rss_bytes: u64,
}

/// What other events said about it.
#[derive(Clone, Copy, Default)]
pub(super) struct Evidence<'a> {
    pub oom: Option<&'a PendingOom>,
    pub signals: Option<&'a SignalHistory>,
    pub exec_failure: Option<&'a ExecFailureSeen>,
}

pub(super) struct Assembler<'a, L> {
    pub node: &'a str,
    pub clock: BootClock,
    pub cgroups: &'a mut L,
    /// Incremented for every sender memcg id the lookup could not resolve.
    pub unresolved: &'a mut u64,
}

impl<L: CgroupLookup> Assembler<'_, L> {
    pub fn record(&mut self, victim: &Victim<'_>, evidence: Evidence<'_>) -> TerminationRecord {
        let died_ns = victim.died_ns;
        let history = evidence.signals;
        let fatal = victim.death.signal().and_then(|signal| {
            let seen = history.and_then(|h| h.fatal(signal, died_ns))?;
            // A stop signal the process raised again after catching it (restore the default,
            // re-raise: Go, Node, C cleanup handlers) was decided by whoever sent it first.
            if seen.sender_tgid == victim.key.tgid
                && !verdict::kernel_raised(seen.code)
                && let Some(first) = history.and_then(|h| h.first_from_other(signal, died_ns))
            {
                return Some(first);
            }
            Some(seen)
        });
        let fatal_sender = fatal.map(|seen| self.signal_sender(&seen, victim));
        let sigterm = history.and_then(|h| h.sigterm_before(died_ns));
        let sigkill = history.and_then(|h| h.sigkill_before(died_ns));
        // The grace period ends with the SIGKILL that killed, or, unseen, with the death.
        let killed_ns = fatal
            .filter(|f| f.sig == sig::SIGKILL)
            .map_or(died_ns, |f| f.ktime_ns);
        let exec_explains = evidence.exec_failure.filter(|failure| {
            failure.pid == victim.key.tgid
                && died_ns.saturating_sub(failure.ktime_ns) <= EXEC_FAILURE_EXPLAINS_NS
        });
        let reason = verdict::reason(VerdictInput {
            death: victim.death,
            oom_victim: evidence.oom.is_some(),
            fatal_sender: fatal_sender.as_ref().map(|s| s.kind),
            sigterm_before_kill: sigterm.is_some_and(|t| t.ktime_ns <= killed_ns),
            exec_errno: exec_explains.map(|x| x.errno),
            start_failed: victim.start_failed,
        });
        let sender = match (reason, evidence.oom) {
            // The OOM killer's SIGKILL is generated in the allocating task's context: the
            // trigger, as `mark_victim` saw it, is the one to name.
            (Reason::OomKilled, Some(oom)) => Some(Sender {
                pid: oom.kill.trigger_pid,
                comm: oom.kill.trigger_comm.clone(),
                cgroup: String::new(),
                kind: SenderKind::Kernel,
            }),
            _ => fatal_sender,
        };
        let initiator = self.initiator(victim, history, reason, sender.as_ref());
        let grace_seconds = match (sigterm, sigkill) {
            (Some(term), Some(kill)) if kill.ktime_ns >= term.ktime_ns => {
                Some(nanos_to_seconds(kill.ktime_ns - term.ktime_ns))
            }
            _ => None,
        };
        let memory = self.cgroups.memory(&victim.cgroup.path);
        let container = victim.cgroup.container.as_ref();
        let (exit_code, signal, core_dumped) = match victim.death {
            Death::Exited(code) => (Some(code), None, false),
            Death::Signaled {
                signal,
                core_dumped,
            } => (None, Some(signal), core_dumped),
        };
        TerminationRecord {
            time: self.clock.wall(died_ns),
            node: self.node.to_owned(),
            pid: victim.key.tgid,
            ppid: victim.ppid,
            comm: victim.comm.clone(),
            main_process: victim.role == Role::Init,
            cgroup: victim.cgroup.path.clone(),
            pod_uid: container.map(|c| c.pod_uid.clone()),
            container_id: container.map(|c| c.container_id.clone()),
            namespace: None,
            pod: None,
            container: None,
            owner_kind: None,
            owner_name: None,
            exit_code,
            signal,
            core_dumped,
            reason,
            sender,
            sigterm_time: sigterm.map(|s| self.clock.wall(s.ktime_ns)),
            sigkill_time: sigkill.map(|s| self.clock.wall(s.ktime_ns)),
            grace_seconds,
            oom: evidence.oom.map(|o| o.kill.clone()),
            peak_rss_bytes: victim.peak_rss_bytes,
            container_memory_peak_bytes: memory.peak_bytes,
            container_memory_limit_bytes: memory.limit_bytes,
            exec_failure: evidence.exec_failure.map(ExecFailureSeen::to_record),
            exit_status: victim.death.exit_status(),
            role: victim.role,
            message: None,
            initiator,
            grace_allowed_seconds: None,
            // Set by the correlator from the container's other deaths (`cause`).
            cause: None,
            stop_signal_ignored: history.is_some_and(|h| h.stop_dropped_before(died_ns).is_some()),
            // Zero is a start the kernel did not give (never a real boot-clock start).
            uptime_seconds: (victim.key.start_boottime_ns != 0)
                .then(|| nanos_to_seconds(died_ns.saturating_sub(victim.key.start_boottime_ns))),
        }
    }

    /// The kernel's part of who decided the death (`verdict::initiator`).
    fn initiator(
        &mut self,
        victim: &Victim<'_>,
        history: Option<&SignalHistory>,
        reason: Reason,
        sender: Option<&Sender>,
    ) -> Initiator {
        // Asked to stop, then exited by itself: whoever asked decided — unless the kernel
        // dropped the request (ignored, or sent to a process already exiting): then the exit
        // was its own.
        let stop_sender = match victim.death {
            Death::Exited(_) => history
                .and_then(|h| h.first_stop_before(victim.died_ns))
                .filter(|seen| seen.delivered)
                .map(|seen| self.signal_sender(&seen, victim).kind),
            Death::Signaled { .. } => None,
        };
        verdict::initiator(reason, victim.death, sender.map(|s| s.kind), stop_sender)
    }

    fn signal_sender(&mut self, seen: &SignalSeen, victim: &Victim<'_>) -> Sender {
        let comm = comm_string(&seen.sender_comm);
        // Without a siginfo and to itself: the kernel raised it in the process's own context
        // (a write to a closed pipe, past the file size limit), nobody sent it.
        let raised_for_itself = seen.no_siginfo && seen.sender_tgid == victim.key.tgid;
        if verdict::kernel_raised(seen.code) || raised_for_itself {
            return Sender {
                pid: seen.sender_tgid,
                comm,
                cgroup: String::new(),
                kind: SenderKind::Kernel,
            };
        }
        let (place, cgroup) = if seen.sender_memcg_id == victim.memcg_id {
            (SenderPlace::VictimContainer, victim.cgroup.path.clone())
        } else if let Some(info) = self.cgroups.info(seen.sender_memcg_id) {
            let place = match (&info.container, &victim.cgroup.container) {
                (Some(theirs), Some(ours))
                    if theirs.container_id == ours.container_id
                        && theirs.pod_uid == ours.pod_uid =>
                {
                    SenderPlace::VictimContainer
                }
                (Some(_), _) => SenderPlace::OtherContainer,
                (None, _) => SenderPlace::Outside,
            };
            (place, info.path)
        } else {
            *self.unresolved += 1;
            (SenderPlace::Outside, String::new())
        };
        Sender {
            pid: seen.sender_tgid,
            comm,
            cgroup,
            kind: verdict::sender_kind(seen.code, seen.sender_tgid, victim.key.tgid, place),
        }
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "a grace period in f64 seconds keeps ns precision up to 104 days"
)]
fn nanos_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}
