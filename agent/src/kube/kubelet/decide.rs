//! The initiator from what the kernel saw and what the kubelet and the controllers published:
//! a pure function, table-tested in `decide_tests.rs`.
//!
//! Order of evidence (the first that speaks decides):
//! 1. The kubelet's `Killing` Event on this container, written just before it stopped it:
//!    a failed liveness or startup probe, a changed definition.
//! 2. The pod's `DisruptionTarget` condition, set before the pod is ended: the scheduler's
//!    preemption, the taint manager, the Eviction API, the pod GC, the kubelet itself (its
//!    node-pressure eviction, node shutdown, critical-pod preemption — told apart by the
//!    pod's status and the condition's message).
//! 3. The kubelet's `Evicted` Event or status `Evicted` (clusters without the condition),
//!    status `Terminated`/`Shutdown` of a node shutdown, status `Preempting`.
//! 4. `deletionTimestamp`: a deletion asked for before the death.
//! 5. `AllContainersRestarting`, or a finished pod whose leftovers the kubelet stopped
//!    (`Stopping container X` on a pod in phase `Succeeded`/`Failed`): the restart policy.
//!
//! Times: the API's are whole seconds (core/v1 `lastTimestamp`) and the kubelet stamps them
//! with this node's clock, so a publication counts when it is at most [`SKEW_MS`] after the
//! death; a `Killing` Event at most its grace period (plus [`KILL_SLACK_MS`]) before the first
//! stop signal — the preStop hook runs between the Event and the signal.

use super::pod_state::{PodTermination, UnixMs};
use super::published::{KillWording, KubeletEvent, Published};
use crate::record::Initiator;

pub const SKEW_MS: UnixMs = 2_000;
pub const KILL_SLACK_MS: UnixMs = 5_000;
/// The kubelet never gives a container less (`minimumGracePeriodInSeconds`,
/// `kuberuntime_manager.go`; `killContainer` raises anything shorter to it).
pub const MIN_GRACE_SECONDS: u64 = 2;
/// A `Killing` Event's window when the grace period is unknown: the API server's default.
const DEFAULT_GRACE_SECONDS: u64 = 30;

/// The death as the kernel saw it.
#[derive(Clone, Copy, Debug)]
pub struct DeathView<'a> {
    /// The correlator's initiator; only `Host` and `Unknown` are decided here.
    pub kernel: Initiator,
    /// The first stop signal another process sent it (SIGTERM, else SIGKILL), else the death.
    pub stopped_at: UnixMs,
    pub died_at: UnixMs,
    /// The container's name, once the pod's status named it.
    pub container: Option<&'a str>,
}

/// The answer, and whether it can still change (a later publication could make it more
/// precise: the caller may wait for one, within its bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub initiator: Initiator,
    pub grace_allowed_seconds: Option<u64>,
    pub settled: bool,
}

/// Without the API: what only the API could tell is unknown.
#[must_use]
pub fn without_api(kernel: Initiator) -> Initiator {
    if kernel.needs_api() {
        Initiator::Unknown
    } else {
        kernel
    }
}

fn floor(g: u64) -> u64 {
    g.max(MIN_GRACE_SECONDS)
}

/// The grace period the kubelet computes for a kill of one container
/// (`setTerminationGracePeriod`, `kuberuntime_container.go`): the deletion's, else the probe's
/// own for a probe kill, else the pod's.
fn container_grace(pod: &PodTermination, container: &str, wording: KillWording) -> Option<u64> {
    let probe = match wording {
        KillWording::LivenessProbe => pod.probe_grace(container, true),
        KillWording::StartupProbe => pod.probe_grace(container, false),
        _ => None,
    };
    pod.deletion_grace
        .or(probe)
        .or(pod.termination_grace)
        .map(floor)
}

fn decided(initiator: Initiator, grace: Option<u64>, settled: bool) -> Decision {
    Decision {
        initiator,
        grace_allowed_seconds: grace,
        settled,
    }
}

/// The kubelet's `Killing` Event for this container in the window of this death.
fn killing(
    death: &DeathView<'_>,
    pod: &PodTermination,
    events: &[KubeletEvent],
) -> Option<KillWording> {
    let container = death.container?;
    events
        .iter()
        .filter_map(|e| match &e.what {
            Published::Killing(c, wording) if c == container => Some((e.at, *wording)),
            _ => None,
        })
        .filter(|(at, wording)| {
            let grace = container_grace(pod, container, *wording).unwrap_or(DEFAULT_GRACE_SECONDS);
            let grace_ms = i64::try_from(grace)
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1000);
            *at >= death.stopped_at.saturating_sub(grace_ms + KILL_SLACK_MS)
                && *at <= death.died_at + SKEW_MS
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, wording)| wording)
}

