//! Who decided a death (issue #13), for real deaths on the real runtime: containerd with runc and
//! with crun, driven by the kubelet double, stops the container as the kubelet has it stopped —
//! CRI `StopContainer` with the grace period as its timeout: the runtime's own SIGTERM, SIGKILL
//! when the grace runs out — and the real agent (`--kube on`) writes `initiator` and
//! `grace_allowed_seconds`. The test plays the kubelet and the controllers towards the API server
//! double, publishing what they publish in their order (kubernetes/kubernetes):
//! - `killContainer` (`pkg/kubelet/kuberuntime/kuberuntime_container.go`) records the `Killing`
//!   Event, then runs the preStop hook, then calls `StopContainer` with the grace of
//!   `setTerminationGracePeriod` (the deletion's, else a failed probe's own, else the pod's; at
//!   least 2 s); a kill without a message of its own says `Stopping container X`;
//! - the eviction manager (`pkg/kubelet/eviction`) records `Evicted` on the pod, then kills it with
//!   the status phase `Failed`, reason `Evicted`, `DisruptionTarget` `TerminationByKubelet`;
//! - the node shutdown manager (`pkg/kubelet/nodeshutdown`) kills each pod with phase `Failed`,
//!   reason `Terminated`, its message, and the condition with the same message;
//! - the Eviction API, the scheduler's preemption and the taint eviction controller
//!   (`pkg/controller/tainteviction`) set `DisruptionTarget`, then delete the pod; the kubelet
//!   then kills it with the deletion's grace.
//!
//! `e2e_initiator.rs` covers the rest without a runtime: Events that reach the agent only after
//! the death, and the agent without an API server. Needs root and the runtime (`cargo xtask
//! test` installs it).

use std::time::{Duration, Instant};

use coroner_tests::agent::Record;
use coroner_tests::agent::expect::{own_memcg, wait_catching, wait_for_comm};
use coroner_tests::runtime::stage::{Staged, condition, deletion, phase, sidecar};
use coroner_tests::runtime::{ContainerSpec, Handler};
use k8s_openapi::api::core::v1::{ExecAction, Pod as ApiPod, Probe};
use serde_json::{Value, json};

/// The kubelet's minimum grace (`minimumGracePeriodInSeconds`): what every case gives, to be
/// fast.
const GRACE: u32 = 2;
/// The pod's `terminationGracePeriodSeconds` where another grace must win over it.
const POD_GRACE: i64 = 30;
/// The agent's default wait for the API (`label_wait`).
const LABEL_WAIT: Duration = Duration::from_secs(3);
/// An init that handles the runtime's SIGTERM and exits 0 (no child outlives it).
const GRACEFUL: &str = "trap 'exit 0' TERM; while sleep 0.2; do :; done";
const APP: &str = "app";
const SHUTDOWN: &str = "Pod was terminated in response to imminent node shutdown.";

coroner_tests::with_both_runtimes!(
    liveness_probe,
    startup_probe,
    spec_change,
    pod_deletion,
    eviction,
    eviction_without_the_condition,
    api_eviction,
    preemption,
    taint_eviction,
    node_shutdown,
    restart_policy,
    host,
    stop_signal_ignored_uses_the_whole_grace,
);

/// The pod of container `app` running `script` with `terminationGracePeriodSeconds` `grace`,
/// `restartPolicy: Always`, phase `Running`; its trap set before anything stops it.
fn app(test: &str, handler: Handler, script: &str, grace: i64) -> Option<Staged> {
    let mut s = Staged::start(test, handler, &[ContainerSpec::sh(APP, script)])?;
    s.edit(spec(grace, "Always"));
    if script == GRACEFUL {
        wait_catching(s.pid(APP), libc::SIGTERM).unwrap();
    }
    Some(s)
}

fn spec(grace: i64, restart: &str) -> impl Fn(&mut ApiPod) + 'static {
    let restart = restart.to_owned();
    move |p| {
        let spec = p.spec.get_or_insert_with(Default::default);
        spec.termination_grace_period_seconds = Some(grace);
        spec.restart_policy = Some(restart.clone());
        p.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    }
}

