//! A kubelet double: drives the test's containerd through the CRI v1 gRPC API the way the
//! kubelet does — `RunPodSandbox` with a host-network sandbox under the cgroupfs driver's
//! `/kubepods/<qos>/pod<uid>`, `CreateContainer` + `StartContainer`, `ExecSync` for exec probes,
//! `StopContainer` with the grace period as timeout (containerd sends the stop signal, then
//! SIGKILL when it runs out), `StopPodSandbox`, `RemovePodSandbox` — and reads the runtime's own
//! view back with `ContainerStatus`.
//!
//! The calls block (a Tokio runtime of its own runs them), so tests stay plain `#[test]`s like
//! the rest of the suite. Dropping it removes every pod it made, then its containerd.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListContainersRequest, NamespaceMode, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StatusRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::containerd::{Containerd, Handler};
use super::host::remove_pod_cgroups;
use super::images;
use super::spec::{ContainerSpec, ExecResult, Pod, PodOptions, Qos, Status, namespaces, pid_of};
use crate::cgroups::pod_uid;

/// How long the CRI plugin may take to report the runtime ready after containerd answers.
const CRI_READY_LIMIT: Duration = Duration::from_secs(20);

/// The kubelet double and the containerd it drives (dropped last).
pub struct Kubelet {
    tokio: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    handler: Handler,
    /// Pods run and not yet removed, for the teardown on drop.
    pods: Vec<Pod>,
    containerd: Containerd,
}

impl Kubelet {
    /// Starts a containerd of its own, imports the test images and connects as the kubelet.
    pub fn start(handler: Handler) -> Result<Self> {
        let containerd = Containerd::start(images::PAUSE)?;
        images::import(&containerd)?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let channel = tokio.block_on(connect(containerd.socket()))?;
        let mut kubelet = Self {
            tokio,
            client: RuntimeServiceClient::new(channel),
            handler,
            pods: Vec::new(),
            containerd,
        };
        kubelet.wait_runtime_ready()?;
        Ok(kubelet)
    }

    /// The Tokio runtime the calls run on (an API server double can run on it too).
    #[must_use]
    pub fn tokio(&self) -> &tokio::runtime::Runtime {
        &self.tokio
    }

    #[must_use]
    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    #[must_use]
    pub fn handler(&self) -> Handler {
        self.handler
    }

    /// Keep containerd's directory (its log, the containers' logs) after the test.
    pub fn keep_files(&mut self) {
        self.containerd.keep = true;
    }

