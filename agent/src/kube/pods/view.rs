//! What the agent keeps of a pod: a few strings, not the whole object (a node runs hundreds of
//! pods and the watcher replays every status change).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::kube::kubelet::PodTermination;

/// Which list of the pod spec a container belongs to: Events name it in `fieldPath` the way the
/// kubelet does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Regular,
    Init,
    Ephemeral,
}

impl ContainerKind {
    /// The `fieldPath` of an object reference to this container, as the kubelet writes it.
    #[must_use]
    pub fn field_path(self, name: &str) -> String {
        let list = match self {
            ContainerKind::Regular => "containers",
            ContainerKind::Init => "initContainers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        };
        format!("spec.{list}{{{name}}}")
    }
}

/// A container id the pod status has carried, with the container's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSeen {
    /// Without the runtime prefix (`containerd://` …), as the cgroup path spells it.
    pub id: String,
    pub name: String,
    pub kind: ContainerKind,
    /// The message of the terminated state that carries this id: the runtime's error when it
    /// could not start the container, else what the container wrote to its termination log.
    pub terminated_message: Option<String>,
}

/// The pod's controlling owner, as its `ownerReferences` name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

/// The part of a pod the index keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub owner: Option<OwnerRef>,
    /// The `pod-template-hash` label a `Deployment`'s `ReplicaSet` puts on its pods.
    pub template_hash: Option<String>,
    /// Every container id in the status now: current, `state.terminated` and
    /// `lastState.terminated` (the one that died before a restart).
    pub containers: Vec<ContainerSeen>,
    /// Deletion, disruption, status reason, grace periods: what the initiator is read from.
    pub termination: Arc<PodTermination>,
    /// The pod opted out: annotated [`IGNORE_ANNOTATION`]`: "true"`.
    pub ignored: bool,
}

/// The annotation by which a pod opts out of coroner: its deaths get no record, no metric and
/// no Event (they are only counted).
pub const IGNORE_ANNOTATION: &str = "coroner.io/ignore";

impl PodView {
    /// `None` for an object without uid, name or namespace (the API server never sends one).
    #[must_use]
    pub fn from_pod(pod: &Pod) -> Option<PodView> {
        let meta = &pod.metadata;
        let uid = meta.uid.clone().filter(|u| !u.is_empty())?;
        let name = meta.name.clone().filter(|n| !n.is_empty())?;
        let namespace = meta.namespace.clone().filter(|n| !n.is_empty())?;
        let owners = meta.owner_references.as_deref().unwrap_or_default();
        // The controller is the workload; a pod with owners but no controller gets its first.
        let owner = owners
            .iter()
            .find(|o| o.controller == Some(true))
            .or_else(|| owners.first())
            .map(|o| OwnerRef {
                kind: o.kind.clone(),
                name: o.name.clone(),
            });
        let template_hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .cloned();
        // Only the exact "true", as Kubernetes' own boolean annotations read.
        let ignored = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(IGNORE_ANNOTATION))
            .is_some_and(|v| v == "true");
        let mut containers = Vec::new();
        if let Some(status) = &pod.status {
            let lists = [
                (ContainerKind::Regular, &status.container_statuses),
                (ContainerKind::Init, &status.init_container_statuses),
                (
                    ContainerKind::Ephemeral,
                    &status.ephemeral_container_statuses,
                ),
            ];
            for (kind, list) in lists {
                for cs in list.iter().flatten() {
                    collect_ids(cs, kind, &mut containers);
                }
            }
        }
        Some(PodView {
            uid,
            namespace,
            name,
            owner,
            template_hash,
            containers,
            termination: Arc::new(PodTermination::from_pod(pod)),
            ignored,
        })
    }
}

/// A dead container's id is in `state.terminated` until the kubelet restarts it, then in
/// `lastState.terminated`; the top-level `containerID` is the current one.
fn collect_ids(cs: &ContainerStatus, kind: ContainerKind, out: &mut Vec<ContainerSeen>) {
    let terminated = |s: &Option<k8s_openapi::api::core::v1::ContainerState>| {
        s.as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| Some((t.container_id.clone()?, t.message.clone())))
    };
    let ended = [terminated(&cs.state), terminated(&cs.last_state)];
    let ids = [
        cs.container_id.clone(),
        ended[0].as_ref().map(|e| e.0.clone()),
        ended[1].as_ref().map(|e| e.0.clone()),
    ];
    for raw in ids.into_iter().flatten() {
        // A terminated state carries the message of the id it names.
        let message = ended
            .iter()
            .flatten()
            .find(|(ended_id, _)| *ended_id == raw)
            .and_then(|(_, message)| message.clone());
        let id = strip_runtime_prefix(&raw);
        if id.is_empty() || out.iter().any(|c| c.id == id) {
            continue;
        }
        out.push(ContainerSeen {
            id: id.to_owned(),
            name: cs.name.clone(),
            terminated_message: message.filter(|m| !m.is_empty()),
            kind,
        });
    }
}

