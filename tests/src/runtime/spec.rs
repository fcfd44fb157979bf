//! What the kubelet double says to the runtime and hears back: the pod and container specs the
//! CRI calls carry, the pods it runs, the runtime's status of a container, an exec's result.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use k8s_cri::v1::{NamespaceMode, NamespaceOption, PodSandboxConfig};

use crate::cgroups::unique_hex;

/// A pod's `QoS` class: where the cgroupfs driver puts its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// What the pod spec says that the CRI calls carry.
#[derive(Clone, Debug)]
pub struct PodOptions {
    pub namespace: String,
    pub name: String,
    pub qos: Qos,
    /// `shareProcessNamespace: true`: one PID namespace for the pod (the pause process is
    /// its PID 1).
    pub share_pid: bool,
}

impl Default for PodOptions {
    fn default() -> Self {
        Self {
            namespace: "coroner-test".into(),
            name: format!("pod-{}", unique_hex(6)),
            qos: Qos::Burstable,
            share_pid: false,
        }
    }
}

/// A pod sandbox this kubelet runs.
#[derive(Clone, Debug)]
pub struct Pod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub sandbox_id: String,
    /// `/kubepods/<qos>/pod<uid>`: the containers' cgroups are `<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
    pub(super) config: PodSandboxConfig,
}

impl Pod {
    /// The memory cgroup path of container `id` as a record names it.
    #[must_use]
    pub fn cgroup_of(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }
}

/// A container of a pod spec.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `resources.limits.memory`, bytes.
    pub memory_limit: Option<u64>,
    /// The CRI `attempt`: the kubelet's restart count of the container (the runtime refuses
    /// a second container of the same name and attempt in a pod).
    pub attempt: u32,
}

impl ContainerSpec {
    /// `command` as the container's command (the image's entrypoint replaced).
    #[must_use]
    pub fn new(name: &str, command: &[&str]) -> Self {
        Self {
            name: name.into(),
            command: command.iter().map(|s| (*s).to_string()).collect(),
            ..Self::default()
        }
    }

    /// `/bin/sh -c script`.
    #[must_use]
    pub fn sh(name: &str, script: &str) -> Self {
        Self::new(name, &["/bin/sh", "-c", script])
    }
}

/// The runtime's view of a container (`ContainerStatus`, verbose).
#[derive(Clone, Debug)]
pub struct Status {
    pub id: String,
    pub name: String,
    /// The CRI `attempt` it was created with: the kubelet's restart count.
    pub attempt: u32,
    /// `CONTAINER_CREATED`, `CONTAINER_RUNNING`, `CONTAINER_EXITED`, `CONTAINER_UNKNOWN`.
    pub state: String,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The init's pid in the root PID namespace (from the verbose info); 0 once it is gone.
    pub pid: u32,
}

impl Status {
    #[must_use]
    pub fn exited(&self) -> bool {
        self.state == "CONTAINER_EXITED"
    }
}

/// What `ExecSync` answered.
#[derive(Clone, Debug)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Host network and IPC of the pod; the PID namespace the pod's or each container's own.
pub(super) fn namespaces(share_pid: bool) -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: if share_pid {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Container
        } as i32,
        ipc: NamespaceMode::Pod as i32,
        ..NamespaceOption::default()
    }
}

/// `"pid"` of the JSON in a verbose answer's `info` map.
pub(super) fn pid_of(info: &HashMap<String, String>) -> Result<u32> {
    let text = info.get("info").context("no verbose info")?;
    let json: serde_json::Value = serde_json::from_str(text)?;
    json["pid"]
        .as_u64()
        .map(|p| p as u32)
        .with_context(|| format!("no pid in {text}"))
}
