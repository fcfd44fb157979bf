//! The kubelet's side towards the API server, against the suite's double: the pod object with
//! the container statuses the runtime reports (real `containerd://<id>` ids, running or
//! terminated with the runtime's exit code, reason and message), and the kubelet's core/v1
//! Events (`Created`, `Started`, `Killing`, …) about a pod's containers.

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod as ApiPod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::images;
use super::kubelet::Kubelet;
use super::spec::{Pod, Status};
use crate::apiserver::ApiServer;
use crate::cgroups::unique_hex;

/// The pod as the kubelet writes it for `node`: spec and one status per container name, from
/// the runtime's `ContainerStatus` now (see [`by_name`]).
pub fn pod_object(kubelet: &Kubelet, node: &str, pod: &Pod) -> Result<ApiPod> {
    let statuses = by_name(kubelet.pod_containers(pod)?);
    let containers = statuses
        .iter()
        .map(|(s, _)| Container {
            name: s.name.clone(),
            image: Some(images::TEST.into()),
            ..Container::default()
        })
        .collect();
    let running = statuses.iter().any(|(s, _)| s.state == "CONTAINER_RUNNING");
    Ok(ApiPod {
        metadata: ObjectMeta {
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            host_network: Some(true),
            containers,
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(if running { "Running" } else { "Succeeded" }.into()),
            container_statuses: Some(
                statuses
                    .iter()
                    .map(|(s, last)| container_status(s, last.as_ref()))
                    .collect(),
            ),
            ..PodStatus::default()
        }),
    })
}

/// The runtime's containers of a pod as the kubelet publishes them
/// (`convertToAPIContainerStatuses`): per name, the newest attempt, and the attempt before it
/// when that one has exited (its `lastState`). Older attempts are not published: a record may
/// name an id the pod's status no longer shows.
fn by_name(mut statuses: Vec<Status>) -> Vec<(Status, Option<Status>)> {
    statuses.sort_by(|a, b| a.name.cmp(&b.name).then(b.attempt.cmp(&a.attempt)));
    let mut out: Vec<(Status, Option<Status>)> = Vec::new();
    for s in statuses {
        match out.last_mut() {
            Some((newest, last)) if newest.name == s.name => {
                if last.is_none() && s.exited() {
                    *last = Some(s);
                }
            }
            _ => out.push((s, None)),
        }
    }
    out
}

/// What the kubelet's status manager writes for one container: its newest attempt's state,
/// the one before in `lastState`, the newest attempt as `restartCount`.
fn container_status(s: &Status, last: Option<&Status>) -> ContainerStatus {
    let id = format!("containerd://{}", s.id);
    ContainerStatus {
        name: s.name.clone(),
        container_id: Some(id),
        image: images::TEST.into(),
        image_id: images::TEST.into(),
        ready: s.state == "CONTAINER_RUNNING",
        started: Some(s.state == "CONTAINER_RUNNING"),
        restart_count: i32::try_from(s.attempt).unwrap_or(i32::MAX),
        state: Some(state(s)),
        last_state: last.map(state),
        ..ContainerStatus::default()
    }
}

/// One attempt's `ContainerState`: running, terminated with the runtime's exit code, reason
/// and message, or waiting.
fn state(s: &Status) -> ContainerState {
    let id = format!("containerd://{}", s.id);
    match s.state.as_str() {
        "CONTAINER_RUNNING" => ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        },
        "CONTAINER_EXITED" => ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(id),
                exit_code: s.exit_code,
                reason: Some(s.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(s.message.clone()).filter(|m| !m.is_empty()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                ..ContainerStateWaiting::default()
            }),
            ..ContainerState::default()
        },
    }
}

/// Puts `pod` with its containers' current statuses into the double; returns what it stored.
pub fn publish(kubelet: &Kubelet, server: &ApiServer, node: &str, pod: &Pod) -> Result<Value> {
    Ok(server.put_pod(&pod_object(kubelet, node, pod)?))
}

/// `now` as the API writes a `metav1.Time`: RFC 3339 in whole seconds.
fn now_seconds() -> Result<String> {
    Ok(OffsetDateTime::now_utc()
        .replace_nanosecond(0)?
        .format(&Rfc3339)?)
}

/// Posts a core/v1 Event about container `container` of `pod`, as the kubelet's recorder does
/// (`source.component: kubelet`, times in whole seconds); `kind` is `Normal` or `Warning`.
pub fn post_event(
    server: &ApiServer,
    node: &str,
    pod: &Pod,
    container: &str,
    (kind, reason, message): (&str, &str, &str),
) -> Result<Value> {
    let now = now_seconds()?;
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{}", pod.name, unique_hex(16)),
            "namespace": pod.namespace,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "fieldPath": format!("spec.containers{{{container}}}"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": { "component": "kubelet", "host": node },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    });
    post(
        server,
        &format!("/api/v1/namespaces/{}/events", pod.namespace),
        &event,
    )
}

/// The same Event through events.k8s.io/v1, as a recorder of the new API writes it (`regarding`,
/// `note`, `reportingController`, `eventTime` in microseconds).
pub fn post_events_v1_event(
    server: &ApiServer,
    node: &str,
    pod: &Pod,
    container: &str,
    (kind, reason, message): (&str, &str, &str),
) -> Result<Value> {
    let at = OffsetDateTime::now_utc();
    let event_time = at
        .replace_nanosecond(at.nanosecond() / 1000 * 1000)?
        .format(&Rfc3339)?;
    let event = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{}", pod.name, unique_hex(16)),
            "namespace": pod.namespace,
        },
        "regarding": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "fieldPath": format!("spec.containers{{{container}}}"),
        },
        "reason": reason,
        "note": message,
        "type": kind,
        "action": reason,
        "eventTime": event_time,
        "reportingController": "kubelet",
        "reportingInstance": node,
    });
    post(
        server,
        &format!("/apis/events.k8s.io/v1/namespaces/{}/events", pod.namespace),
        &event,
    )
}

/// `POST path` with `body` to the double, as a client of the API does.
fn post(server: &ApiServer, path: &str, body: &Value) -> Result<Value> {
    let body = serde_json::to_string(body)?;
    let addr = server
        .url()
        .strip_prefix("http://")
        .context("the double's URL is http")?
        .parse()?;
    let answer = crate::http::exchange(
        addr,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )?;
    if answer.status != 201 && answer.status != 200 {
        bail!("posting an Event: {} {}", answer.status, answer.body);
    }
    Ok(serde_json::from_str(&answer.body)?)
}
