//! What the kube end-to-end tests share: the double on its own runtime, the agent pointed at
//! it, pods of workloads whose containers are real cgroups, and checks of records, Events and
//! metrics.

use std::time::Duration;

use coroner::kube::message::event_note;
use coroner_tests::agent::expect::{Container, death};
use coroner_tests::agent::{Agent, Options, Record};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::objects::{pod, replicaset, with_label, with_owner, with_running};
use coroner_tests::cgroups::unique_hex;
use coroner_tests::victim::reap;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::runtime::Runtime;

const MIB: u64 = 1 << 20;
pub const LIMIT: u64 = 64 * MIB;
/// The agent's lookups wait 3 s for a container id by default; a record takes that at most,
/// plus the time a loaded machine needs.
pub const RECORD_WAIT: Duration = Duration::from_secs(10);
pub const EVENT_WAIT: Duration = Duration::from_secs(10);
/// kube's default backoff doubles from 0.8 s: a watch failing since the agent started retries
/// about 12 s in, then 25 s in.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(35);
pub const NS: &str = "shop";

/// The double runs on its own worker threads; the test's thread stays synchronous, like the
/// agent harness it drives.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

pub fn node() -> String {
    format!("node-e2e-{}", unique_hex(8))
}

/// `coroner --kube on --node-name <node>` with `KUBECONFIG` naming the double.
pub fn agent(server: &ApiServer, node: &str) -> Agent {
    Agent::start_with(&Options {
        kube: Some("on".into()),
        node: Some(node.into()),
        env: vec![("KUBECONFIG".into(), server.kubeconfig().into())],
        args: Vec::new(),
    })
    .expect("coroner starts with --kube on")
}

/// Waits until the agent's pod watch is open on the double (the list before it is done).
pub fn watch_open(rt: &Runtime, server: &ApiServer, agent: &Agent, limit: Duration) {
    assert!(
        rt.block_on(server.wait_until(limit, |s| s.open_watches() >= 1)),
        "the agent never opened its pod watch within {limit:?}; requests {:#?}\nagent log:\n{}",
        server.requests(),
        agent.log_tail()
    );
}

/// A pod of Deployment `deployment` through its `ReplicaSet` `<deployment>-<hash>` (both put
/// into the double), with `containers` running as `containerd://<id>`.
pub fn deployment_pod(
    server: &ApiServer,
    node: &str,
    deployment: &str,
    pod_uid: &str,
    containers: &[(&str, &Container)],
) -> Pod {
    let hash = &unique_hex(10)[..10];
    let rs = format!("{deployment}-{hash}");
    server.put_replicaset(&replicaset(NS, &rs, Some(deployment)));
    let name = format!("{rs}-{}", &unique_hex(5)[..5]);
    let mut p = with_label(
        with_owner(pod(NS, &name, pod_uid, node), "apps/v1", "ReplicaSet", &rs),
        "pod-template-hash",
        hash,
    );
    for (container, c) in containers {
        p = with_running(p, container, &c.container_id);
    }
    server.put_pod(&p);
    p
}

/// Runs `args` as the main process of `c` (the test stays outside, as a shim does), lets `act`
/// kill it given its pid, reaps it and returns its record, checked against `wait4`.
pub fn die(agent: &mut Agent, c: &Container, args: &[&str], act: impl FnOnce(u32)) -> Record {
    let child = c.spawn(args).unwrap();
    let pid = child.id();
    act(pid);
    let reaped = reap(child).unwrap();
    let record = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    death(&record, reaped).unwrap();
    record
}

pub fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The record carries what the cgroup says and what the API server knows.
pub fn assert_labelled(
    record: &Record,
    node: &str,
    c: &Container,
    (pod, container): (&str, &str),
    (owner_kind, owner_name): (&str, &str),
) {
    let r = &record.record;
    let got = (
        r.node.as_str(),
        r.pod_uid.as_deref(),
        r.container_id.as_deref(),
        r.namespace.as_deref(),
        r.pod.as_deref(),
        r.container.as_deref(),
        r.owner_kind.as_deref(),
        r.owner_name.as_deref(),
    );
    let want = (
        node,
        Some(c.pod_uid.as_str()),
        Some(c.container_id.as_str()),
        Some(NS),
        Some(pod),
        Some(container),
        Some(owner_kind),
        Some(owner_name),
    );
    assert_eq!(
        got, want,
        "(node, pod_uid, container_id, namespace, pod, container, owner_kind, owner_name) of {}",
        record.json
    );
    assert_eq!(r.cgroup, c.path(), "{}", record.json);
}

/// The Event the double holds for `pod`'s death of `reason` (events.k8s.io/v1 or core/v1).
fn event_of<'a>(events: &'a [Value], pod: &str, reason: &str) -> Option<&'a Value> {
    events.iter().find(|e| {
        let regarding = regarding(e);
        regarding["name"] == pod && e["reason"] == reason
    })
}

fn regarding(e: &Value) -> &Value {
    e.get("regarding")
        .or_else(|| e.get("involvedObject"))
        .unwrap_or(&Value::Null)
}

fn note(e: &Value) -> &str {
    e.get("note")
        .or_else(|| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A Warning Event on the pod with the verdict as its reason, naming the pod and container,
/// whose note is the agent's wording of this very record and says each of `says`.
pub fn assert_event(events: &[Value], record: &Record, pod: &str, container: &str, says: &[&str]) {
    let reason = record.reason();
    let e = event_of(events, pod, reason)
        .unwrap_or_else(|| panic!("no {reason} Event on pod {pod}; the double holds {events:#?}"));
    let r = regarding(e);
    let pod_uid = record.record.pod_uid.as_deref().unwrap_or_default();
    assert_eq!(
        (
            &r["kind"],
            &r["apiVersion"],
            &r["namespace"],
            &r["name"],
            &r["uid"]
        ),
        (
            &Value::from("Pod"),
            &Value::from("v1"),
            &Value::from(NS),
            &Value::from(pod),
            &Value::from(pod_uid)
        ),
        "the Event names the pod: {e:#}"
    );
    assert_eq!(
        r["fieldPath"],
        format!("spec.containers{{{container}}}"),
        "the Event names the container: {e:#}"
    );
    assert_eq!(e["metadata"]["namespace"], NS, "{e:#}");
    assert_eq!(e["type"], "Warning", "an abnormal death: {e:#}");
    let note = note(e);
    assert_eq!(
        note,
        event_note(&record.record),
        "the note words this record: {e:#}"
    );
    for phrase in says {
        assert!(note.contains(phrase), "the note says {phrase:?}: {note:?}");
    }
}
