//! Pod metadata from the Kubernetes API server, and Kubernetes Events on the pod.
//!
//! [`connect`] gives a [`KubeClient`] (or `None`, standalone), the one handle over three rooms:
//! - `pods/`: a watch of this node's pods feeds an index by pod uid and container id
//!   ([`KubeClient::label`]);
//! - `kubelet/`: who decided a death (the record's `initiator`), read from the kubelet's
//!   publications ([`KubeClient::explain`]);
//! - `recorder/`: deaths become Events through a bounded queue ([`KubeClient::record_event`]).
//!
//! None blocks on the API server: when it is down, lookups answer with what is known once their
//! wait is over, and Events that cannot be posted are counted ([`KubeStats::events_lost`]).
//! RBAC: `RBAC.md`.

mod client;
mod handle;
mod kubelet;
mod pods;
mod recorder;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{KubeClient, KubeError, connect};
pub use kubelet::without_api as initiator_without_api;
#[cfg(any(test, feature = "fuzzing"))]
pub use pods::object_checks;
pub use pods::{ContainerKind, IGNORE_ANNOTATION, OwnerLimits, OwnerSource, strip_runtime_prefix};
pub use recorder::message;
pub use recorder::{
    ACTION as EVENT_ACTION, EventOptions, EventTypes, LOOP_REASON as CRASH_LOOP_REASON,
    LoopOptions, NamespaceFilter, Rate,
};
pub use stats::KubeStats;

use crate::record::TerminationRecord;

/// What the API server knows of a container: the labels of a record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMetadata {
    pub namespace: String,
    pub pod: String,
    /// `None` while the container id has not reached the pod's status yet.
    pub container: Option<String>,
    /// The workload: `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, or the direct
    /// owner.
    pub owner_kind: Option<String>,
    pub owner_name: Option<String>,
    /// The container's terminated message in the pod status, for the record's `message`.
    pub message: Option<String>,
}

/// `--kube`: where pod metadata comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeMode {
    /// In-cluster config or `KUBECONFIG`; standalone with a warning when there is neither.
    #[default]
    Auto,
    /// The API server is required: no config is an error.
    On,
    /// Standalone: no API server.
    Off,
}

/// How complete a lookup's answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOutcome {
    /// Pod and container known.
    Complete,
    /// The pod is known, its status never named the container id within the wait: the
    /// metadata has no container name.
    PodOnly,
    /// Nothing known: the pod is not (yet) in the index, or the watch is down.
    Unknown,
}

/// The answer of [`KubeClient::label`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labelled {
    /// `None` when the pod is unknown.
    pub metadata: Option<PodMetadata>,
    pub outcome: LabelOutcome,
    /// How the owner was found; `None` for a pod without owner (or unknown).
    pub owner_source: Option<OwnerSource>,
    /// The container's place in the pod spec, when known.
    pub container_kind: Option<ContainerKind>,
    /// The pod is annotated [`IGNORE_ANNOTATION`]`: "true"`: its deaths produce nothing (see
    /// [`KubeClient::count_opted_out`]). `false` for an unknown pod: its deaths are recorded.
    pub opted_out: bool,
}

impl Labelled {
    /// Not everything was known: the caller counts the record as not (fully) labelled.
    #[must_use]
    pub fn is_partial(&self) -> bool {
        self.outcome != LabelOutcome::Complete
    }

    /// Writes what is known into the record's `namespace`, `pod`, `container`, `owner_*`
    /// (fields unknown here are left as they were).
    pub fn apply_to(&self, record: &mut TerminationRecord) {
        let Some(m) = &self.metadata else {
            return;
        };
        record.namespace = Some(m.namespace.clone());
        record.pod = Some(m.pod.clone());
        if m.container.is_some() {
            record.container.clone_from(&m.container);
        }
        if m.owner_kind.is_some() {
            record.owner_kind.clone_from(&m.owner_kind);
            record.owner_name.clone_from(&m.owner_name);
        }
        // The message is the container's: only its init's death is the one it describes.
        if record.main_process && m.message.is_some() {
            record.message.clone_from(&m.message);
        }
    }
}

/// Tuning of the Kubernetes side; [`KubeOptions::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// The node whose pods are watched (`spec.nodeName`).
    pub node_name: String,
    /// A kubeconfig to use instead of in-cluster config or `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// How long a record waits for the API ([`KubeClient::api_deadline`]): for its container id
    /// to reach the pod's status and for the kubelet's Events on its death.
    pub label_wait: Duration,
    /// Lookups allowed to wait at once; the others answer at once with what is known.
    pub max_waiting_lookups: usize,
    /// How long a deleted pod stays in the index.
    pub deleted_retention: Duration,
    /// Pods in the index, live and deleted (live pods are never evicted).
    pub max_pods: usize,
    pub owners: OwnerLimits,
    pub events: EventOptions,
}

/// No lookup waits longer than this, whatever its caller asks.
pub const MAX_LABEL_WAIT: Duration = Duration::from_secs(30);

impl KubeOptions {
    #[must_use]
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            kubeconfig: None,
            label_wait: Duration::from_secs(3),
            max_waiting_lookups: 256,
            deleted_retention: Duration::from_mins(5),
            // kubelet's --max-pods is 110 by default and rarely above 500; deleted pods of a
            // busy node (Jobs) come on top.
            max_pods: 4096,
            owners: OwnerLimits::default(),
            events: EventOptions::default(),
        }
    }
}
