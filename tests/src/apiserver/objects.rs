//! Pods, `ReplicaSet`s and `Job`s as the API server writes them, built with k8s-openapi types.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// A pod on `node`, with no containers yet.
#[must_use]
pub fn pod(namespace: &str, name: &str, uid: &str, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: Vec::new(),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        }),
    }
}

/// `controller: true` owner reference, as a controller sets it.
#[must_use]
pub fn controlled_by(
    mut meta: ObjectMeta,
    api_version: &str,
    kind: &str,
    name: &str,
) -> ObjectMeta {
    meta.owner_references
        .get_or_insert_with(Vec::new)
        .push(OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{kind}-{name}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
    meta
}

#[must_use]
pub fn with_owner(mut pod: Pod, api_version: &str, kind: &str, name: &str) -> Pod {
    pod.metadata = controlled_by(pod.metadata, api_version, kind, name);
    pod
}

#[must_use]
pub fn with_label(mut pod: Pod, key: &str, value: &str) -> Pod {
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
    pod
}

/// Adds a running container `name` with runtime id `containerd://<id>` to spec and status.
#[must_use]
pub fn with_running(mut pod: Pod, name: &str, id: &str) -> Pod {
    add_container(&mut pod, name);
    status_of(&mut pod).push(ContainerStatus {
        name: name.into(),
        container_id: Some(format!("containerd://{id}")),
        image: "registry.example/app:1".into(),
        image_id: "registry.example/app@sha256:00".into(),
        ready: true,
        restart_count: 0,
        started: Some(true),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    });
    pod
}

/// Adds a container `name` in the spec only: its status has no id yet (it is being created).
#[must_use]
pub fn with_waiting(mut pod: Pod, name: &str) -> Pod {
    add_container(&mut pod, name);
    status_of(&mut pod).push(ContainerStatus {
        name: name.into(),
        image: "registry.example/app:1".into(),
        ..ContainerStatus::default()
    });
    pod
}

/// Marks container `name` terminated with `id` (what the kubelet writes after the death).
#[must_use]
pub fn with_terminated(mut pod: Pod, name: &str, id: &str, exit_code: i32) -> Pod {
    let statuses = status_of(&mut pod);
    let terminated = ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("containerd://{id}")),
            exit_code,
            reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    };
    match statuses.iter_mut().find(|s| s.name == name) {
        Some(s) => {
            s.container_id = Some(format!("containerd://{id}"));
            s.state = Some(terminated);
            s.ready = false;
        }
        None => statuses.push(ContainerStatus {
            name: name.into(),
            container_id: Some(format!("containerd://{id}")),
            state: Some(terminated),
            ..ContainerStatus::default()
        }),
    }
    pod
}

/// Adds an init container `name` that ran and exited 0 as `containerd://<id>`.
#[must_use]
pub fn with_init_completed(mut pod: Pod, name: &str, id: &str) -> Pod {
    if let Some(spec) = &mut pod.spec {
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .push(Container {
                name: name.into(),
                image: Some("registry.example/app:1".into()),
                ..Container::default()
            });
    }
    pod.status
        .get_or_insert_with(PodStatus::default)
        .init_container_statuses
        .get_or_insert_with(Vec::new)
        .push(ContainerStatus {
            name: name.into(),
            container_id: Some(format!("containerd://{id}")),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(format!("containerd://{id}")),
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        });
    pod
}

fn add_container(pod: &mut Pod, name: &str) {
    if let Some(spec) = &mut pod.spec {
        spec.containers.push(Container {
            name: name.into(),
            image: Some("registry.example/app:1".into()),
            ..Container::default()
        });
    }
}

fn status_of(pod: &mut Pod) -> &mut Vec<ContainerStatus> {
    pod.status
        .get_or_insert_with(PodStatus::default)
        .container_statuses
        .get_or_insert_with(Vec::new)
}

#[must_use]
pub fn replicaset(namespace: &str, name: &str, deployment: Option<&str>) -> ReplicaSet {
    let mut meta = ObjectMeta {
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: Some(format!("uid-ReplicaSet-{name}")),
        ..ObjectMeta::default()
    };
    if let Some(d) = deployment {
        meta = controlled_by(meta, "apps/v1", "Deployment", d);
    }
    ReplicaSet {
        metadata: meta,
        ..ReplicaSet::default()
    }
}

#[must_use]
pub fn job(namespace: &str, name: &str, cronjob: Option<&str>) -> Job {
    let mut meta = ObjectMeta {
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: Some(format!("uid-Job-{name}")),
        ..ObjectMeta::default()
    };
    if let Some(c) = cronjob {
        meta = controlled_by(meta, "batch/v1", "CronJob", c);
    }
    Job {
        metadata: meta,
        ..Job::default()
    }
}
