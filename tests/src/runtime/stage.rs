//! What the kubelet and the controllers publish about one pod the kubelet double runs: the pod as
//! the kubelet writes it (its containers' statuses from the runtime) with the changes others
//! made to it — a deletion, a `DisruptionTarget` condition, a status reason — kept and applied
//! again at every publication, as the API server keeps them; the kubelet's Events; and the
//! kubelet's stop of a container (`StopContainer` with the grace period).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod as ApiPod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::publish::{pod_object, post_event, post_events_v1_event};
use super::{Cluster, ContainerSpec, Handler, Pod, PodOptions, Status};
use crate::agent::Record;

/// How long a container may take to exit once stopped (the grace included).
const EXIT_WAIT: Duration = Duration::from_secs(20);
/// How long a record may take once the runtime reports the death (the agent's wait for the
/// API, 3 s by default, included).
const RECORD_WAIT: Duration = Duration::from_secs(15);

/// A change to the pod object that others than the kubelet's status manager made.
pub type Edit = Box<dyn Fn(&mut ApiPod)>;

/// One pod on the cluster's node and what is published about it.
pub struct Staged {
    pub cluster: Cluster,
    pub pod: Pod,
    /// Each container's name and its runtime status right after it started.
    containers: Vec<(String, Status)>,
    edits: Vec<Edit>,
}

impl Staged {
    /// Starts the cluster, runs `specs` in one pod and publishes it; `None` when not root.
    #[must_use]
    pub fn start(test: &str, handler: Handler, specs: &[ContainerSpec]) -> Option<Self> {
        let mut cluster = Cluster::start(test, handler, &[])?;
        let pod = cluster
            .kubelet
            .run_pod(&PodOptions::default())
            .expect("RunPodSandbox");
        let containers = specs
            .iter()
            .map(|spec| {
                let (_, status) = cluster
                    .kubelet
                    .run_container(&pod, spec)
                    .unwrap_or_else(|e| panic!("running {spec:?}: {e:#}"));
                (spec.name.clone(), status)
            })
            .collect();
        let staged = Self {
            cluster,
            pod,
            containers,
            edits: Vec::new(),
        };
        staged.publish();
        Some(staged)
    }

    fn container(&self, name: &str) -> &Status {
        self.containers
            .iter()
            .find_map(|(n, s)| (n == name).then_some(s))
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    /// The runtime's id of container `name`.
    #[must_use]
    pub fn id(&self, name: &str) -> &str {
        &self.container(name).id
    }

    /// The host pid of container `name`'s init when it started.
    #[must_use]
    pub fn pid(&self, name: &str) -> u32 {
        self.container(name).pid
    }

    /// Puts the pod as the kubelet writes it now, with every edit so far.
    pub fn publish(&self) {
        let c = &self.cluster;
        let mut object = pod_object(&c.kubelet, &c.node, &self.pod).expect("the pod's statuses");
        for edit in &self.edits {
            edit(&mut object);
        }
        c.server.put_pod(&object);
    }

    /// Keeps `edit` and publishes the pod with it.
    pub fn edit(&mut self, edit: impl Fn(&mut ApiPod) + 'static) {
        self.edits.push(Box::new(edit));
        self.publish();
    }

    /// The kubelet's core/v1 Event on container `name` (`kind`, `reason`, `message`).
    pub fn kubelet_event(&self, name: &str, what: (&str, &str, &str)) {
        let c = &self.cluster;
        post_event(&c.server, &c.node, &self.pod, name, what).expect("the kubelet's Event");
    }

    /// The same through events.k8s.io/v1.
    pub fn kubelet_events_v1_event(&self, name: &str, what: (&str, &str, &str)) {
        let c = &self.cluster;
        post_events_v1_event(&c.server, &c.node, &self.pod, name, what)
            .expect("the kubelet's Event");
    }

    /// A core/v1 Event on the pod itself (no container), from `component` on this node: the
    /// kubelet's `Evicted`, a controller's.
    pub fn pod_event(&self, component: &str, (kind, reason, message): (&str, &str, &str)) {
        let at = now(0);
        let p = &self.pod;
        self.cluster.server.publish_event(&json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{}", p.name, crate::cgroups::unique_hex(16)),
                         "namespace": p.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": p.namespace,
                               "name": p.name, "uid": p.uid},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": component, "host": self.cluster.node},
            "firstTimestamp": at, "lastTimestamp": at, "count": 1,
        }));
    }

    /// The kubelet's `StopContainer` on container `name` with `grace` seconds, as
    /// `killContainer` calls it; once the runtime reports the container exited, the pod is
    /// published with its terminated status (the kubelet's PLEG and status manager).
    pub fn stop(&self, name: &str, grace: u32) -> Status {
        let id = self.id(name).to_owned();
        let c = &self.cluster;
        c.kubelet.stop_container(&id, grace).expect("StopContainer");
        let exited = c
            .kubelet
            .wait_exited(&id, EXIT_WAIT)
            .expect("the container exits");
        self.publish();
        exited
    }

    /// The kubelet's status manager's last word on a pod being deleted, once its containers
    /// stopped: the delete with grace 0 that removes the object (`canBeDeleted`). Nothing is
    /// published about the pod after it.
    pub fn remove_from_api(&self) {
        let p = &self.pod;
        assert!(
            self.cluster
                .server
                .delete_pod(&p.namespace, &p.name)
                .is_some(),
            "the pod was in the API"
        );
    }

    /// Waits for the record of container `name`'s init.
    pub fn init_record(&mut self, name: &str) -> Record {
        let id = self.id(name).to_owned();
        self.cluster
            .agent
            .wait_for(&format!("the init of {name}"), RECORD_WAIT, |r| {
                r.record.container_id.as_deref() == Some(id.as_str()) && r.field("role") == "init"
            })
            .expect("the init's record")
    }
}