    fn wait_runtime_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + CRI_READY_LIMIT;
        loop {
            let mut client = self.client.clone();
            let answer = self
                .tokio
                .block_on(client.status(StatusRequest { verbose: false }));
            let ready = answer
                .as_ref()
                .ok()
                .and_then(|a| a.get_ref().status.as_ref())
                .is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.r#type == "RuntimeReady" && c.status)
                });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the CRI plugin is not RuntimeReady after {CRI_READY_LIMIT:?} ({answer:?}):\n{}",
                    self.containerd.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a CRI call on the Tokio runtime; an error carries containerd's log tail.
    fn call<T, F>(
        &self,
        what: &str,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.tokio
            .block_on(f(self.client.clone()))
            .map(tonic::Response::into_inner)
            .map_err(|s| anyhow::anyhow!("{what}: {}: {}", s.code(), s.message()))
    }

    /// `RunPodSandbox`: a host-network sandbox, its own or a shared PID namespace, cgroup parent
    /// by `QoS`.
    pub fn run_pod(&mut self, options: &PodOptions) -> Result<Pod> {
        let uid = pod_uid();
        let cgroup_parent = match options.qos {
            Qos::Guaranteed => format!("/kubepods/pod{uid}"),
            Qos::Burstable => format!("/kubepods/burstable/pod{uid}"),
            Qos::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
        };
        let log_directory = self
            .containerd
            .dir()
            .join("pods")
            .join(format!("{}_{}_{uid}", options.namespace, options.name));
        fs::create_dir_all(&log_directory)?;
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: options.name.clone(),
                uid: uid.clone(),
                namespace: options.namespace.clone(),
                attempt: 0,
            }),
            // Empty for host-network pods: the sandbox shares the node's UTS namespace, and
            // runc refuses to set a hostname without a private one.
            hostname: String::new(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".into(), options.name.clone()),
                (
                    "io.kubernetes.pod.namespace".into(),
                    options.namespace.clone(),
                ),
                ("io.kubernetes.pod.uid".into(), uid.clone()),
            ]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces(options.share_pid)),
                    ..LinuxSandboxSecurityContext::default()
                }),
                ..LinuxPodSandboxConfig::default()
            }),
            ..PodSandboxConfig::default()
        };
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: self.handler.name().into(),
        };
        let answer = match self.call("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(request).await
        }) {
            Ok(answer) => answer,
            Err(e) => {
                // The runtime may have made the pod's cgroup before it failed.
                remove_pod_cgroups(&cgroup_parent);
                return Err(e.context(self.containerd.log_tail()));
            }
        };
        let pod = Pod {
            uid,
            namespace: options.namespace.clone(),
            name: options.name.clone(),
            sandbox_id: answer.pod_sandbox_id,
            cgroup_parent,
            config,
        };
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// The sandbox's (pause's) pid, from `PodSandboxStatus`'s verbose info.
    pub fn sandbox_pid(&self, pod: &Pod) -> Result<u32> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
            verbose: true,
        };
        let answer = self.call("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(request).await
        })?;
        pid_of(&answer.info)
    }

    /// `CreateContainer` in `pod`: the test image, `spec`'s command and memory limit, a log
    /// file under the pod's log directory. Returns the container id.
    pub fn create_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let share_pid = pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.pid == NamespaceMode::Pod as i32);
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: spec.name.clone(),
                attempt: spec.attempt,
            }),
            image: Some(ImageSpec {
                image: images::TEST.into(),
                ..ImageSpec::default()
            }),
            command: spec.command.clone(),
            args: spec.args.clone(),
            log_path: format!("{}/{}.log", spec.name, spec.attempt),
            labels: HashMap::from([("io.kubernetes.container.name".into(), spec.name.clone())]),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: spec.memory_limit.map_or(0, |l| l as i64),
                    // The kubelet's minimum for a container without a CPU request.
                    cpu_shares: 2,
                    ..LinuxContainerResources::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces(share_pid)),
                    ..LinuxContainerSecurityContext::default()
                }),
            }),
            ..ContainerConfig::default()
        };
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let answer = self.call("CreateContainer", |mut c| async move {
            c.create_container(request).await
        })?;
        Ok(answer.container_id)
    }

    /// `StartContainer`; an error is the runtime's (a missing entrypoint fails here).
    pub fn start_container(&self, id: &str) -> Result<()> {
        let request = StartContainerRequest {
            container_id: id.into(),
        };
        self.call("StartContainer", |mut c| async move {
            c.start_container(request).await
        })
        .map(drop)
    }

    /// `CreateContainer` and `StartContainer`; the container's id and its running status.
    pub fn run_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<(String, Status)> {
        let id = self.create_container(pod, spec)?;
        self.start_container(&id)?;
        let status = self.container_status(&id)?;
        Ok((id, status))
    }

    /// `ExecSync` (an exec probe): `cmd` in the running container, `timeout` seconds at most.
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout: u32) -> Result<ExecResult> {
        let request = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| (*s).to_string()).collect(),
            timeout: i64::from(timeout),
        };
        let answer = self.call(
            "ExecSync",
            |mut c| async move { c.exec_sync(request).await },
        )?;
        Ok(ExecResult {
            exit_code: answer.exit_code,
            stdout: String::from_utf8_lossy(&answer.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&answer.stderr).into_owned(),
        })
    }

    /// `StopContainer` with `timeout` seconds of grace: containerd sends the stop signal
    /// (SIGTERM), then SIGKILL if the container is still running when it runs out.
    pub fn stop_container(&self, id: &str, timeout: u32) -> Result<()> {
        let request = StopContainerRequest {
            container_id: id.into(),
            timeout: i64::from(timeout),
        };
        self.call("StopContainer", |mut c| async move {
            c.stop_container(request).await
        })
        .map(drop)
    }

    /// `ContainerStatus` (verbose, for the init's pid).
    pub fn container_status(&self, id: &str) -> Result<Status> {
        let request = ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let answer = self.call("ContainerStatus", |mut c| async move {
            c.container_status(request).await
        })?;
        let s = answer.status.context("ContainerStatus without a status")?;
        let (name, attempt) = s.metadata.map(|m| (m.name, m.attempt)).unwrap_or_default();
        Ok(Status {
            id: s.id,
            name,
            attempt,
            state: k8s_cri::v1::ContainerState::try_from(s.state).map_or_else(
                |_| format!("{}", s.state),
                |st| st.as_str_name().to_string(),
            ),
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
            pid: pid_of(&answer.info).unwrap_or(0),
        })
    }

    /// Polls `ContainerStatus` until the container exited (the kubelet's PLEG relist).
    pub fn wait_exited(&self, id: &str, limit: Duration) -> Result<Status> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.container_status(id)?;
            if status.exited() {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("container {id} still {} after {limit:?}", status.state);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every container of `pod` with its status (`ListContainers` by sandbox, then each status).
    pub fn pod_containers(&self, pod: &Pod) -> Result<Vec<Status>> {
        let request = ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod.sandbox_id.clone(),
                ..ContainerFilter::default()
            }),
        };
        let answer = self.call("ListContainers", |mut c| async move {
            c.list_containers(request).await
        })?;
        answer
            .containers
            .iter()
            .map(|c| self.container_status(&c.id))
            .collect()
    }

    /// `StopPodSandbox`: its containers are killed, then the sandbox (pause gets SIGKILL).
    pub fn stop_pod(&self, pod: &Pod) -> Result<()> {
        let request = StopPodSandboxRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
        };
        self.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(request).await
        })
        .map(drop)
    }

    /// `RemovePodSandbox` (its containers with it) and the pod's cgroup directories, which the
    /// kubelet, not the runtime, removes.
    pub fn remove_pod(&mut self, pod: &Pod) -> Result<()> {
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
        };
        self.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(request).await
        })?;
        self.pods.retain(|p| p.sandbox_id != pod.sandbox_id);
        remove_pod_cgroups(&pod.cgroup_parent);
        Ok(())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.containerd.keep = true;
        }
        for pod in std::mem::take(&mut self.pods) {
            let _ = self.stop_pod(&pod);
            let _ = self.remove_pod(&pod);
            // Also when the runtime failed to remove it: the directories are this test's.
            remove_pod_cgroups(&pod.cgroup_parent);
        }
    }
}

/// A gRPC channel over containerd's unix socket (the URI is a placeholder tonic needs).
async fn connect(socket: &Path) -> Result<Channel> {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .context("connecting to containerd's CRI socket")
}
