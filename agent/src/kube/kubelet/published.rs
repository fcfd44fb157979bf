//! The kubelet's Events on a pod, read from either Event API: core/v1 (`involvedObject`,
//! `message`, `lastTimestamp`, `source`) as the kubelet's recorder writes them, and
//! events.k8s.io/v1 (`regarding`, `note`, `series`, `reportingController`) — the API server
//! serves every Event through both.
//!
//! The texts are the kubelet's own (kubernetes/kubernetes, pkg/kubelet/kuberuntime):
//! `computePodActions` (`kuberuntime_manager.go`) and `computeInitContainerActions`
//! (`kuberuntime_container.go`) word why a running container is killed —
//! `Container %s failed liveness probe`, `Container %s failed startup probe`,
//! `Container %s definition changed`, each followed by `, will be restarted` when it will be,
//! and `Init container %s …` for restartable init containers (sidecars); `killContainer`
//! (`kuberuntime_container.go`) posts the message as a Normal `Killing` Event before it runs the
//! preStop hook and stops the container, and words a kill without a message
//! `Stopping container %s` (a pod being deleted, evicted, shut down or finished). The eviction
//! manager (pkg/kubelet/eviction) posts a Warning `Evicted` Event on the pod before it kills.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::pod_state::UnixMs;

/// Why the kubelet said it killed a container, from its `Killing` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillWording {
    LivenessProbe,
    StartupProbe,
    DefinitionChanged,
    /// `Stopping container X`: a kill of the whole pod, the reason is the pod's.
    Stopping,
    /// Another text (`FailedPostStartHook`, `Container is in "unknown" state, …`).
    Other,
}

/// What a kubelet Event says, whichever API it came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Published {
    /// `Killing` on a container: (container name, wording).
    Killing(String, KillWording),
    /// `Evicted` on the pod.
    Evicted,
}