/// Now plus `seconds`, as the API writes a `metav1.Time` (RFC 3339, whole seconds).
#[must_use]
pub fn now(seconds: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .replace_nanosecond(0)
        .expect("0 ns is valid")
        .format(&Rfc3339)
        .expect("RFC 3339")
}

fn time_of(text: &str) -> Time {
    serde_json::from_value(json!(text)).expect("a metav1.Time")
}

/// The API server's part of a deletion with `grace` seconds, from now: `deletionTimestamp` (when
/// the grace ends) and `deletionGracePeriodSeconds`.
pub fn deletion(grace: i64) -> impl Fn(&mut ApiPod) + 'static {
    let end = time_of(&now(grace));
    move |p| {
        p.metadata.deletion_timestamp = Some(end.clone());
        p.metadata.deletion_grace_period_seconds = Some(grace);
    }
}

/// A `True` condition set now (`lastTransitionTime`).
pub fn condition(type_: &str, reason: &str, message: &str) -> impl Fn(&mut ApiPod) + 'static {
    let condition = PodCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(time_of(&now(0))),
        ..PodCondition::default()
    };
    move |p| {
        let status = p.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != condition.type_);
        conditions.push(condition.clone());
    }
}

/// The pod's phase, and its status reason and message when given.
pub fn phase(
    phase: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> impl Fn(&mut ApiPod) + 'static {
    let (phase, reason, message) = (
        phase.to_owned(),
        reason.map(str::to_owned),
        message.map(str::to_owned),
    );
    move |p| {
        let status = p.status.get_or_insert_with(Default::default);
        status.phase = Some(phase.clone());
        status.reason.clone_from(&reason);
        status.message.clone_from(&message);
    }
}

/// Container `name` as a sidecar: in `initContainers` with `restartPolicy: Always`, its status in
/// `initContainerStatuses` (the kubelet double runs it as any container).
pub fn sidecar(name: &str) -> impl Fn(&mut ApiPod) + 'static {
    let name = name.to_owned();
    move |p| {
        if let Some(spec) = p.spec.as_mut() {
            let (mut moved, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut spec.containers)
                .into_iter()
                .partition(|c| c.name == name);
            spec.containers = kept;
            for c in &mut moved {
                c.restart_policy = Some("Always".into());
            }
            spec.init_containers = Some(moved);
        }
        if let Some(status) = p.status.as_mut() {
            let (moved, kept): (Vec<_>, Vec<_>) = status
                .container_statuses
                .take()
                .unwrap_or_default()
                .into_iter()
                .partition(|c| c.name == name);
            status.container_statuses = Some(kept);
            status.init_container_statuses = Some(moved);
        }
    }
}
