//! Every initiator from realistic pod objects and kubelet Event texts.

use serde_json::{Value, json};

use super::*;
use crate::kube::kubelet::pod_state::PodTermination;
use crate::kube::kubelet::published::KubeletEvent;

/// 2026-12-03T10:00:00Z: the first stop signal; the death comes 1.5 s later.
const T: UnixMs = 1_796_292_000_000;

fn death(kernel: Initiator) -> DeathView<'static> {
    DeathView {
        kernel,
        stopped_at: T,
        died_at: T + 1_500,
        container: Some("api"),
    }
}

/// A running pod of a Deployment as the API server serves it, spec defaults filled in.
fn pod_json() -> Value {
    json!({
        "metadata": {"name": "api-7d4b9c-x2x", "namespace": "shop", "uid": "u1"},
        "spec": {"terminationGracePeriodSeconds": 30, "restartPolicy": "Always",
            "containers": [{"name": "api", "image": "app:1",
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                  "terminationGracePeriodSeconds": 10}},
                           {"name": "proxy", "image": "envoy:1"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn with(mut pod: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut pod);
    pod
}

fn condition(pod: &mut Value, reason: &str, message: &str, at: &str) {
    pod["status"]["conditions"].as_array_mut().unwrap().push(
        json!({"type": "DisruptionTarget", "status": "True", "reason": reason,
                     "message": message, "lastTransitionTime": at}),
    );
}

fn deleted(pod: &mut Value, at: &str, grace: u64) {
    pod["metadata"]["deletionTimestamp"] = json!(at);
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
}

/// A kubelet Event as its recorder posts it through core/v1.
fn kubelet_event(reason: &str, container: Option<&str>, message: &str, at: &str) -> Value {
    let mut object = json!({"kind": "Pod", "namespace": "shop", "name": "api-7d4b9c-x2x",
                            "uid": "u1", "apiVersion": "v1"});
    if let Some(c) = container {
        object["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
    }
    json!({"metadata": {"name": "api-7d4b9c-x2x.187", "namespace": "shop"},
           "involvedObject": object, "reason": reason, "message": message,
           "source": {"component": "kubelet", "host": "node-a"},
           "firstTimestamp": at, "lastTimestamp": at, "count": 1,
           "type": if reason == "Evicted" { "Warning" } else { "Normal" }})
}

struct Case {
    name: &'static str,
    kernel: Initiator,
    pod: Value,
    events: Vec<Value>,
    want: (Initiator, Option<u64>, bool),
}

#[expect(clippy::too_many_lines, reason = "one table, one case per rule")]
fn cases() -> Vec<Case> {
    let killing =
        |message: &str| kubelet_event("Killing", Some("api"), message, "2026-12-03T10:00:00Z");
    let stopping = || killing("Stopping container api");
    vec![
        Case {
            name: "liveness probe: the probe's own grace",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![killing(
                "Container api failed liveness probe, will be restarted",
            )],
            want: (Initiator::LivenessProbe, Some(10), true),
        },
        Case {
            name: "startup probe without its own grace: the pod's",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![killing(
                "Container api failed startup probe, will be restarted",
            )],
            want: (Initiator::StartupProbe, Some(30), true),
        },
        Case {
            name: "restartable init container (sidecar) failing its liveness probe",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![killing("Init container api failed liveness probe")],
            want: (Initiator::LivenessProbe, Some(10), true),
        },
        Case {
            name: "definition changed",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![killing(
                "Container api definition changed, will be restarted",
            )],
            want: (Initiator::SpecChange, Some(30), true),
        },
        Case {
            name: "a sender never seen, the kubelet says liveness",
            kernel: Initiator::Unknown,
            pod: pod_json(),
            events: vec![killing(
                "Container api failed liveness probe, will be restarted",
            )],
            want: (Initiator::LivenessProbe, Some(10), true),
        },
        Case {
            name: "another container's Killing does not speak for this one",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![kubelet_event(
                "Killing",
                Some("proxy"),
                "Container proxy failed liveness probe, will be restarted",
                "2026-12-03T10:00:00Z",
            )],
            want: (Initiator::Host, None, false),
        },
        Case {
            name: "a Killing Event of an earlier restart is no evidence",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![kubelet_event(
                "Killing",
                Some("api"),
                "Container api failed liveness probe, will be restarted",
                "2026-12-03T09:58:00Z",
            )],
            want: (Initiator::Host, None, false),
        },
        Case {
            name: "kubectl delete: deletionTimestamp, the deletion's grace",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| deleted(p, "2026-12-03T10:00:45Z", 45)),
            events: vec![stopping()],
            want: (Initiator::PodDeletion, Some(45), true),
        },
        Case {
            name: "force delete: grace 0 is the kubelet's minimum 2 s",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| deleted(p, "2026-12-03T09:59:59Z", 0)),
            events: vec![],
            want: (Initiator::PodDeletion, Some(2), true),
        },
        Case {
            name: "a deletion asked for after the death did not cause it",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| deleted(p, "2026-12-03T10:00:40Z", 30)),
            events: vec![],
            want: (Initiator::Host, None, false),
        },
        Case {
            name: "a container that exited by itself after the stop signal of a deletion",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| deleted(p, "2026-12-03T10:00:30Z", 30)),
            events: vec![stopping()],
            want: (Initiator::PodDeletion, Some(30), true),
        },
        Case {
            name: "drain: Eviction API",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                condition(
                    p,
                    "EvictionByEvictionAPI",
                    "Eviction API: evicting",
                    "2026-12-03T10:00:00Z",
                );
                deleted(p, "2026-12-03T10:00:30Z", 30);
            }),
            events: vec![stopping()],
            want: (Initiator::ApiEviction, Some(30), true),
        },
        Case {
            name: "scheduler preemption",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                condition(
                    p,
                    "PreemptionByScheduler",
                    "default-scheduler: preempting to accommodate a higher priority pod",
                    "2026-12-03T10:00:00Z",
                );
                deleted(p, "2026-12-03T10:00:30Z", 30);
            }),
            events: vec![stopping()],
            want: (Initiator::Preemption, Some(30), true),
        },
        Case {
            name: "the condition before the deletion: waits for the grace",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                condition(p, "PreemptionByScheduler", "", "2026-12-03T10:00:00Z");
            }),
            events: vec![],
            want: (Initiator::Preemption, None, false),
        },
        Case {
            name: "taint manager",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                condition(
                    p,
                    "DeletionByTaintManager",
                    "Taint manager: deleting due to NoExecute taint",
                    "2026-12-03T10:00:00Z",
                );
                deleted(p, "2026-12-03T10:00:30Z", 30);
            }),
            events: vec![],
            want: (Initiator::TaintEviction, Some(30), true),
        },
        Case {
            name: "pod GC",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                condition(
                    p,
                    "DeletionByPodGC",
                    "PodGC: node no longer exists",
                    "2026-12-03T10:00:00Z",
                );
                deleted(p, "2026-12-03T10:00:00Z", 0);
            }),
            events: vec![],
            want: (Initiator::PodDeletion, Some(2), true),
        },
        Case {
            name: "node-pressure eviction: condition and status",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                let m = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. ";
                condition(p, "TerminationByKubelet", m, "2026-12-03T10:00:00Z");
                p["status"]["phase"] = json!("Failed");
                p["status"]["reason"] = json!("Evicted");
                p["status"]["message"] = json!(m);
            }),
            events: vec![stopping()],
            want: (Initiator::Eviction, None, true),
        },
        Case {
            name: "node-pressure eviction: the Evicted Event before the status",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![
                kubelet_event(
                    "Evicted",
                    None,
                    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. ",
                    "2026-12-03T10:00:00Z",
                ),
                stopping(),
            ],
            want: (Initiator::Eviction, None, true),
        },
        Case {
            name: "graceful node shutdown",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                let m = "Pod was terminated in response to imminent node shutdown.";
                condition(p, "TerminationByKubelet", m, "2026-12-03T10:00:00Z");
                p["status"]["reason"] = json!("Terminated");
                p["status"]["message"] = json!(m);
            }),
            events: vec![stopping()],
            want: (Initiator::NodeShutdown, None, true),
        },
        Case {
            name: "node shutdown, kubelet 1.21 wording",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                p["status"]["reason"] = json!("Shutdown");
                p["status"]["message"] = json!("Node is shutting, evicting pods");
            }),
            events: vec![],
            want: (Initiator::NodeShutdown, None, true),
        },
        Case {
            name: "the kubelet preempts for a critical pod",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                condition(
                    p,
                    "TerminationByKubelet",
                    "Pod was preempted by Kubelet to accommodate a critical pod.",
                    "2026-12-03T10:00:00Z",
                );
                p["status"]["reason"] = json!("Preempting");
                p["status"]["message"] = json!("Preempted in order to admit critical pod");
            }),
            events: vec![],
            want: (Initiator::Preemption, None, true),
        },
        Case {
            name: "RestartAllContainers",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| {
                p["status"]["conditions"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "AllContainersRestarting", "status": "True"}));
            }),
            events: vec![stopping()],
            want: (Initiator::RestartPolicy, Some(30), true),
        },
        Case {
            name: "a finished Job pod: its sidecar stopped",
            kernel: Initiator::Host,
            pod: with(pod_json(), |p| p["status"]["phase"] = json!("Succeeded")),
            events: vec![stopping()],
            want: (Initiator::RestartPolicy, Some(30), true),
        },
        Case {
            name: "stopped, no reason published (yet)",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![stopping()],
            want: (Initiator::Unknown, None, false),
        },
        Case {
            name: "an operator's kill from the host: nothing from the kubelet",
            kernel: Initiator::Host,
            pod: pod_json(),
            events: vec![],
            want: (Initiator::Host, None, false),
        },
        Case {
            name: "the kernel decided: no API evidence changes it",
            kernel: Initiator::OomKiller,
            pod: with(pod_json(), |p| deleted(p, "2026-12-03T10:00:30Z", 30)),
            events: vec![killing(
                "Container api failed liveness probe, will be restarted",
            )],
            want: (Initiator::OomKiller, None, true),
        },
    ]
}

