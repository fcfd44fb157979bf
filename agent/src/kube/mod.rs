//! Pod metadata from the Kubernetes API server, and Kubernetes Events on the pod.

/// What the API server knows of a container: the labels of a record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMetadata {
    pub namespace: String,
    pub pod: String,
    /// `None` while the container id has not reached the pod's status yet.
    pub container: Option<String>,
    /// The workload: Deployment, StatefulSet, DaemonSet, Job, CronJob, or the direct owner.
    pub owner_kind: Option<String>,
    pub owner_name: Option<String>,
}
