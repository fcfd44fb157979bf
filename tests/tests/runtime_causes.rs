//! On the real runtime (containerd with runc and with crun, the kubelet double, the real agent):
//! the `cause` of an init that relays its child's death, and `stop_signal_ignored` for a PID 1
//! that cannot act on the runtime's SIGTERM. Needs root and the runtime (`cargo xtask test`).

#[path = "runtime_records/support.rs"]
mod support;

use coroner_tests::agent::Record;
use coroner_tests::agent::expect::wait_for_comm;
use coroner_tests::runtime::{ContainerSpec, Handler};
use support::{
    EXIT_WAIT, Node, RECORD_WAIT, common_init, quiet, runtime_sender, same_exit_as_runtime, sh,
};

const MIB: u64 = 1 << 20;

coroner_tests::with_both_runtimes!(
    a_shell_relaying_its_childs_oom_kill_has_it_as_cause,
    a_tini_style_init_relaying_a_crash_has_it_as_cause,
    sigterm_dropped_by_a_pid_1_without_handler_is_said,
);

/// The record of the child of container `id` whose comm is `comm`.
fn child_record(node: &mut Node, id: &str, comm: &str) -> Record {
    node.agent
        .wait_for(&format!("{comm} in {id}"), RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(id)
                && r.field("role") == "child"
                && r.record.comm == comm
        })
        .unwrap()
}

/// `sh -c 'hog; exit $?'` at a 64 MiB limit: the OOM killer kills `hog`, the shell relays 137.
/// The init's own verdict is `Error`; its cause is the child's OOM kill.
fn a_shell_relaying_its_childs_oom_kill_has_it_as_cause(handler: Handler) {
    const LIMIT: u64 = 64 * MIB;
    let Some(mut node) = Node::start("shell_relaying_oom", handler) else {
        return;
    };
    let pod = node.pod(false);
    let spec = ContainerSpec {
        memory_limit: Some(LIMIT),
        ..sh("relay", "sleep 1; /bin/hog 300; exit $?")
    };
    let (id, running) = node.run(&pod, &spec);
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(exited.exit_code, 137, "{exited:?}");
    let init = node.init_record(&id);
    common_init(&init, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&init, &exited);
    let json = &init.json;
    assert_eq!(init.reason(), "Error", "{json}");
    assert_eq!(init.record.exit_code, Some(137), "{json}");
    // The shell was not OOM-killed, nor sent anything: it exited.
    quiet(&init);
    let hog = child_record(&mut node, &id, "hog");
    assert_eq!(hog.reason(), "OOMKilled", "{}", hog.json);
    assert_eq!(init.sub("cause", "reason"), "OOMKilled", "{json}");
    assert_eq!(init.sub("cause", "pid"), hog.record.pid, "{json}");
    assert_eq!(init.sub("cause", "comm"), "hog", "{json}");
    assert_eq!(init.sub("cause", "signal"), 9, "{json}");
    assert_eq!(init.field("cause")["oom"]["scope"], "memcg", "{json}");
    assert_eq!(
        init.field("cause")["oom"]["memory_limit_bytes"],
        LIMIT,
        "{json}"
    );
    let before = init.sub("cause", "seconds_before").as_f64().unwrap();
    assert!(
        (0.0..1.0).contains(&before),
        "seconds_before {before}: {json}"
    );
    assert!(hog.field("cause").is_null(), "{}", hog.json);
    eprintln!("init record with a cause: {json}");
}

/// `/bin/relay` forks a child that crashes with SIGSEGV, waits and exits 139, as tini does.
fn a_tini_style_init_relaying_a_crash_has_it_as_cause(handler: Handler) {
    let Some(mut node) = Node::start("tini_relaying_crash", handler) else {
        return;
    };
    let pod = node.pod(false);
    let (id, running) = node.run(&pod, &ContainerSpec::new("relay", &["/bin/relay"]));
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(exited.exit_code, 139, "{exited:?}");
    let init = node.init_record(&id);
    common_init(&init, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&init, &exited);
    let json = &init.json;
    assert_eq!(init.reason(), "Error", "{json}");
    quiet(&init);
    let child = child_record(&mut node, &id, "relay");
    assert_eq!(child.reason(), "Crashed", "{}", child.json);
    assert_eq!(child.sub("sender", "kind"), "kernel", "{}", child.json);
    assert_eq!(init.sub("cause", "reason"), "Crashed", "{json}");
    assert_eq!(init.sub("cause", "pid"), child.record.pid, "{json}");
    assert_eq!(init.sub("cause", "signal"), 11, "{json}");
    assert!(init.field("cause")["oom"].is_null(), "{json}");
    assert!(!init.record.stop_signal_ignored, "{json}");
    eprintln!("init record with a crash as cause: {json}");
}

/// `sh -c 'sleep 600'`: busybox executes `sleep` in place, PID 1 of the container with no
/// handler for SIGTERM. The kernel drops the runtime's SIGTERM; SIGKILL ends the grace period.
fn sigterm_dropped_by_a_pid_1_without_handler_is_said(handler: Handler) {
    const GRACE: u32 = 2;
    let Some(mut node) = Node::start("sigterm_dropped_by_pid_1", handler) else {
        return;
    };
    let pod = node.pod(false);
    let (id, running) = node.run(&pod, &sh("main", "sleep 600"));
    wait_for_comm(running.pid, "sleep").unwrap();
    node.kubelet.stop_container(&id, GRACE).unwrap();
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(exited.exit_code, 137, "{exited:?}");
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    let json = &record.json;
    assert_eq!(record.reason(), "GracePeriodExpired", "{json}");
    runtime_sender(&record, handler);
    assert!(record.record.stop_signal_ignored, "{json}");
    assert!(record.field("cause").is_null(), "{json}");
    eprintln!("record of a dropped SIGTERM: {json}");
}