/// Container `app` gets exec probes; the liveness probe's own grace is `liveness_grace`.
fn probes(liveness_grace: i64) -> impl Fn(&mut ApiPod) + 'static {
    move |p| {
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        let exec = Some(ExecAction {
            command: Some(vec!["/bin/true".into()]),
        });
        c.liveness_probe = Some(Probe {
            exec: exec.clone(),
            termination_grace_period_seconds: Some(liveness_grace),
            ..Probe::default()
        });
        c.startup_probe = Some(Probe {
            exec,
            ..Probe::default()
        });
    }
}

/// The kubelet's `killContainer` on `app`: the `Killing` Event, then `StopContainer`.
fn kill(s: &mut Staged, message: &str, grace: u32) -> Record {
    s.kubelet_event(APP, ("Normal", "Killing", message));
    s.stop(APP, grace);
    s.init_record(APP)
}

/// The kubelet stopping `app` as part of the whole pod (`killPod`: no message of its own).
fn kill_pod(s: &mut Staged, grace: u32) -> Record {
    kill(s, "Stopping container app", grace)
}

/// The same for a pod being deleted, which the kubelet then removes from the API, maybe before
/// the agent wrote the record.
fn kill_deleted_pod(s: &mut Staged, grace: u32) -> Record {
    s.kubelet_event(APP, ("Normal", "Killing", "Stopping container app"));
    s.stop(APP, grace);
    s.remove_from_api();
    s.init_record(APP)
}

/// The record says `initiator` and `grace_allowed_seconds`.
fn decided(s: &Staged, r: &Record, initiator: &str, grace: Option<u32>) {
    let got = (
        r.field("initiator").as_str().unwrap_or("?"),
        r.field("grace_allowed_seconds"),
    );
    let grace = grace.map_or(Value::Null, |g| json!(g));
    assert_eq!(
        got,
        (initiator, &grace),
        "{}\nagent log:\n{}",
        r.json,
        s.cluster.agent.log_tail()
    );
    eprintln!("{initiator}: {}", r.json);
}

/// The init handled the runtime's SIGTERM and exited 0 before the grace ran out.
fn graceful(r: &Record) {
    let json = &r.json;
    assert_eq!(r.reason(), "Completed", "{json}");
    assert!(
        !r.field("sigterm_time").is_null(),
        "the runtime's SIGTERM: {json}"
    );
    assert!(r.field("sigkill_time").is_null(), "{json}");
}

/// The fatal signal came from the runtime acting for the kubelet (the OCI runtime's `kill`, in
/// containerd's cgroup, the test's).
fn from_the_runtime(r: &Record, handler: Handler) {
    let sender = r.field("sender");
    assert_eq!(sender["kind"], "host", "{}", r.json);
    assert_eq!(sender["comm"], handler.name(), "{}", r.json);
    assert_eq!(
        sender["cgroup"],
        own_memcg().unwrap().as_str(),
        "{}",
        r.json
    );
}

/// `Container X failed liveness probe, will be restarted`: the probe's own
/// `terminationGracePeriodSeconds` wins over the pod's.
fn liveness_probe(handler: Handler) {
    let Some(mut s) = app("liveness_probe", handler, GRACEFUL, POD_GRACE) else {
        return;
    };
    s.edit(probes(i64::from(GRACE)));
    let r = kill(
        &mut s,
        "Container app failed liveness probe, will be restarted",
        GRACE,
    );
    graceful(&r);
    decided(&s, &r, "liveness_probe", Some(GRACE));
}

/// `Container X failed startup probe, will be restarted` through events.k8s.io/v1; the startup
/// probe has no grace of its own: the pod's, not the liveness probe's.
fn startup_probe(handler: Handler) {
    let Some(mut s) = app("startup_probe", handler, GRACEFUL, i64::from(GRACE)) else {
        return;
    };
    s.edit(probes(7));
    s.kubelet_events_v1_event(
        APP,
        (
            "Normal",
            "Killing",
            "Container app failed startup probe, will be restarted",
        ),
    );
    s.stop(APP, GRACE);
    let r = s.init_record(APP);
    graceful(&r);
    decided(&s, &r, "startup_probe", Some(GRACE));
}