fn before_death(death: &DeathView<'_>, at: Option<UnixMs>) -> bool {
    at.is_none_or(|at| at <= death.died_at + SKEW_MS)
}

/// The kubelet ended the whole pod (`TerminationByKubelet`, or its status alone): which of
/// its reasons.
fn by_kubelet(pod: &PodTermination, condition_message: &str) -> Option<Initiator> {
    let reason = pod.status_reason.as_deref().unwrap_or_default();
    let message = pod.status_message.as_deref().unwrap_or_default();
    // nodeshutdown_manager: "Terminated" + this message (1.22+), "Shutdown" before.
    let shutdown = "Pod was terminated in response to imminent node shutdown.";
    if reason == "Shutdown"
        || (reason == "Terminated" && message == shutdown)
        || condition_message == shutdown
    {
        return Some(Initiator::NodeShutdown);
    }
    if reason == "Evicted" {
        return Some(Initiator::Eviction);
    }
    // pkg/kubelet/preemption: status "Preempting", "Preempted in order to admit critical pod".
    if reason == "Preempting"
        || condition_message == "Pod was preempted by Kubelet to accommodate a critical pod."
    {
        return Some(Initiator::Preemption);
    }
    None
}

/// Pod-level evidence: the pod is being ended, and by whom.
fn pod_level(
    death: &DeathView<'_>,
    pod: &PodTermination,
    events: &[KubeletEvent],
) -> Option<Decision> {
    let deletion = pod.deletion_grace.map(floor);
    let evicted_event = events.iter().any(|e| {
        e.what == Published::Evicted
            && e.at <= death.died_at + SKEW_MS
            && e.at >= death.stopped_at.saturating_sub(KILL_SLACK_MS + 60_000)
    });
    if let Some(d) = pod
        .disruption
        .as_ref()
        .filter(|d| before_death(death, d.at))
    {
        // The controllers delete the pod right after setting the condition: its grace comes
        // with the deletion.
        let deleted = |initiator| decided(initiator, deletion, deletion.is_some());
        return Some(match d.reason.as_str() {
            "PreemptionByScheduler" => deleted(Initiator::Preemption),
            "DeletionByTaintManager" => deleted(Initiator::TaintEviction),
            "EvictionByEvictionAPI" => deleted(Initiator::ApiEviction),
            "DeletionByPodGC" => deleted(Initiator::PodDeletion),
            // The kubelet's grace then is its own override (--eviction-max-pod-grace-period,
            // the shutdown's per-priority grace): not published.
            "TerminationByKubelet" => match by_kubelet(pod, &d.message) {
                Some(initiator) => decided(initiator, None, true),
                None if evicted_event => decided(Initiator::Eviction, None, true),
                None => decided(Initiator::Unknown, None, false),
            },
            _ => decided(Initiator::Unknown, None, false),
        });
    }
    if let Some(initiator) = by_kubelet(pod, "") {
        return Some(decided(initiator, None, true));
    }
    if evicted_event {
        return Some(decided(Initiator::Eviction, None, true));
    }
    if pod.deletion_requested.is_some() && before_death(death, pod.deletion_requested) {
        // The Eviction API, the scheduler and the taint manager set their condition before
        // they delete: a deletion without one is a plain one.
        return Some(decided(Initiator::PodDeletion, deletion, true));
    }
    None
}

/// The initiator of a death whose kernel evidence is `death.kernel`, given the pod's state and
/// the kubelet's Events on it (the API is reachable and the pod known).
#[must_use]
pub fn decide(death: &DeathView<'_>, pod: &PodTermination, events: &[KubeletEvent]) -> Decision {
    if !death.kernel.needs_api() {
        return decided(death.kernel, None, true);
    }
    let container = death.container.unwrap_or_default();
    let wording = killing(death, pod, events);
    let specific = match wording {
        Some(KillWording::LivenessProbe) => Some(Initiator::LivenessProbe),
        Some(KillWording::StartupProbe) => Some(Initiator::StartupProbe),
        Some(KillWording::DefinitionChanged) => Some(Initiator::SpecChange),
        _ => None,
    };
    if let (Some(initiator), Some(wording)) = (specific, wording) {
        return decided(initiator, container_grace(pod, container, wording), true);
    }
    if let Some(d) = pod_level(death, pod, events) {
        return d;
    }
    if pod.restarting_all || (pod.terminal && wording == Some(KillWording::Stopping)) {
        let grace = container_grace(pod, container, KillWording::Stopping);
        return decided(Initiator::RestartPolicy, grace, true);
    }
    if wording.is_some() {
        // The kubelet stopped it and did not say why (yet): the pod's status may still tell.
        return decided(Initiator::Unknown, None, false);
    }
    // Nothing from the kubelet: a host process of its own (an operator's kill), or a sender
    // never seen.
    decided(death.kernel, None, false)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
