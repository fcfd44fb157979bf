//! Records of deaths on the real runtime: containerd (a test's own) with runc and with crun,
//! driven through the CRI by the kubelet double as the kubelet drives it, and the real agent.
//! Every test runs once per runtime handler (`runc::…`, `crun::…`) and checks the whole record
//! against what the runtime itself reports (`ContainerStatus`), and that nothing else was
//! recorded for the container (runc's bootstrap stages, exec probes). Needs root and the runtime
//! (`cargo xtask test` installs containerd, runc, crun and busybox-static).

#[path = "runtime_records/support.rs"]
mod support;

use std::time::Duration;

use coroner_tests::runtime::{ContainerSpec, Handler};
use support::{EXIT_WAIT, Node, common_init, quiet, runtime_sender, same_exit_as_runtime, sh};

const MIB: u64 = 1 << 20;

coroner_tests::with_both_runtimes!(
    clean_exit_is_completed,
    exit_1_is_error,
    missing_entrypoint_is_start_error,
    non_executable_entrypoint_is_start_error,
    oom_of_the_init_at_the_container_limit,
    stop_honoured_in_a_shared_pid_namespace_is_terminated_by_the_runtime,
    stop_handled_by_the_init_is_an_exit_after_sigterm,
    stop_ignored_is_grace_period_expired,
    exec_probes_leave_no_record_and_the_container_running,
    pod_teardown_records_the_sandbox,
);

fn clean_exit_is_completed(handler: Handler) {
    let Some(mut node) = Node::start("clean_exit_is_completed", handler) else {
        return;
    };
    let pod = node.pod(false);
    let (id, running) = node.run(&pod, &sh("main", "sleep 1"));
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(
        (exited.exit_code, exited.reason.as_str()),
        (0, "Completed"),
        "{exited:?}"
    );
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&record, &exited);
    assert_eq!(record.reason(), "Completed", "{}", record.json);
    assert_eq!(record.record.exit_code, Some(0));
    // busybox's `sh -c` executes its last command in place: the init is `sleep` now.
    assert_eq!(record.record.comm, "sleep", "{}", record.json);
    quiet(&record);
    assert!(record.field("exec_failure").is_null(), "{}", record.json);
}

fn exit_1_is_error(handler: Handler) {
    let Some(mut node) = Node::start("exit_1_is_error", handler) else {
        return;
    };
    let pod = node.pod(false);
    let (id, running) = node.run(&pod, &sh("main", "sleep 1; exit 1"));
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(
        (exited.exit_code, exited.reason.as_str()),
        (1, "Error"),
        "{exited:?}"
    );
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&record, &exited);
    assert_eq!(record.reason(), "Error", "{}", record.json);
    assert_eq!(record.record.exit_code, Some(1));
    quiet(&record);
    assert!(record.field("exec_failure").is_null(), "{}", record.json);
}

/// `StartContainer` fails: the OCI runtime's init dies before it executes the command. runc's
/// `runc:[2:INIT]` exits 1 after it reported the error; crun's container process too, or
/// `crun create` kills it.
fn start_error(test: &str, handler: Handler, entrypoint: &str) {
    let Some(mut node) = Node::start(test, handler) else {
        return;
    };
    let pod = node.pod(false);
    let id = node
        .kubelet
        .create_container(&pod, &ContainerSpec::new("main", &[entrypoint]))
        .unwrap();
    let started = node.kubelet.start_container(&id);
    let error = started.expect_err("StartContainer of a container that cannot start fails");
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(
        (exited.exit_code, exited.reason.as_str()),
        (128, "StartError"),
        "{exited:?}"
    );
    assert!(!exited.message.is_empty(), "{exited:?}; {error:#}");
    let record = node.only_init_record(&id);
    let no_pid = coroner_tests::runtime::Status {
        pid: 0,
        ..exited.clone()
    };
    common_init(&record, node.agent.node(), &pod, &id, &no_pid);
    let json = &record.json;
    assert_eq!(record.reason(), "StartError", "{json}");
    assert!(
        record.field("exec_failure").is_null(),
        "no execve was tried: {json}"
    );
    assert!(record.field("oom").is_null(), "{json}");
    match handler {
        Handler::Runc => {
            assert_eq!(record.record.comm, "runc:[2:INIT]", "{json}");
            assert_eq!(record.record.exit_code, Some(1), "{json}");
            quiet(&record);
        }
        Handler::Crun => {
            assert_eq!(record.record.comm, "crun", "{json}");
            // The child exits 1 after it wrote the error, unless `crun create` (its parent),
            // which read the error, kills it first: both happen here, run to run.
            if record.record.signal.is_some() {
                assert_eq!(record.record.signal, Some(9), "{json}");
                runtime_sender(&record, handler);
                assert_eq!(record.sub("sender", "pid"), record.record.ppid, "{json}");
            } else {
                assert_eq!(record.record.exit_code, Some(1), "{json}");
                quiet(&record);
            }
        }
    }
}