/// `Container X definition changed, will be restarted` (an image changed in place): the pod's
/// grace.
fn spec_change(handler: Handler) {
    let Some(mut s) = app("spec_change", handler, GRACEFUL, i64::from(GRACE)) else {
        return;
    };
    let r = kill(
        &mut s,
        "Container app definition changed, will be restarted",
        GRACE,
    );
    graceful(&r);
    decided(&s, &r, "spec_change", Some(GRACE));
}

/// `kubectl delete --grace-period=2`: the API server sets the deletion, the kubelet kills the pod
/// with the deletion's grace, not the pod's 30 s.
fn pod_deletion(handler: Handler) {
    let Some(mut s) = app("pod_deletion", handler, GRACEFUL, POD_GRACE) else {
        return;
    };
    s.edit(deletion(i64::from(GRACE)));
    let r = kill_deleted_pod(&mut s, GRACE);
    graceful(&r);
    decided(&s, &r, "pod_deletion", Some(GRACE));
}

const LOW_ON_MEMORY: &str =
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. ";

/// Node-pressure eviction (`evictPod`): the `Evicted` Event, the status with the condition,
/// then the pod's kill with the kubelet's own grace (`--eviction-max-pod-grace-period`), which
/// the API does not carry.
fn eviction(handler: Handler) {
    let Some(mut s) = app("eviction", handler, GRACEFUL, POD_GRACE) else {
        return;
    };
    s.pod_event("kubelet", ("Warning", "Evicted", LOW_ON_MEMORY));
    s.edit(phase("Failed", Some("Evicted"), Some(LOW_ON_MEMORY)));
    s.edit(condition(
        "DisruptionTarget",
        "TerminationByKubelet",
        LOW_ON_MEMORY,
    ));
    let r = kill_pod(&mut s, GRACE);
    graceful(&r);
    decided(&s, &r, "eviction", None);
}

/// The same before the kubelet's status manager synced (or a kubelet without the condition):
/// the `Evicted` Event alone tells.
fn eviction_without_the_condition(handler: Handler) {
    let Some(mut s) = app("eviction_event_alone", handler, GRACEFUL, POD_GRACE) else {
        return;
    };
    s.pod_event("kubelet", ("Warning", "Evicted", LOW_ON_MEMORY));
    let r = kill_pod(&mut s, GRACE);
    graceful(&r);
    decided(&s, &r, "eviction", None);
}

/// A drain (`POST …/pods/X/eviction` with `gracePeriodSeconds: 2`): the condition, then the
/// deletion.
fn api_eviction(handler: Handler) {
    let Some(mut s) = app("api_eviction", handler, GRACEFUL, POD_GRACE) else {
        return;
    };
    s.edit(condition(
        "DisruptionTarget",
        "EvictionByEvictionAPI",
        "Eviction API: evicting",
    ));
    s.edit(deletion(i64::from(GRACE)));
    let r = kill_deleted_pod(&mut s, GRACE);
    graceful(&r);
    decided(&s, &r, "api_eviction", Some(GRACE));
}

/// The scheduler's preemption (`PrepareCandidate`): the condition, its `Preempted` Event, the
/// deletion with the pod's own grace.
fn preemption(handler: Handler) {
    let Some(mut s) = app("preemption", handler, GRACEFUL, i64::from(GRACE)) else {
        return;
    };
    s.edit(condition(
        "DisruptionTarget",
        "PreemptionByScheduler",
        "default-scheduler: preempting to accommodate a higher priority pod",
    ));
    let by = format!(
        "Preempted by {}/vip on node {}",
        s.pod.namespace, s.cluster.node
    );
    s.pod_event("default-scheduler", ("Normal", "Preempted", &by));
    s.edit(deletion(i64::from(GRACE)));
    let r = kill_deleted_pod(&mut s, GRACE);
    graceful(&r);
    decided(&s, &r, "preemption", Some(GRACE));
}

/// A `NoExecute` taint (`addConditionAndDeletePod`): the condition, the deletion, the
/// controller's Event.
fn taint_eviction(handler: Handler) {
    let Some(mut s) = app("taint_eviction", handler, GRACEFUL, i64::from(GRACE)) else {
        return;
    };
    s.edit(condition(
        "DisruptionTarget",
        "DeletionByTaintManager",
        "Taint manager: deleting due to NoExecute taint",
    ));
    s.edit(deletion(i64::from(GRACE)));
    let marking = format!(
        "Marking for deletion Pod {}/{}",
        s.pod.namespace, s.pod.name
    );
    s.pod_event(
        "taint-eviction-controller",
        ("Normal", "TaintManagerEviction", &marking),
    );
    let r = kill_deleted_pod(&mut s, GRACE);
    graceful(&r);
    decided(&s, &r, "taint_eviction", Some(GRACE));
}

