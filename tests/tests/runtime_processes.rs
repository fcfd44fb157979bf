//! Records of the other processes of real containers (containerd with runc and crun, the kubelet
//! double, the real agent): a child OOM-killed while the init lives on, an exec probe the runtime
//! kills at its timeout, a stop signal the init catches and re-raises, and the roles in a pod
//! that shares one PID namespace. Needs root and the runtime (`cargo xtask test` installs it).

#[path = "runtime_records/support.rs"]
mod support;

use std::time::Duration;

use coroner_tests::exposition::metric;
use coroner_tests::runtime::{ContainerSpec, Handler};
use support::{
    EXIT_WAIT, Node, RECORD_WAIT, common_init, quiet, runtime_sender, same_exit_as_runtime, sh,
};

const MIB: u64 = 1 << 20;

coroner_tests::with_both_runtimes!(
    oom_of_a_child_while_the_init_lives_on,
    exec_probe_killed_at_its_timeout_is_an_exec_record,
    stop_re_raised_by_the_init_is_terminated_by_the_runtime,
    one_init_record_per_start_and_none_for_the_runtimes_helpers,
);

fn oom_of_a_child_while_the_init_lives_on(handler: Handler) {
    const LIMIT: u64 = 64 * MIB;
    let Some(mut node) = Node::start("oom_of_a_child", handler) else {
        return;
    };
    let pod = node.pod(false);
    let spec = ContainerSpec {
        memory_limit: Some(LIMIT),
        // The hog is a child (`;` keeps sh alive after it); sh exits 0 once it is gone.
        ..sh("app", "sleep 1; /bin/hog 300; sleep 1; exit 0")
    };
    let (id, running) = node.run(&pod, &spec);
    let exited = node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    // The init exited 0 (containerd may still call the container OOMKilled: it marks the
    // reason on the memcg's OOM event, whoever the victim was).
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    eprintln!("the runtime's status: {exited:?}");
    let init = node.init_record(&id);
    common_init(&init, node.agent.node(), &pod, &id, &running);
    same_exit_as_runtime(&init, &exited);
    assert_eq!(init.reason(), "Completed", "{}", init.json);
    // The init was not the victim, and nothing signalled it.
    quiet(&init);

    let all = node.records_of(&id);
    let children: Vec<_> = all.iter().filter(|r| r.field("role") != "init").collect();
    assert_eq!(
        children.len(),
        1,
        "the init and the hog: {:#?}",
        all.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
    let hog = children[0];
    let json = &hog.json;
    assert_eq!(hog.field("role"), "child", "{json}");
    assert!(!hog.record.main_process, "{json}");
    assert_eq!(hog.record.comm, "hog", "{json}");
    assert_eq!(hog.record.ppid, running.pid, "forked by the init: {json}");
    assert_eq!(hog.record.cgroup, pod.cgroup_of(&id), "{json}");
    assert_eq!(hog.reason(), "OOMKilled", "{json}");
    assert_eq!(hog.record.signal, Some(9), "{json}");
    assert_eq!(hog.sub("oom", "scope"), "memcg", "{json}");
    assert_eq!(hog.sub("oom", "memory_limit_bytes"), LIMIT, "{json}");
    assert_eq!(
        hog.sub("oom", "limit_cgroup"),
        pod.cgroup_of(&id).as_str(),
        "{json}"
    );
    assert_eq!(hog.sub("sender", "kind"), "kernel", "{json}");
}

/// `ExecSync` with a 1 s timeout on a probe that sleeps: containerd kills the exec process when
/// the timeout runs out. A killed exec session is recorded (it died of a signal) as `exec`,
/// never as the container's init; the container runs on.
fn exec_probe_killed_at_its_timeout_is_an_exec_record(handler: Handler) {
    let Some(mut node) = Node::start("exec_probe_killed_at_its_timeout", handler) else {
        return;
    };
    let pod = node.pod(false);
    let (id, running) = node.run(&pod, &sh("app", "trap '' TERM; exec sleep 3600"));
    let probe = node.kubelet.exec_sync(&id, &["/bin/sleep", "30"], 1);
    eprintln!("ExecSync past its timeout: {probe:?}");
    let killed = node
        .agent
        .wait_for("the killed probe", RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(id.as_str())
        })
        .unwrap();
    let json = &killed.json;
    assert_eq!(killed.field("role"), "exec", "{json}");
    assert!(!killed.record.main_process, "{json}");
    assert_eq!(killed.record.comm, "sleep", "{json}");
    assert_ne!(killed.record.pid, running.pid, "{json}");
    assert_eq!(killed.record.signal, Some(9), "{json}");
    assert_eq!(killed.reason(), "Killed", "{json}");
    assert_eq!(
        killed.sub("sender", "kind"),
        "host",
        "the runtime killed it: {json}"
    );
    let still = node.kubelet.container_status(&id).unwrap();
    assert_eq!(still.state, "CONTAINER_RUNNING", "{still:?}");
    assert_eq!(still.pid, running.pid, "the init is the same process");
    let all = node.records_of(&id);
    assert_eq!(
        all.len(),
        1,
        "only the killed probe: {:#?}",
        all.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
}

/// Go, Node and C cleanup handlers catch SIGTERM, restore the default and raise it again. In a
/// pod sharing its PID namespace the init is not PID 1 and so dies of it: `Terminated`, and the
/// sender is the runtime that sent the first SIGTERM, not the process itself.
fn stop_re_raised_by_the_init_is_terminated_by_the_runtime(handler: Handler) {
    let Some(mut node) = Node::start("stop_re_raised_by_the_init", handler) else {
        return;
    };
    let pod = node.pod(true);
    let script = "trap 'trap - TERM; kill -TERM $$' TERM; while sleep 0.2; do :; done";
    let (id, running) = node.run(&pod, &sh("app", script));
    std::thread::sleep(Duration::from_millis(500));
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
}

/// Containers started one after another in one pod: one `init` record each, nothing for the
/// OCI runtime's own processes (runc's `runc:[0:PARENT]` and `runc:[1:CHILD]` run in the
/// container's cgroup and exit 0), which the agent counts by role instead.
fn one_init_record_per_start_and_none_for_the_runtimes_helpers(handler: Handler) {
    const STARTS: u32 = 4;
    let Some(mut node) = Node::start("one_init_record_per_start", handler) else {
        return;
    };
    let runtime_exits = |node: &Node| {
        let body = node.agent.get("/metrics").unwrap().body;
        metric(
            &body,
            "coroner_exits_without_record_total",
            &[("role", "runtime")],
        )
        .unwrap_or(0.0)
    };
    let before = runtime_exits(&node);
    let pod = node.pod(false);
    let mut ids = Vec::new();
    for i in 0..STARTS {
        let (id, _) = node.run(&pod, &sh(&format!("c{i}"), "exit 0"));
        node.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
        ids.push(id);
    }
    for id in &ids {
        let record = node.only_init_record(id);
        assert_eq!(record.reason(), "Completed", "{}", record.json);
    }
    let roles: Vec<_> = node
        .agent
        .records()
        .unwrap()
        .iter()
        .filter(|r| r.record.pod_uid.as_deref() == Some(pod.uid.as_str()))
        .map(|r| r.field("role").as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        roles.iter().all(|r| r == "init"),
        "only the inits of the pod's containers: {roles:?}"
    );
    let counted = runtime_exits(&node) - before;
    if handler == Handler::Runc {
        // At least runc's two bootstrap stages per start (other tests' containers add theirs:
        // the agent sees the whole machine).
        assert!(
            counted >= f64::from(2 * STARTS),
            "runtime helpers' exits counted: {counted}"
        );
    }
    eprintln!("{handler:?}: {counted} runtime-helper exits counted for {STARTS} starts");
}
