//! What every real-runtime test shares: the node (agent + kubelet double + containerd), waiting
//! for a container's records, and the checks of the fields every record of it carries.

use std::time::{Duration, Instant};

use coroner_tests::agent::expect::{CONTRACT_FIELDS, now_ns, own_memcg};
use coroner_tests::agent::{Agent, Record};
use coroner_tests::runtime::{ContainerSpec, Handler, Kubelet, Pod, PodOptions, Status};

/// How long a record may take once the runtime reports the death.
pub const RECORD_WAIT: Duration = Duration::from_secs(10);
/// How long a container may take to exit once the test made it.
pub const EXIT_WAIT: Duration = Duration::from_secs(20);
/// How long after a death a record that should not exist would have come (the correlator's
/// reorder hold is well under this).
pub const SETTLE: Duration = Duration::from_secs(2);

/// The agent and the kubelet double with its containerd; the containers go first on drop.
pub struct Node {
    pub kubelet: Kubelet,
    pub agent: Agent,
}

impl Node {
    /// `None` (the test is skipped, with the reason printed) when not root.
    pub fn start(test: &str, handler: Handler) -> Option<Self> {
        if !coroner_tests::runtime::available(test) {
            return None;
        }
        let started = Instant::now();
        let kubelet = Kubelet::start(handler).expect("containerd and the kubelet double start");
        let agent = Agent::start().expect("the agent starts");
        eprintln!("{test}: node up in {:?}", started.elapsed());
        Some(Self { kubelet, agent })
    }

    /// A pod of its own (burstable, own PID namespace unless `share_pid`).
    pub fn pod(&mut self, share_pid: bool) -> Pod {
        self.kubelet
            .run_pod(&PodOptions {
                share_pid,
                ..PodOptions::default()
            })
            .expect("RunPodSandbox")
    }

    /// Creates and starts `spec` in `pod`; the id and the runtime's status right after.
    pub fn run(&self, pod: &Pod, spec: &ContainerSpec) -> (String, Status) {
        self.kubelet
            .run_container(pod, spec)
            .unwrap_or_else(|e| panic!("running {spec:?}: {e:#}"))
    }

    /// The record of container `id`'s init, waiting for it.
    pub fn init_record(&mut self, id: &str) -> Record {
        self.agent
            .wait_for(&format!("the init of {id}"), RECORD_WAIT, |r| {
                r.record.container_id.as_deref() == Some(id) && r.field("role") == "init"
            })
            .unwrap()
    }

    /// Every record of container `id` so far, after waiting [`SETTLE`] for late ones.
    pub fn records_of(&mut self, id: &str) -> Vec<Record> {
        std::thread::sleep(SETTLE);
        self.agent
            .records()
            .unwrap()
            .iter()
            .filter(|r| r.record.container_id.as_deref() == Some(id))
            .cloned()
            .collect()
    }

    /// Every record so far, after waiting [`SETTLE`] for late ones.
    #[allow(dead_code, reason = "only the busy-node test reads every record")]
    pub fn records_of_all(&mut self) -> Vec<Record> {
        std::thread::sleep(SETTLE);
        self.agent.records().unwrap().to_vec()
    }

    /// Exactly one record for container `id`: its init's (no runtime helper, no exec session).
    pub fn only_init_record(&mut self, id: &str) -> Record {
        let init = self.init_record(id);
        let all = self.records_of(id);
        assert_eq!(
            all.len(),
            1,
            "one record for the container, its init's; got {:#?}",
            all.iter().map(|r| &r.json).collect::<Vec<_>>()
        );
        init
    }
}

/// The fields every record of a container's init carries, checked against what the runtime
/// said: the node, pod uid and container id from CRI, the cgroupfs path, role `init`, the
/// runtime's exit code as `exit_status`, the init's pid when the runtime reported one.
pub fn common_init(record: &Record, node: &str, pod: &Pod, id: &str, running: &Status) {
    let json = record.json.as_object().expect("a record is a JSON object");
    for field in CONTRACT_FIELDS {
        assert!(
            json.contains_key(field),
            "field `{field}` missing from {}",
            record.json
        );
    }
    let r = &record.record;
    let mut wrong = Vec::new();
    let mut want = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    want(r.node == node, format!("node {:?}, want {node:?}", r.node));
    want(
        record.field("role") == "init",
        format!("role {}", record.field("role")),
    );
    want(r.main_process, "main_process false".into());
    want(
        r.cgroup == pod.cgroup_of(id),
        format!("cgroup {:?}, want {:?}", r.cgroup, pod.cgroup_of(id)),
    );
    want(
        r.pod_uid.as_deref() == Some(pod.uid.as_str()),
        format!("pod_uid {:?}, want {}", r.pod_uid, pod.uid),
    );
    want(
        r.container_id.as_deref() == Some(id),
        format!("container_id {:?}, want {id}", r.container_id),
    );
    if running.pid != 0 {
        want(
            r.pid == running.pid,
            format!("pid {}, the runtime's init pid is {}", r.pid, running.pid),
        );
    }
    let skew = (r.time.unix_timestamp_nanos() - now_ns()).unsigned_abs();
    want(
        skew < 30 * 1_000_000_000,
        format!("time {} is {skew} ns from now", record.field("time")),
    );
    let status = match (r.exit_code, r.signal) {
        (Some(code), None) => Some(u16::from(code)),
        (None, Some(signal)) => Some(128 + u16::from(signal)),
        _ => None,
    };
    want(
        status == Some(r.exit_status),
        format!(
            "exit_status {} with exit_code {:?}, signal {:?}",
            r.exit_status, r.exit_code, r.signal
        ),
    );
    for field in ["namespace", "pod", "container", "owner_kind", "owner_name"] {
        want(
            record.field(field).is_null(),
            format!("{field} is {} with --kube off", record.field(field)),
        );
    }
    assert!(wrong.is_empty(), "{}\nin {}", wrong.join("; "), record.json);
}

/// The init's exit status is what the runtime reports as the container's exit code.
pub fn same_exit_as_runtime(record: &Record, exited: &Status) {
    assert!(exited.exited(), "{exited:?}");
    assert_eq!(
        i32::from(record.record.exit_status),
        exited.exit_code,
        "the record's exit_status vs the runtime's exit code ({exited:?}): {}",
        record.json
    );
}

/// An exit, not a kill: nothing of signals or OOM.
pub fn quiet(record: &Record) {
    for field in [
        "sender",
        "sigterm_time",
        "sigkill_time",
        "grace_seconds",
        "oom",
    ] {
        assert!(
            record.field(field).is_null(),
            "{field} should be null: {}",
            record.json
        );
    }
}

/// `sender` is the OCI runtime's `kill` (`runc kill` / `crun kill`, run by containerd's shim for
/// the kubelet): a host process in the shim's memory cgroup, which is the test's.
pub fn runtime_sender(record: &Record, handler: Handler) {
    let sender = record.field("sender");
    assert_eq!(sender["kind"], "host", "sender: {}", record.json);
    assert_eq!(sender["comm"], handler.name(), "sender: {}", record.json);
    assert_eq!(
        sender["cgroup"],
        own_memcg().unwrap().as_str(),
        "the shim and its runtime run in containerd's cgroup, the test's: {}",
        record.json
    );
}

/// `/bin/sh -c script` as container `name`.
pub fn sh(name: &str, script: &str) -> ContainerSpec {
    ContainerSpec::sh(name, script)
}
