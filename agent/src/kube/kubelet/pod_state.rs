//! What the pod object says about its termination: the few fields the initiator is decided
//! from, kept in the pod index next to the labels (no second decode of every pod).

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Unix time in milliseconds: what the API's timestamps and the record's time are compared in.
pub type UnixMs = i64;

/// The pod's `DisruptionTarget` condition (status `True`): a controller or the kubelet is about
/// to end the pod, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disruption {
    /// `PreemptionByScheduler`, `DeletionByTaintManager`, `EvictionByEvictionAPI`,
    /// `DeletionByPodGC`, `TerminationByKubelet`.
    pub reason: String,
    pub message: String,
    pub at: Option<UnixMs>,
}

/// A container's probe-level `terminationGracePeriodSeconds` (set on few pods).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeGrace {
    pub container: String,
    pub liveness: Option<u64>,
    pub startup: Option<u64>,
}

/// The termination-related state of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodTermination {
    /// When the deletion was asked for: `deletionTimestamp` is when its grace period ends.
    pub deletion_requested: Option<UnixMs>,
    pub deletion_grace: Option<u64>,
    /// `spec.terminationGracePeriodSeconds` (the API server defaults it to 30).
    pub termination_grace: Option<u64>,
    pub disruption: Option<Disruption>,
    /// `status.reason` and `status.message`: `Evicted`, `Terminated` (node shutdown), …
    pub status_reason: Option<String>,
    pub status_message: Option<String>,
    /// Phase `Succeeded` or `Failed`: the pod is done and the kubelet stops what is left.
    pub terminal: bool,
    /// The `AllContainersRestarting` condition is `True` (a container's restart rule asked
    /// for every container to restart).
    pub restarting_all: bool,
    pub probe_grace: Vec<ProbeGrace>,
}

fn ms(t: &Time) -> UnixMs {
    t.0.as_millisecond()
}

fn seconds(v: Option<i64>) -> Option<u64> {
    v.map(|s| u64::try_from(s).unwrap_or(0))
}

impl PodTermination {
    #[must_use]
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let deletion_grace = seconds(meta.deletion_grace_period_seconds);
        let deletion_requested = meta.deletion_timestamp.as_ref().map(|t| {
            let grace_ms = deletion_grace.map_or(0, |g| i64::try_from(g).unwrap_or(0) * 1000);
            ms(t).saturating_sub(grace_ms)
        });
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let disruption = conditions
            .iter()
            .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
            .map(|c| Disruption {
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                at: c.last_transition_time.as_ref().map(ms),
            });
        let restarting_all = conditions
            .iter()
            .any(|c| c.type_ == "AllContainersRestarting" && c.status == "True");
        let probe_grace = spec
            .into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .filter_map(probe_grace)
            .collect();
        PodTermination {
            deletion_requested,
            deletion_grace,
            termination_grace: seconds(spec.and_then(|s| s.termination_grace_period_seconds)),
            disruption,
            status_reason: status.and_then(|s| s.reason.clone()),
            status_message: status.and_then(|s| s.message.clone()),
            terminal: status
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed"),
            restarting_all,
            probe_grace,
        }
    }

    /// The probe's own grace period for this container, when its spec sets one.
    #[must_use]
    pub fn probe_grace(&self, container: &str, liveness: bool) -> Option<u64> {
        let p = self.probe_grace.iter().find(|p| p.container == container)?;
        if liveness { p.liveness } else { p.startup }
    }
}

fn probe_grace(c: &Container) -> Option<ProbeGrace> {
    let grace = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        seconds(p.as_ref().and_then(|p| p.termination_grace_period_seconds))
    };
    let (liveness, startup) = (grace(&c.liveness_probe), grace(&c.startup_probe));
    (liveness.is_some() || startup.is_some()).then(|| ProbeGrace {
        container: c.name.clone(),
        liveness,
        startup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_deletion_disruption_and_probe_grace_from_a_real_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "api-1", "namespace": "shop", "uid": "u1",
                "deletionTimestamp": "2026-12-03T10:00:30Z", "deletionGracePeriodSeconds": 30},
            "spec": {"terminationGracePeriodSeconds": 30, "containers": [
                {"name": "api", "livenessProbe": {"exec": {"command": ["true"]},
                    "terminationGracePeriodSeconds": 5}},
                {"name": "proxy"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "DisruptionTarget", "status": "True",
                 "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                 "lastTransitionTime": "2026-12-03T10:00:00Z"}]}
        }))
        .unwrap();
        let t = PodTermination::from_pod(&pod);
        // 10:00:30 minus the 30 s grace: asked for at 10:00:00.
        assert_eq!(t.deletion_requested, Some(1_796_292_000_000));
        assert_eq!(
            (t.deletion_grace, t.termination_grace),
            (Some(30), Some(30))
        );
        let d = t.disruption.as_ref().unwrap();
        assert_eq!(
            (d.reason.as_str(), d.at),
            ("EvictionByEvictionAPI", Some(1_796_292_000_000))
        );
        assert_eq!(t.probe_grace("api", true), Some(5));
        assert_eq!(t.probe_grace("api", false), None);
        assert_eq!(t.probe_grace("proxy", true), None);
        assert!(!t.terminal && !t.restarting_all);
    }

    #[test]
    fn a_false_condition_is_no_disruption() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "status": {"phase": "Failed", "reason": "Evicted", "conditions": [
                {"type": "DisruptionTarget", "status": "False", "reason": "PreemptionByScheduler"},
                {"type": "AllContainersRestarting", "status": "True"}]}
        }))
        .unwrap();
        let t = PodTermination::from_pod(&pod);
        assert_eq!(t.disruption, None);
        assert_eq!(t.status_reason.as_deref(), Some("Evicted"));
        assert!(t.terminal && t.restarting_all);
    }
}