/// Graceful node shutdown: the status and the condition with the manager's message, then the
/// kill with the shutdown's per-priority grace, which the API does not carry.
fn node_shutdown(handler: Handler) {
    let Some(mut s) = app("node_shutdown", handler, GRACEFUL, POD_GRACE) else {
        return;
    };
    s.edit(phase("Failed", Some("Terminated"), Some(SHUTDOWN)));
    s.edit(condition(
        "DisruptionTarget",
        "TerminationByKubelet",
        SHUTDOWN,
    ));
    let r = kill_pod(&mut s, GRACE);
    graceful(&r);
    decided(&s, &r, "node_shutdown", None);
}

/// `restartPolicy: Never` with a sidecar (an init container with `restartPolicy: Always`): the
/// main container exits 0, the kubelet stops what is left (`Stopping container sidecar`) and the
/// pod is `Succeeded` once it stopped.
fn restart_policy(handler: Handler) {
    const SIDECAR: &str = "sidecar";
    let specs = [
        ContainerSpec::sh(SIDECAR, GRACEFUL),
        ContainerSpec::sh(APP, "sleep 0.5; exit 0"),
    ];
    let Some(mut s) = Staged::start("restart_policy", handler, &specs) else {
        return;
    };
    s.edit(spec(i64::from(GRACE), "Never"));
    s.edit(sidecar(SIDECAR));
    wait_catching(s.pid(SIDECAR), libc::SIGTERM).unwrap();
    let done = s
        .cluster
        .kubelet
        .wait_exited(s.id(APP), Duration::from_secs(20));
    assert_eq!(done.unwrap().exit_code, 0);
    s.publish();
    let main = s.init_record(APP);
    decided(&s, &main, "exited", None);
    s.kubelet_event(SIDECAR, ("Normal", "Killing", "Stopping container sidecar"));
    s.stop(SIDECAR, GRACE);
    s.edit(phase("Succeeded", None, None));
    let r = s.init_record(SIDECAR);
    graceful(&r);
    decided(&s, &r, "restart_policy", Some(GRACE));
}

/// An operator's `crictl stop` on the node: nothing published. After the bounded wait the
/// record says `host`, and is not held back longer.
fn host(handler: Handler) {
    let Some(mut s) = app("host", handler, GRACEFUL, POD_GRACE) else {
        return;
    };
    s.stop(APP, GRACE);
    let died = Instant::now();
    let r = s.init_record(APP);
    let after = died.elapsed();
    graceful(&r);
    decided(&s, &r, "host", None);
    assert!(
        after < LABEL_WAIT + Duration::from_secs(2),
        "held back {after:?}"
    );
}

/// `sh -c 'sleep 600'`: PID 1 without a handler, the kernel drops the runtime's SIGTERM and the
/// deletion's grace runs out: `GracePeriodExpired`, "used `grace_seconds` of
/// `grace_allowed_seconds`".
fn stop_signal_ignored_uses_the_whole_grace(handler: Handler) {
    let Some(mut s) = app("stop_signal_ignored", handler, "sleep 600", POD_GRACE) else {
        return;
    };
    wait_for_comm(s.pid(APP), "sleep").unwrap();
    s.edit(deletion(i64::from(GRACE)));
    let r = kill_deleted_pod(&mut s, GRACE);
    let json = &r.json;
    assert_eq!(r.reason(), "GracePeriodExpired", "{json}");
    assert!(r.record.stop_signal_ignored, "{json}");
    from_the_runtime(&r, handler);
    decided(&s, &r, "pod_deletion", Some(GRACE));
    let used = r.field("grace_seconds").as_f64().expect("grace_seconds");
    assert!(
        (f64::from(GRACE) - 0.2..f64::from(GRACE) + 1.5).contains(&used),
        "used {used} s of {GRACE} s: {json}"
    );
    eprintln!("used {used:.1} s of {GRACE} s");
}
