//! The real runtime with the Kubernetes side: the kubelet double publishes the pod and the
//! runtime's container statuses (real `containerd://<id>` ids) to the API server double, as the
//! kubelet does, and the agent runs with `--kube on`. Checked: the records name the pod and the
//! container the API has for the runtime's ids, a `StartError` carries the runtime's message, and
//! the agent's Event lands next to the kubelet's, an attempt the status shows only as the
//! restarted container's `lastState` is still named. With runc and with crun. Needs root and the
//! runtime (`cargo xtask test` installs it).

use std::time::Duration;

use coroner_tests::exposition::metric;
use coroner_tests::runtime::publish::{post_event, publish};
use coroner_tests::runtime::{Cluster, ContainerSpec, Handler, PodOptions};

const RECORD_WAIT: Duration = Duration::from_secs(15);
const EXIT_WAIT: Duration = Duration::from_secs(20);

coroner_tests::with_both_runtimes!(
    records_name_the_pod_and_container_of_the_runtimes_ids,
    start_error_carries_the_runtimes_message,
    pod_teardown_is_recorded_as_the_sandbox_not_a_container_death,
    a_restarted_container_names_its_killed_attempt_from_the_last_state,
);

fn records_name_the_pod_and_container_of_the_runtimes_ids(handler: Handler) {
    let Some(mut c) = Cluster::start("records_name_the_pod_and_container", handler, &[]) else {
        return;
    };
    let pod = c.kubelet.run_pod(&PodOptions::default()).unwrap();
    let (id, _) = c
        .kubelet
        .run_container(&pod, &ContainerSpec::sh("app", "sleep 1; exit 2"))
        .unwrap();
    publish(&c.kubelet, &c.server, &c.node, &pod).unwrap();
    post_event(
        &c.server,
        &c.node,
        &pod,
        "app",
        ("Normal", "Started", "Started container app"),
    )
    .unwrap();
    let exited = c.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    publish(&c.kubelet, &c.server, &c.node, &pod).unwrap();
    let record = c
        .agent
        .wait_for("the init", RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(id.as_str()) && r.field("role") == "init"
        })
        .unwrap();
    let r = &record.record;
    assert_eq!(
        r.comm, "sh",
        "the init is the container's command: {}",
        record.json
    );
    assert_eq!(
        (
            r.namespace.as_deref(),
            r.pod.as_deref(),
            r.container.as_deref()
        ),
        (
            Some(pod.namespace.as_str()),
            Some(pod.name.as_str()),
            Some("app")
        ),
        "{}",
        record.json
    );
    assert_eq!(record.reason(), "Error", "{}", record.json);
    assert_eq!(
        i32::from(r.exit_status),
        exited.exit_code,
        "{}",
        record.json
    );
    // The agent's Event about the death, beside the kubelet's own.
    let server = &c.server;
    let posted = c
        .kubelet
        .tokio()
        .block_on(server.wait_until(RECORD_WAIT, |s| {
            s.events().iter().any(|e| e["reason"] == "Error")
        }));
    assert!(
        posted,
        "the agent's Event: {:#?}\n{}",
        server.events(),
        c.agent.log_tail()
    );
    assert!(
        server.events().iter().any(|e| e["reason"] == "Started"),
        "{:#?}",
        server.events()
    );
}

/// The runtime cannot start the entrypoint; the kubelet writes the runtime's reason and message
/// into the container's terminated state, and the record carries that message.
fn start_error_carries_the_runtimes_message(handler: Handler) {
    let Some(mut c) = Cluster::start("start_error_carries_the_runtimes_message", handler, &[])
    else {
        return;
    };
    let pod = c.kubelet.run_pod(&PodOptions::default()).unwrap();
    let id = c
        .kubelet
        .create_container(&pod, &ContainerSpec::new("app", &["/nope"]))
        .unwrap();
    let error = c
        .kubelet
        .start_container(&id)
        .expect_err("/nope cannot start");
    let exited = c.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    publish(&c.kubelet, &c.server, &c.node, &pod).unwrap();
    post_event(
        &c.server,
        &c.node,
        &pod,
        "app",
        ("Warning", "Failed", &format!("Error: {error:#}")),
    )
    .unwrap();
    let record = c
        .agent
        .wait_for("the init", RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(id.as_str())
        })
        .unwrap();
    assert_eq!(record.reason(), "StartError", "{}", record.json);
    assert_eq!(
        record.record.container.as_deref(),
        Some("app"),
        "{}",
        record.json
    );
    assert_eq!(
        record.field("message"),
        exited.message.as_str(),
        "the runtime's message ({exited:?}) on the record: {}",
        record.json
    );
}

