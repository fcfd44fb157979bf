//! The death in a container that explains its init's exit (`cause`): a shell relaying its
//! child's status (`sh -c 'app; exit $?'`), tini or dumb-init exiting 128 + the child's
//! signal, a supervisor giving up after its program crashed.
//!
//! Children's deaths are remembered per container memory cgroup as their records are made;
//! records are made in the order of the deaths' kernel times (every exit waits out the same
//! hold, and a child's exit precedes the `wait()` of the parent that then exits), so a child's
//! death is known when its init's record is assembled, whatever order their events came in
//! within the hold.
//!
//! Rules (docs/record.md, "Cause"):
//! - A child's death can explain: the OOM killer chose it, or a signal killed it that the
//!   kernel, the child itself or its own container sent. A signal from the host or another
//!   container is a stop (the runtime kills every process of a container it stops): not a
//!   cause. A signal whose sender was not seen is not one either.
//! - An init can be explained when it exited non-zero, or died of a signal it sent itself
//!   (re-raising its child's, as bash does), with no OOM kill of its own and no stop signal
//!   from another process before: an init the OOM killer chose too (`memory.oom.group`), or
//!   that was stopped, keeps its own story.
//! - The child died at most [`CAUSE_WINDOW_NS`] before the init. The latest whose status the
//!   init relayed (the same `exit_status`: `exit $?`, 128 + the signal) is the cause; without
//!   one, the latest OOM kill or crash (an init that gives up after either, exiting 1): any
//!   other signal death (a pipeline's SIGPIPE) explains only an exit that relays it.

use std::num::NonZeroUsize;

use lru::LruCache;

use crate::record::{Cause, Initiator, OomKill, Reason, Role, SenderKind, TerminationRecord};

/// How long before its init's exit a child's death may explain it: a relay is immediate (the
/// shell, tini and dumb-init exit as soon as `wait()` returns); a cleanup in between may take
/// a moment. Longer, and an unrelated crash would be taken for the cause.
pub const CAUSE_WINDOW_NS: u64 = 5_000_000_000;

/// Children's deaths remembered per container: the latest few within the window are enough
/// (a shell relays its last command's status).
const DEATHS_PER_CONTAINER: usize = 4;

/// A child's death that may explain its init's exit.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ChildDeath {
    pub died_ns: u64,
    pub pid: u32,
    pub comm: String,
    pub reason: Reason,
    pub signal: Option<u8>,
    pub exit_status: u16,
    pub oom: Option<OomKill>,
}

impl ChildDeath {
    /// The child's death, if it is the kind that explains (see the module documentation).
    pub fn of(record: &TerminationRecord, died_ns: u64) -> Option<Self> {
        if record.role != Role::Child {
            return None;
        }
        let oom_killed = record.reason == Reason::OomKilled && record.oom.is_some();
        let decided_inside = record.signal.is_some()
            && record.sender.as_ref().is_some_and(|s| {
                matches!(
                    s.kind,
                    SenderKind::Kernel | SenderKind::SelfSent | SenderKind::SameContainer
                )
            })
            && matches!(
                record.initiator,
                Initiator::Kernel | Initiator::SelfInflicted
            );
        (oom_killed || decided_inside).then(|| Self {
            died_ns,
            pid: record.pid,
            comm: record.comm.clone(),
            reason: record.reason,
            signal: record.signal,
            exit_status: record.exit_status,
            oom: record.oom.clone(),
        })
    }
}

/// Whether an init's exit is one a child's death can explain. `stopped` is whether another
/// process sent it a stop signal before it died.
pub(super) fn explainable(init: &TerminationRecord, stopped: bool) -> bool {
    if init.role != Role::Init || init.oom.is_some() || stopped || init.exit_status == 0 {
        return false;
    }
    match (init.exit_code, &init.sender) {
        (Some(code), _) => code != 0,
        // Re-raised its child's signal on itself.
        (None, Some(sender)) => sender.kind == SenderKind::SelfSent,
        (None, None) => false,
    }
}

/// Recent children's deaths per container memory cgroup, bounded by an LRU cap.
pub(super) struct CauseTable {
    entries: LruCache<u64, Vec<ChildDeath>>,
    /// Containers pushed out by the cap: their init may miss its cause.
    pub evicted: u64,
}

impl CauseTable {
    pub fn new(cap: NonZeroUsize) -> Self {
        Self {
            entries: LruCache::new(cap),
            evicted: 0,
        }
    }

    /// Remembers a child's death in its container; the oldest of a container's go first.
    pub fn note(&mut self, memcg_id: u64, death: ChildDeath) {
        // No memory controller: no container to tell the deaths apart by.
        if memcg_id == 0 {
            return;
        }
        if let Some(deaths) = self.entries.get_mut(&memcg_id) {
            if deaths.len() == DEATHS_PER_CONTAINER {
                deaths.remove(0);
            }
            deaths.push(death);
        } else if self.entries.push(memcg_id, vec![death]).is_some() {
            self.evicted += 1;
        }
    }

    /// The cause of the init's death at `died_ns`, if one of its container's children explains
    /// it; the container's deaths are forgotten either way (its init is gone).
    pub fn explain(
        &mut self,
        memcg_id: u64,
        init: &TerminationRecord,
        died_ns: u64,
        stopped: bool,
    ) -> Option<Cause> {
        let deaths = self.entries.pop(&memcg_id)?;
        if memcg_id == 0 || !explainable(init, stopped) {
            return None;
        }
        let within = |d: &&ChildDeath| {
            d.died_ns <= died_ns && died_ns - d.died_ns <= CAUSE_WINDOW_NS && d.pid != init.pid
        };
        let relayed = deaths
            .iter()
            .filter(within)
            .filter(|d| d.exit_status == init.exit_status)
            .max_by_key(|d| d.died_ns);
        // Unrelayed, only a death that is news in itself: a shell pipeline's SIGPIPE or a
        // helper it killed moments before an unrelated failure is no cause.
        let telling = || {
            deaths
                .iter()
                .filter(within)
                .filter(|d| matches!(d.reason, Reason::OomKilled | Reason::Crashed))
                .max_by_key(|d| d.died_ns)
        };
        let chosen = relayed.or_else(telling)?;
        Some(Cause {
            pid: chosen.pid,
            comm: chosen.comm.clone(),
            reason: chosen.reason,
            signal: chosen.signal,
            oom: chosen.oom.clone(),
            seconds_before: nanos_to_seconds(died_ns - chosen.died_ns),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "seconds within the window, far below f64's exact range"
)]
fn nanos_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}