/// `containerd://abc…` → `abc…`; ids without a prefix are returned as they are.
#[must_use]
pub fn strip_runtime_prefix(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn terminated(id: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(id.into()),
                exit_code: 137,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn annotated(value: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some("u".into()),
                name: Some("p".into()),
                namespace: Some("ns".into()),
                annotations: value.map(|v| [(IGNORE_ANNOTATION.to_owned(), v.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_an_exact_true_opts_a_pod_out() {
        let ignored = |v| PodView::from_pod(&annotated(v)).map(|p| p.ignored);
        assert_eq!(ignored(Some("true")), Some(true));
        assert_eq!(ignored(None), Some(false));
        for not_true in ["false", "", "yes", "1", "True "] {
            assert_eq!(ignored(Some(not_true)), Some(false), "{not_true:?}");
        }
    }

    #[test]
    fn a_terminated_state_gives_its_id_the_message() {
        let mut failed = terminated("containerd://start-failed");
        if let Some(t) = failed.terminated.as_mut() {
            t.message = Some("exec: \"/nope\": stat /nope: no such file or directory".into());
        }
        let pod = Pod {
            metadata: ObjectMeta {
                uid: Some("u".into()),
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![
                    ContainerStatus {
                        name: "app".into(),
                        container_id: Some("containerd://start-failed".into()),
                        state: Some(failed),
                        last_state: Some(terminated("containerd://before")),
                        ..Default::default()
                    },
                    ContainerStatus {
                        name: "side".into(),
                        container_id: Some("containerd://running".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let view = PodView::from_pod(&pod).expect("a pod");
        let message = |id: &str| {
            view.containers
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.terminated_message.clone())
        };
        assert_eq!(
            message("start-failed"),
            Some(Some(
                "exec: \"/nope\": stat /nope: no such file or directory".into()
            ))
        );
        assert_eq!(message("before"), Some(None), "no message, none made up");
        assert_eq!(message("running"), Some(None));
    }

    #[test]
    fn strips_every_runtime_prefix() {
        assert_eq!(strip_runtime_prefix("containerd://abc"), "abc");
        assert_eq!(strip_runtime_prefix("cri-o://abc"), "abc");
        assert_eq!(strip_runtime_prefix("docker://abc"), "abc");
        assert_eq!(strip_runtime_prefix("abc"), "abc");
    }

    #[test]
    fn keeps_current_terminated_and_last_ids_of_every_list() {
        let pod = Pod {
            metadata: ObjectMeta {
                uid: Some("u1".into()),
                name: Some("api-7d4b9c-x2x".into()),
                namespace: Some("shop".into()),
                labels: Some([("pod-template-hash".into(), "7d4b9c".into())].into()),
                owner_references: Some(vec![
                    OwnerReference {
                        kind: "Something".into(),
                        name: "other".into(),
                        ..Default::default()
                    },
                    OwnerReference {
                        kind: "ReplicaSet".into(),
                        name: "api-7d4b9c".into(),
                        controller: Some(true),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "api".into(),
                    container_id: Some("containerd://new".into()),
                    last_state: Some(terminated("containerd://old")),
                    ..Default::default()
                }]),
                init_container_statuses: Some(vec![ContainerStatus {
                    name: "migrate".into(),
                    container_id: Some("containerd://init".into()),
                    state: Some(terminated("containerd://init")),
                    ..Default::default()
                }]),
                ephemeral_container_statuses: Some(vec![ContainerStatus {
                    name: "debug".into(),
                    state: Some(terminated("cri-o://eph")),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let view = PodView::from_pod(&pod).unwrap();
        assert_eq!(
            view.owner,
            Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "api-7d4b9c".into()
            })
        );
        assert_eq!(view.template_hash.as_deref(), Some("7d4b9c"));
        let ids: Vec<_> = view
            .containers
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            ids,
            [
                ("new", "api", ContainerKind::Regular),
                ("old", "api", ContainerKind::Regular),
                ("init", "migrate", ContainerKind::Init),
                ("eph", "debug", ContainerKind::Ephemeral),
            ]
        );
        assert_eq!(
            ContainerKind::Init.field_path("migrate"),
            "spec.initContainers{migrate}"
        );
    }

    #[test]
    fn an_object_without_identity_is_refused() {
        assert_eq!(PodView::from_pod(&Pod::default()), None);
    }
}