/// The pod's teardown kills its pause process: a `sandbox` record, but no Event and no
/// `coroner_terminations_total` for the pod (the kubelet's pod is gone, no container died).
fn pod_teardown_is_recorded_as_the_sandbox_not_a_container_death(handler: Handler) {
    let Some(mut c) = Cluster::start("pod_teardown_is_recorded_as_the_sandbox", handler, &[])
    else {
        return;
    };
    let pod = c.kubelet.run_pod(&PodOptions::default()).unwrap();
    let (id, _) = c
        .kubelet
        .run_container(&pod, &ContainerSpec::sh("app", "exit 3"))
        .unwrap();
    publish(&c.kubelet, &c.server, &c.node, &pod).unwrap();
    c.kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
    publish(&c.kubelet, &c.server, &c.node, &pod).unwrap();
    let app = c
        .agent
        .wait_for("the app's init", RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(id.as_str())
        })
        .unwrap();
    assert_eq!(
        app.record.pod.as_deref(),
        Some(pod.name.as_str()),
        "{}",
        app.json
    );
    c.kubelet.stop_pod(&pod).unwrap();
    let sandbox = c
        .agent
        .wait_for("the sandbox", RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(pod.sandbox_id.as_str())
        })
        .unwrap();
    assert_eq!(sandbox.field("role"), "sandbox", "{}", sandbox.json);
    assert_eq!(
        sandbox.record.pod_uid.as_deref(),
        Some(pod.uid.as_str()),
        "{}",
        sandbox.json
    );
    // Time for an Event or a series the sandbox should not get.
    std::thread::sleep(Duration::from_secs(3));
    let events: Vec<_> = c
        .server
        .events()
        .into_iter()
        .filter(|e| e["source"]["component"] != "kubelet")
        .collect();
    assert_eq!(
        events.len(),
        1,
        "one Event, the app's death, none for the sandbox: {events:#?}"
    );
    let body = c.agent.get("/metrics").unwrap().body;
    let count = |reason: &str| {
        metric(
            &body,
            "coroner_terminations_total",
            &[("pod", pod.name.as_str()), ("reason", reason)],
        )
    };
    assert_eq!(count("Error"), Some(1.0), "the app's death counts:\n{body}");
    assert_eq!(count("Killed"), None, "the sandbox's does not:\n{body}");
}

/// The kubelet kills `app` for a failed liveness probe and restarts it before its status
/// manager writes again: the first status the agent sees has the new attempt's id as
/// `containerID` and the killed one only in `lastState.terminated` (an agent that was
/// restarting, or a watch that was re-listing, never saw it current). The killed attempt's
/// record still names the container, and with it the kubelet's reason for the kill.
fn a_restarted_container_names_its_killed_attempt_from_the_last_state(handler: Handler) {
    let Some(mut c) = Cluster::start(
        "a_restarted_container_names_its_killed_attempt",
        handler,
        &[],
    ) else {
        return;
    };
    let pod = c.kubelet.run_pod(&PodOptions::default()).unwrap();
    let attempt = |attempt| ContainerSpec {
        attempt,
        ..ContainerSpec::sh("app", "sleep 600")
    };
    let (killed, _) = c.kubelet.run_container(&pod, &attempt(0)).unwrap();
    post_event(
        &c.server,
        &c.node,
        &pod,
        "app",
        (
            "Normal",
            "Killing",
            "Container app failed liveness probe, will be restarted",
        ),
    )
    .unwrap();
    c.kubelet.stop_container(&killed, 1).unwrap();
    c.kubelet.wait_exited(&killed, EXIT_WAIT).unwrap();
    let (restarted, _) = c.kubelet.run_container(&pod, &attempt(1)).unwrap();
    let published = publish(&c.kubelet, &c.server, &c.node, &pod).unwrap();
    let status = &published["status"]["containerStatuses"];
    assert_eq!(
        status.as_array().map(Vec::len),
        Some(1),
        "one status per container name: {status:#}"
    );
    assert_eq!(
        status[0]["containerID"],
        format!("containerd://{restarted}")
    );
    assert_eq!(
        status[0]["lastState"]["terminated"]["containerID"],
        format!("containerd://{killed}"),
        "{status:#}"
    );
    assert_eq!(status[0]["restartCount"], 1, "{status:#}");

    let record = c
        .agent
        .wait_for("the killed attempt's init", RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(killed.as_str()) && r.field("role") == "init"
        })
        .unwrap();
    let r = &record.record;
    assert_eq!(
        (r.pod.as_deref(), r.container.as_deref()),
        (Some(pod.name.as_str()), Some("app")),
        "named from lastState: {}\n{}",
        record.json,
        c.agent.log_tail()
    );
    assert_eq!(
        record.field("initiator"),
        "liveness_probe",
        "the kubelet's Killing Event matched by the container's name: {}",
        record.json
    );
}