#[test]
fn every_initiator_from_the_pod_and_the_kubelets_events() {
    for case in cases() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(case.pod).unwrap();
        let pod = PodTermination::from_pod(&pod);
        let events: Vec<KubeletEvent> =
            case.events.iter().filter_map(KubeletEvent::parse).collect();
        assert_eq!(
            events.len(),
            case.events.len(),
            "{}: events parse",
            case.name
        );
        let got = decide(&death(case.kernel), &pod, &events);
        let (initiator, grace, settled) = case.want;
        assert_eq!(
            (got.initiator, got.grace_allowed_seconds, got.settled),
            (initiator, grace, settled),
            "{}",
            case.name
        );
    }
}

#[test]
fn the_cases_cover_every_initiator_the_api_decides() {
    let decided: std::collections::HashSet<Initiator> = cases().iter().map(|c| c.want.0).collect();
    for i in [
        Initiator::LivenessProbe,
        Initiator::StartupProbe,
        Initiator::PodDeletion,
        Initiator::Eviction,
        Initiator::ApiEviction,
        Initiator::Preemption,
        Initiator::TaintEviction,
        Initiator::NodeShutdown,
        Initiator::SpecChange,
        Initiator::RestartPolicy,
        Initiator::Host,
        Initiator::Unknown,
    ] {
        assert!(decided.contains(&i), "no case for {}", i.as_str());
    }
}

#[test]
fn without_the_api_only_what_the_kernel_knows() {
    assert_eq!(without_api(Initiator::Host), Initiator::Unknown);
    assert_eq!(without_api(Initiator::Unknown), Initiator::Unknown);
    for i in [
        Initiator::OomKiller,
        Initiator::Kernel,
        Initiator::SelfInflicted,
        Initiator::AnotherContainer,
        Initiator::Exited,
    ] {
        assert_eq!(without_api(i), i);
    }
}

#[test]
fn a_container_name_not_yet_known_still_gets_the_pods_reason() {
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(with(pod_json(), |p| deleted(p, "2026-12-03T10:00:30Z", 30)))
            .unwrap();
    let pod = PodTermination::from_pod(&pod);
    let mut d = death(Initiator::Host);
    d.container = None;
    let got = decide(&d, &pod, &[]);
    assert_eq!(
        (got.initiator, got.grace_allowed_seconds),
        (Initiator::PodDeletion, Some(30))
    );
}