fn missing_entrypoint_is_start_error(handler: Handler) {
    start_error("missing_entrypoint_is_start_error", handler, "/nope");
}

fn non_executable_entrypoint_is_start_error(handler: Handler) {
    start_error(
        "non_executable_entrypoint_is_start_error",
        handler,
        "/bin/not-executable",
    );
}

fn oom_of_the_init_at_the_container_limit(handler: Handler) {
    const LIMIT: u64 = 64 * MIB;
    let Some(mut node) = Node::start("oom_of_the_init_at_the_container_limit", handler) else {
        return;
    };
    let pod = node.pod(false);
    let spec = ContainerSpec {
        memory_limit: Some(LIMIT),
        // Started by the shell so the runtime's pid is known before the allocation starts.
        ..sh("hog", "sleep 1; exec /bin/hog 300")
    };
    let (id, running) = node.run(&pod, &spec);
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(
        (exited.exit_code, exited.reason.as_str()),
        (137, "OOMKilled"),
        "{exited:?}"
    );
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&record, &exited);
    let json = &record.json;
    assert_eq!(record.reason(), "OOMKilled", "{json}");
    assert_eq!(record.record.comm, "hog", "{json}");
    assert_eq!(record.record.signal, Some(9), "{json}");
    assert_eq!(record.sub("oom", "scope"), "memcg", "{json}");
    assert_eq!(record.sub("oom", "memory_limit_bytes"), LIMIT, "{json}");
    assert_eq!(
        record.sub("oom", "limit_cgroup"),
        pod.cgroup_of(&id).as_str(),
        "{json}"
    );
    assert_eq!(
        record.record.container_memory_limit_bytes,
        Some(LIMIT),
        "{json}"
    );
    let rss = record.sub("oom", "victim_rss_bytes").as_u64().unwrap_or(0);
    assert!(
        rss > LIMIT / 2 && rss <= LIMIT + 8 * MIB,
        "victim_rss_bytes {rss}: {json}"
    );
    assert_eq!(record.sub("sender", "kind"), "kernel", "{json}");
    assert!(record.field("sigterm_time").is_null(), "{json}");
}

/// With `shareProcessNamespace` the init is not PID 1 of its namespace (pause is), so the
/// runtime's SIGTERM kills it: `Terminated`, sent by the runtime for the kubelet.
fn stop_honoured_in_a_shared_pid_namespace_is_terminated_by_the_runtime(handler: Handler) {
    let Some(mut node) = Node::start("stop_honoured_shared_pid", handler) else {
        return;
    };
    let pod = node.pod(true);
    let (id, running) = node.run(&pod, &ContainerSpec::new("main", &["/bin/sleep", "3600"]));
    node.kubelet.stop_container(&id, 10).unwrap();
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(exited.exit_code, 143, "{exited:?}");
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&record, &exited);
    let json = &record.json;
    assert_eq!(record.reason(), "Terminated", "{json}");
    assert_eq!(record.record.signal, Some(15), "{json}");
    runtime_sender(&record, handler);
    assert!(!record.field("sigterm_time").is_null(), "{json}");
    assert!(record.field("sigkill_time").is_null(), "{json}");
    assert!(record.field("oom").is_null(), "{json}");
    assert!(!record.record.stop_signal_ignored, "delivered: {json}");
}

/// In its own PID namespace the init is PID 1, which SIGTERM cannot kill by default: a real
/// program handles it and exits. The record is that exit, with the SIGTERM's time.
fn stop_handled_by_the_init_is_an_exit_after_sigterm(handler: Handler) {
    let Some(mut node) = Node::start("stop_handled_by_the_init", handler) else {
        return;
    };
    let pod = node.pod(false);
    // No child outlives the init: the trap runs between two foreground sleeps.
    let (id, running) = node.run(
        &pod,
        &sh("main", "trap 'exit 0' TERM; while sleep 0.2; do :; done"),
    );
    std::thread::sleep(Duration::from_millis(500));
    node.kubelet.stop_container(&id, 10).unwrap();
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(
        (exited.exit_code, exited.reason.as_str()),
        (0, "Completed"),
        "{exited:?}"
    );
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&record, &exited);
    let json = &record.json;
    assert_eq!(record.reason(), "Completed", "{json}");
    assert!(
        !record.field("sigterm_time").is_null(),
        "the runtime's SIGTERM: {json}"
    );
    assert!(record.field("sigkill_time").is_null(), "{json}");
    assert!(record.field("oom").is_null(), "{json}");
    assert!(!record.record.stop_signal_ignored, "handled: {json}");
}