/// One Event the initiator reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletEvent {
    pub what: Published,
    /// The last time it happened (an Event counts repeats in place).
    pub at: UnixMs,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn time_at(v: &Value, path: &[&str]) -> Option<UnixMs> {
    let t = OffsetDateTime::parse(text(v, path)?, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `spec.containers{api}`, `spec.initContainers{x}`, `spec.ephemeralContainers{x}` → the name.
fn container_of(field_path: &str) -> Option<&str> {
    let (_, rest) = field_path.split_once('{')?;
    rest.strip_suffix('}').filter(|n| !n.is_empty())
}

/// The wording of a `Killing` message; `container` is the name the message should carry.
#[must_use]
pub fn kill_wording(message: &str, container: &str) -> KillWording {
    if message.strip_prefix("Stopping container ") == Some(container) {
        return KillWording::Stopping;
    }
    let Some(rest) = message
        .strip_prefix("Container ")
        .or_else(|| message.strip_prefix("Init container "))
        .and_then(|m| m.strip_prefix(container))
        .and_then(|m| m.strip_prefix(' '))
    else {
        return KillWording::Other;
    };
    match rest.strip_suffix(", will be restarted").unwrap_or(rest) {
        "failed liveness probe" => KillWording::LivenessProbe,
        "failed startup probe" => KillWording::StartupProbe,
        "definition changed" => KillWording::DefinitionChanged,
        _ => KillWording::Other,
    }
}

impl KubeletEvent {
    /// `None` for an Event that is not the kubelet's `Killing` or `Evicted`, or has no time.
    #[must_use]
    pub fn parse(event: &Value) -> Option<Self> {
        let reporter = text(event, &["reportingController"])
            .or_else(|| text(event, &["reportingComponent"]))
            .or_else(|| text(event, &["source", "component"]))
            .or_else(|| text(event, &["deprecatedSource", "component"]));
        // coroner's own Events and other controllers' name the same pod.
        if reporter != Some("kubelet") {
            return None;
        }
        let object = event
            .get("involvedObject")
            .or_else(|| event.get("regarding"))?;
        let message = text(event, &["message"]).or_else(|| text(event, &["note"]))?;
        let what = match text(event, &["reason"])? {
            "Killing" => {
                let container = container_of(text(object, &["fieldPath"])?)?;
                Published::Killing(container.to_owned(), kill_wording(message, container))
            }
            "Evicted" => Published::Evicted,
            _ => return None,
        };
        let at = [
            &["series", "lastObservedTime"][..],
            &["lastTimestamp"],
            &["deprecatedLastTimestamp"],
            &["eventTime"],
            &["firstTimestamp"],
            &["deprecatedFirstTimestamp"],
        ]
        .iter()
        .filter_map(|path| time_at(event, path))
        .max()?;
        Some(KubeletEvent { what, at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AT: UnixMs = 1_796_292_000_000;

    fn core(reason: &str, field_path: Option<&str>, message: &str) -> Value {
        let mut object = json!({"kind": "Pod", "namespace": "shop", "name": "api-1",
                                "uid": "u1", "apiVersion": "v1"});
        if let Some(fp) = field_path {
            object["fieldPath"] = json!(fp);
        }
        json!({"apiVersion": "v1", "kind": "Event",
               "metadata": {"name": "api-1.1", "namespace": "shop"},
               "involvedObject": object, "reason": reason, "message": message,
               "source": {"component": "kubelet", "host": "node-a"},
               "firstTimestamp": "2026-12-03T09:59:00Z", "lastTimestamp": "2026-12-03T10:00:00Z",
               "count": 2, "type": "Normal"})
    }

    #[test]
    fn the_kubelets_killing_texts() {
        let cases = [
            (
                "Container api failed liveness probe, will be restarted",
                KillWording::LivenessProbe,
            ),
            (
                "Container api failed liveness probe",
                KillWording::LivenessProbe,
            ),
            (
                "Container api failed startup probe, will be restarted",
                KillWording::StartupProbe,
            ),
            (
                "Init container api failed startup probe",
                KillWording::StartupProbe,
            ),
            (
                "Init container api failed liveness probe",
                KillWording::LivenessProbe,
            ),
            (
                "Container api definition changed, will be restarted",
                KillWording::DefinitionChanged,
            ),
            (
                "Init container api definition changed",
                KillWording::DefinitionChanged,
            ),
            ("Stopping container api", KillWording::Stopping),
            ("FailedPostStartHook", KillWording::Other),
            (
                "Container is in \"unknown\" state, try killing it before restart",
                KillWording::Other,
            ),
            // Another container's text does not speak for this one.
            ("Container api-2 failed liveness probe", KillWording::Other),
            ("Stopping container api-2", KillWording::Other),
        ];
        for (message, want) in cases {
            assert_eq!(kill_wording(message, "api"), want, "{message}");
        }
    }

    #[test]
    fn a_core_v1_killing_event() {
        let e = core(
            "Killing",
            Some("spec.containers{api}"),
            "Container api failed liveness probe, will be restarted",
        );
        let got = KubeletEvent::parse(&e).unwrap();
        assert_eq!(
            got.what,
            Published::Killing("api".into(), KillWording::LivenessProbe)
        );
        // The last time, not the first.
        assert_eq!(got.at, AT);
    }

    #[test]
    fn an_events_k8s_io_v1_event_with_a_series() {
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "api-1.2", "namespace": "shop"},
            "regarding": {"kind": "Pod", "namespace": "shop", "name": "api-1", "uid": "u1",
                          "fieldPath": "spec.initContainers{proxy}"},
            "reason": "Killing", "note": "Init container proxy definition changed",
            "reportingController": "kubelet", "reportingInstance": "node-a",
            "eventTime": "2026-12-03T09:58:00.123456Z",
            "series": {"count": 3, "lastObservedTime": "2026-12-03T10:00:00.000000Z"},
            "type": "Normal", "action": "Killing"});
        let got = KubeletEvent::parse(&e).unwrap();
        assert_eq!(
            got.what,
            Published::Killing("proxy".into(), KillWording::DefinitionChanged)
        );
        assert_eq!(got.at, AT);
    }

    #[test]
    fn evicted_and_what_is_ignored() {
        let evicted = core(
            "Evicted",
            None,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. ",
        );
        assert_eq!(
            KubeletEvent::parse(&evicted).unwrap().what,
            Published::Evicted
        );
        // Not the kubelet's: coroner's own Event on the pod, a scheduler's.
        let mut ours = core(
            "Killing",
            Some("spec.containers{api}"),
            "Stopping container api",
        );
        ours["source"] = json!({"component": "coroner"});
        assert_eq!(KubeletEvent::parse(&ours), None);
        let unhealthy = core(
            "Unhealthy",
            Some("spec.containers{api}"),
            "Liveness probe failed",
        );
        assert_eq!(KubeletEvent::parse(&unhealthy), None);
        let mut timeless = core(
            "Killing",
            Some("spec.containers{api}"),
            "Stopping container api",
        );
        for key in ["firstTimestamp", "lastTimestamp"] {
            timeless.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(KubeletEvent::parse(&timeless), None);
        // A Killing without a container field path names no container.
        assert_eq!(
            KubeletEvent::parse(&core("Killing", None, "Stopping container api")),
            None
        );
    }
}
