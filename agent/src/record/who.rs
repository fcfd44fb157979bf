//! Who a dead process was to its container (`role`) and who decided its death (`initiator`):
//! the two closed vocabularies of the contract besides the verdict.

use serde::{Deserialize, Serialize};

/// Who decided a death. The kernel decides some at once (the OOM killer, a fault, the process
/// itself, a clean exit); a stop signal from the host is the kubelet's doing only when the
/// kubelet or a controller says so.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Initiator {
    OomKiller,
    /// A fault or another signal the kernel raised.
    Kernel,
    /// The process itself, or another process of its own container.
    #[serde(rename = "self")]
    SelfInflicted,
    LivenessProbe,
    StartupProbe,
    /// `deletionTimestamp` set: a rollout, a scale-down, `kubectl delete`, the pod GC.
    PodDeletion,
    /// Node-pressure eviction by the kubelet.
    Eviction,
    /// The Eviction API (a drain).
    ApiEviction,
    Preemption,
    TaintEviction,
    NodeShutdown,
    /// The kubelet restarted a container whose definition changed.
    SpecChange,
    /// The pod's restart policy or restart rules ended it (its other containers finished,
    /// `RestartAllContainers`).
    RestartPolicy,
    AnotherContainer,
    /// A host process that is not the runtime acting for the kubelet.
    Host,
    /// No signal: the process exited by itself.
    Exited,
    #[default]
    Unknown,
}

impl Initiator {
    pub const ALL: [Initiator; 17] = [
        Initiator::OomKiller,
        Initiator::Kernel,
        Initiator::SelfInflicted,
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
        Initiator::AnotherContainer,
        Initiator::Host,
        Initiator::Exited,
        Initiator::Unknown,
    ];

    /// The string of the contract, as in JSON and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Initiator::OomKiller => "oom_killer",
            Initiator::Kernel => "kernel",
            Initiator::SelfInflicted => "self",
            Initiator::LivenessProbe => "liveness_probe",
            Initiator::StartupProbe => "startup_probe",
            Initiator::PodDeletion => "pod_deletion",
            Initiator::Eviction => "eviction",
            Initiator::ApiEviction => "api_eviction",
            Initiator::Preemption => "preemption",
            Initiator::TaintEviction => "taint_eviction",
            Initiator::NodeShutdown => "node_shutdown",
            Initiator::SpecChange => "spec_change",
            Initiator::RestartPolicy => "restart_policy",
            Initiator::AnotherContainer => "another_container",
            Initiator::Host => "host",
            Initiator::Exited => "exited",
            Initiator::Unknown => "unknown",
        }
    }

    /// Only the Kubernetes API can tell who this was: a stop signal from the host (`Host`) or
    /// one whose sender was not seen (`Unknown`).
    #[must_use]
    pub const fn needs_api(self) -> bool {
        matches!(self, Initiator::Host | Initiator::Unknown)
    }
}

/// What a process was to its container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The container's first process: what the kubelet restarts. Its death is the
    /// container's.
    Init,
    /// Entered from outside after the init started: exec probes, `kubectl exec`.
    Exec,
    /// Forked inside the container.
    Child,
    /// The runtime's helpers, which never run the container's command (runc's bootstrap).
    Runtime,
    /// The pod sandbox's process (`pause`): its death is the pod's teardown, not a crash.
    Sandbox,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Init,
        Role::Exec,
        Role::Child,
        Role::Runtime,
        Role::Sandbox,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Init => "init",
            Role::Exec => "exec",
            Role::Child => "child",
            Role::Runtime => "runtime",
            Role::Sandbox => "sandbox",
        }
    }
}