/// `trap '' TERM`: the runtime's SIGTERM does nothing, SIGKILL follows when the
/// `StopContainer` timeout (the grace period) runs out.
fn stop_ignored_is_grace_period_expired(handler: Handler) {
    const GRACE: u32 = 2;
    let Some(mut node) = Node::start("stop_ignored_is_grace_period_expired", handler) else {
        return;
    };
    let pod = node.pod(false);
    let (id, running) = node.run(&pod, &sh("main", "trap '' TERM; exec sleep 3600"));
    coroner_tests::agent::expect::wait_ignoring(running.pid, libc::SIGTERM).unwrap();
    node.kubelet.stop_container(&id, GRACE).unwrap();
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    assert_eq!(exited.exit_code, 137, "{exited:?}");
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&record, &exited);
    let json = &record.json;
    assert_eq!(record.reason(), "GracePeriodExpired", "{json}");
    assert_eq!(record.record.signal, Some(9), "{json}");
    assert_eq!(record.record.comm, "sleep", "{json}");
    runtime_sender(&record, handler);
    let grace = record
        .field("grace_seconds")
        .as_f64()
        .expect("grace_seconds");
    assert!(
        (f64::from(GRACE) - 0.2..f64::from(GRACE) + 1.5).contains(&grace),
        "grace_seconds {grace}, the StopContainer timeout is {GRACE} s: {json}"
    );
    assert!(record.record.stop_signal_ignored, "SIG_IGN: {json}");
}

/// Exec probes (`ExecSync`) that pass, fail with an exit code and fail to start: no record, the
/// container keeps running and its init is the same process.
fn exec_probes_leave_no_record_and_the_container_running(handler: Handler) {
    let Some(mut node) = Node::start("exec_probes", handler) else {
        return;
    };
    let pod = node.pod(false);
    let (id, running) = node.run(&pod, &sh("main", "trap '' TERM; exec sleep 3600"));
    for round in 0..3 {
        let ok = node.kubelet.exec_sync(&id, &["/bin/true"], 5).unwrap();
        assert_eq!(ok.exit_code, 0, "round {round}: {ok:?}");
        let failing = node
            .kubelet
            .exec_sync(&id, &["/bin/sh", "-c", "echo not ready; exit 3"], 5)
            .unwrap();
        assert_eq!(failing.exit_code, 3, "round {round}: {failing:?}");
        assert_eq!(failing.stdout.trim(), "not ready");
    }
    // An exec whose binary is missing: the OCI runtime fails before any execve.
    let missing = node.kubelet.exec_sync(&id, &["/nope"], 5);
    assert!(
        missing.as_ref().map_or(true, |r| r.exit_code != 0),
        "an exec of /nope cannot pass: {missing:?}"
    );
    let records = node.records_of(&id);
    assert!(
        records.is_empty(),
        "exec probes that exit are no record: {:#?}",
        records.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
    let still = node.kubelet.container_status(&id).unwrap();
    assert_eq!(still.state, "CONTAINER_RUNNING", "{still:?}");
    assert_eq!(still.pid, running.pid, "the init is the same process");

    // Then the container's own end: its one init record.
    node.kubelet.stop_container(&id, 1).unwrap();
    node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    let record = node.only_init_record(&id);
    common_init(&record, node.agent.node(), &pod, &id, &running);
    assert_eq!(record.reason(), "GracePeriodExpired", "{}", record.json);
}

/// `StopPodSandbox` kills the pause process: recorded with role `sandbox`, never as a
/// container's init.
fn pod_teardown_records_the_sandbox(handler: Handler) {
    let Some(mut node) = Node::start("pod_teardown_records_the_sandbox", handler) else {
        return;
    };
    let pod = node.pod(false);
    let pause = node.kubelet.sandbox_pid(&pod).unwrap();
    // RunPodSandbox returns once the runtime let its init go, maybe before `/pause` runs (on
    // a loaded machine, a teardown then cuts the exec short: unit-tested in the correlator).
    let deadline = std::time::Instant::now() + EXIT_WAIT;
    while std::fs::read_to_string(format!("/proc/{pause}/comm"))
        .map_or(true, |c| c.trim() != "pause")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox never ran /pause"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    node.kubelet.stop_pod(&pod).unwrap();
    let sandbox = &pod.sandbox_id;
    let record = node
        .agent
        .wait_for("the sandbox", support::RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(sandbox.as_str())
        })
        .unwrap();
    let json = &record.json;
    assert_eq!(record.field("role"), "sandbox", "{json}");
    assert!(!record.record.main_process, "{json}");
    assert_eq!(record.record.pid, pause, "{json}");
    assert_eq!(record.record.comm, "pause", "{json}");
    assert_eq!(record.record.cgroup, pod.cgroup_of(sandbox), "{json}");
    assert_eq!(
        record.record.pod_uid.as_deref(),
        Some(pod.uid.as_str()),
        "{json}"
    );
    assert_eq!(record.record.signal, Some(9), "{json}");
    assert_eq!(record.reason(), "Killed", "{json}");
    runtime_sender(&record, handler);
    let all = node.records_of(sandbox);
    assert_eq!(
        all.len(),
        1,
        "{:#?}",
        all.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
    node.kubelet.remove_pod(&pod).unwrap();
}
