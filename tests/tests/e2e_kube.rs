//! End to end with the Kubernetes side: the real `coroner` binary with `--kube on`, talking
//! through `KUBECONFIG` to the API server double; real processes die in kubelet-style memory
//! cgroups whose container ids the double's pods carry in `status.containerStatuses`.
//! Checked: the labels and workload on each record, the Events the double received, a pod
//! deleted just before the death, a container id that reaches the status after it, and an API
//! server that is down when the agent starts. Needs root; run through `cargo xtask test` (or
//! build `coroner` first).

use std::time::{Duration, Instant};

use coroner::kube::message::event_note;
use coroner_tests::agent::expect::{Container, death, wait_ignoring};
use coroner_tests::agent::{Agent, Options, Record};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::objects::{
    job, pod, replicaset, with_label, with_owner, with_running, with_terminated, with_waiting,
};
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::victim::{reap, signal_pid};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::runtime::Runtime;

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 64 * MIB;
/// The agent's lookups wait 3 s for a container id by default; a record takes that at most,
/// plus the time a loaded machine needs.
const RECORD_WAIT: Duration = Duration::from_secs(10);
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// kube's default backoff doubles from 0.8 s: a watch failing since the agent started retries
/// about 12 s in, then 25 s in.
const RECONNECT_WAIT: Duration = Duration::from_secs(35);
const NS: &str = "shop";

/// The double runs on its own worker threads; the test's thread stays synchronous, like the
/// agent harness it drives.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

fn node() -> String {
    format!("node-e2e-{}", unique_hex(8))
}

/// `coroner --kube on --node-name <node>` with `KUBECONFIG` naming the double.
fn agent(server: &ApiServer, node: &str) -> Agent {
    Agent::start_with(&Options {
        kube: Some("on".into()),
        node: Some(node.into()),
        env: vec![("KUBECONFIG".into(), server.kubeconfig().into())],
        args: Vec::new(),
    })
    .expect("coroner starts with --kube on")
}

/// Waits until the agent's pod watch is open on the double (the list before it is done).
fn watch_open(rt: &Runtime, server: &ApiServer, agent: &Agent, limit: Duration) {
    assert!(
        rt.block_on(server.wait_until(limit, |s| s.open_watches() >= 1)),
        "the agent never opened its pod watch within {limit:?}; requests {:#?}\nagent log:\n{}",
        server.requests(),
        agent.log_tail()
    );
}

/// A pod of Deployment `deployment` through ReplicaSet `<deployment>-<hash>` (both put into
/// the double), with `containers` running as `containerd://<id>`.
fn deployment_pod(
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

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The record carries what the cgroup says and what the API server knows.
fn assert_labelled(
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

/// An Event on the pod with the verdict as its reason, of `kind`, whose note is the agent's
/// wording of this very record and contains each of `says`.
#[expect(clippy::too_many_arguments, reason = "each says what the Event must name")]
fn assert_event(
    events: &[Value],
    record: &Record,
    pod: &str,
    pod_uid: &str,
    container: &str,
    kind: &str,
    says: &[&str],
    all: &str,
) {
    let reason = record.reason();
    let e = event_of(events, pod, reason)
        .unwrap_or_else(|| panic!("no {reason} Event on pod {pod}; the double holds {all}"));
    let r = regarding(e);
    assert_eq!(
        (&r["kind"], &r["apiVersion"], &r["namespace"], &r["name"], &r["uid"]),
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
    assert_eq!(e["type"], kind, "{e:#}");
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

#[test]
fn real_deaths_carry_pod_container_and_workload_and_become_events() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start().expect("the double starts");
    let node = node();
    // Pod "api-…" of Deployment "api": containers "api" (OOM-killed) and "proxy" (exits 1).
    let api = Container::new(Layout::CgroupfsBurstable).unwrap();
    let proxy = api.sibling().unwrap();
    let api_pod = name_of(&deployment_pod(
        &server,
        &node,
        "api",
        &api.pod_uid,
        &[("api", &api), ("proxy", &proxy)],
    ));
    // Pod "worker-…" of Deployment "worker": SIGTERM ignored, then SIGKILL.
    let worker = Container::new(Layout::SystemdContainerd).unwrap();
    let worker_pod = name_of(&deployment_pod(
        &server,
        &node,
        "worker",
        &worker.pod_uid,
        &[("worker", &worker)],
    ));
    let mut agent = agent(&server, &node);
    watch_open(&rt, &server, &agent, Duration::from_secs(10));

    api.cgroup.set_limit(LIMIT).unwrap();
    let child = api.spawn(&["alloc", "300"]).unwrap();
    let pid = child.id();
    let reaped = reap(child).unwrap();
    assert_eq!(reaped.signal(), Some(libc::SIGKILL), "the OOM killer took it");
    let oom = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    death(&oom, reaped).unwrap();
    assert_eq!(oom.reason(), "OOMKilled", "{}", oom.json);
    assert_labelled(&oom, &node, &api, (&api_pod, "api"), ("Deployment", "api"));

    let child = worker.spawn(&["ignore-term", "30"]).unwrap();
    let pid = child.id();
    wait_ignoring(pid, libc::SIGTERM).unwrap();
    signal_pid(pid, libc::SIGTERM);
    std::thread::sleep(Duration::from_secs(1));
    signal_pid(pid, libc::SIGKILL);
    let reaped = reap(child).unwrap();
    let grace = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    death(&grace, reaped).unwrap();
    assert_eq!(grace.reason(), "GracePeriodExpired", "{}", grace.json);
    assert_labelled(
        &grace,
        &node,
        &worker,
        (&worker_pod, "worker"),
        ("Deployment", "worker"),
    );

    let child = proxy.spawn(&["exit", "1"]).unwrap();
    let pid = child.id();
    let reaped = reap(child).unwrap();
    let error = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    death(&error, reaped).unwrap();
    assert_eq!(error.reason(), "Error", "{}", error.json);
    assert_labelled(
        &error,
        &node,
        &proxy,
        (&api_pod, "proxy"),
        ("Deployment", "api"),
    );

    assert!(
        rt.block_on(server.wait_until(EVENT_WAIT, |s| s.events().len() >= 3)),
        "three Events; the double holds {:#?}\nagent log:\n{}",
        server.events(),
        agent.log_tail()
    );
    let events = server.events();
    let all = format!("{events:#?}");
    assert_eq!(events.len(), 3, "one Event per death: {all}");
    assert_event(
        &events,
        &oom,
        &api_pod,
        &api.pod_uid,
        "api",
        "Warning",
        &["OOMKilled", "64Mi", "container \"api\"", &format!("pid {}", oom.pid())],
        &all,
    );
    assert_event(
        &events,
        &grace,
        &worker_pod,
        &worker.pod_uid,
        "worker",
        "Warning",
        &["GracePeriodExpired", "SIGTERM", "SIGKILL", "s later"],
        &all,
    );
    assert_event(
        &events,
        &error,
        &api_pod,
        &api.pod_uid,
        "proxy",
        "Warning",
        &["Error", "exited with code 1", "container \"proxy\""],
        &all,
    );
    // The workload of pod "api-…" was looked up once for its two deaths: cached.
    let rs_gets = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/replicasets/api-"))
        .count();
    assert_eq!(rs_gets, 1, "one ReplicaSet lookup for two deaths: {:#?}", server.requests());

    // The metrics carry the same labels.
    let metrics = agent.get("/metrics").unwrap().body;
    let oom_series = metrics.lines().find(|l| {
        l.starts_with("coroner_oom_kills_total{")
            && l.contains(&format!("pod=\"{api_pod}\""))
            && l.contains("container=\"api\"")
            && l.contains("namespace=\"shop\"")
            && l.contains("owner_kind=\"Deployment\"")
            && l.contains("owner_name=\"api\"")
    });
    assert!(
        oom_series.is_some_and(|l| l.ends_with(" 1")),
        "a labelled coroner_oom_kills_total series of 1: {oom_series:?}\n{metrics}"
    );
}

#[test]
fn a_pod_deleted_just_before_its_container_dies_still_labels() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start().expect("the double starts");
    let node = node();
    let c = Container::new(Layout::SystemdContainerd).unwrap();
    let p = deployment_pod(&server, &node, "cart", &c.pod_uid, &[("cart", &c)]);
    let name = name_of(&p);
    let mut agent = agent(&server, &node);
    watch_open(&rt, &server, &agent, Duration::from_secs(10));

    let child = c.spawn(&["sleep", "30"]).unwrap();
    let pid = child.id();
    // A force delete: the pod object goes, its container still runs for a moment. The watch
    // delivers DELETED within milliseconds; the death comes well after.
    assert!(server.delete_pod(NS, &name).is_some());
    std::thread::sleep(Duration::from_millis(700));
    signal_pid(pid, libc::SIGKILL);
    let reaped = reap(child).unwrap();
    let record = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    death(&record, reaped).unwrap();
    assert_eq!(record.reason(), "Killed", "{}", record.json);
    assert_labelled(&record, &node, &c, (&name, "cart"), ("Deployment", "cart"));

    assert!(
        rt.block_on(server.wait_until(EVENT_WAIT, |s| !s.events().is_empty())),
        "an Event for the deleted pod's death\nagent log:\n{}",
        agent.log_tail()
    );
    let events = server.events();
    assert_event(
        &events,
        &record,
        &name,
        &c.pod_uid,
        "cart",
        "Warning",
        &["Killed", "SIGKILL", "container \"cart\""],
        &format!("{events:#?}"),
    );
}

#[test]
fn a_container_id_that_reaches_the_status_after_the_death_is_labelled() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start().expect("the double starts");
    let node = node();
    let c = Container::new(Layout::CgroupfsBurstable).unwrap();
    // A CronJob's pod: its owner is read through the Job.
    let job_name = format!("report-{}", &unique_hex(8)[..8]);
    server.put_job(&job(NS, &job_name, Some("report")));
    let name = format!("{job_name}-{}", &unique_hex(5)[..5]);
    let creating = with_waiting(
        with_owner(pod(NS, &name, &c.pod_uid, &node), "batch/v1", "Job", &job_name),
        "report",
    );
    server.put_pod(&creating);
    let mut agent = agent(&server, &node);
    watch_open(&rt, &server, &agent, Duration::from_secs(10));

    let child = c.spawn(&["exit", "3"]).unwrap();
    let pid = child.id();
    let reaped = reap(child).unwrap();
    // The kubelet writes the id into the status only after the runtime reported the death.
    std::thread::sleep(Duration::from_secs(1));
    let early = agent.records().unwrap().iter().find(|r| r.pid() == pid).cloned();
    assert!(
        early.is_none(),
        "the record went out before the status named its container: {:?}",
        early.map(|r| r.json)
    );
    let status_at = Instant::now();
    server.put_pod(&with_terminated(creating, "report", &c.container_id, 3));
    let record = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    let after = status_at.elapsed();
    death(&record, reaped).unwrap();
    assert_eq!(record.reason(), "Error", "{}", record.json);
    assert_labelled(&record, &node, &c, (&name, "report"), ("CronJob", "report"));
    assert!(
        after < Duration::from_secs(3),
        "the record came {after:?} after the status named its container"
    );
}

/// The value of the first series of `name` in the agent's exposition that carries every one
/// of `labels` (label values here hold no commas).
fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (family, inner) = match series.split_once('{') {
            Some((family, rest)) => (family, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let has = |(k, v): &(&str, &str)| inner.split(',').any(|p| p == format!("{k}=\"{v}\""));
        (family == name && labels.iter().all(has))
            .then(|| value.parse().ok())
            .flatten()
    })
}

fn label_losses(agent: &Agent) -> f64 {
    let body = agent.get("/metrics").unwrap().body;
    metric(&body, "coroner_events_lost_total", &[("stage", "label")])
        .unwrap_or_else(|| panic!("no coroner_events_lost_total{{stage=\"label\"}} in\n{body}"))
}

/// Records the agent could not label: on a machine of its own, only the test's.
fn unlabelled(agent: &mut Agent) -> usize {
    agent
        .records()
        .unwrap()
        .iter()
        .filter(|r| r.record.container.is_none())
        .count()
}

#[test]
fn the_api_server_down_at_start_then_up() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start_down().expect("the double has a port");
    let node = node();
    let c = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let name = name_of(&deployment_pod(
        &server,
        &node,
        "search",
        &c.pod_uid,
        &[("search", &c)],
    ));
    // The agent must come up and record without its API server.
    let mut agent = agent(&server, &node);

    let child = c.spawn(&["exit", "2"]).unwrap();
    let pid = child.id();
    let reaped = reap(child).unwrap();
    let record = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    death(&record, reaped).unwrap();
    assert_eq!(record.reason(), "Error", "{}", record.json);
    let r = &record.record;
    assert_eq!(
        (r.pod_uid.as_deref(), r.container_id.as_deref()),
        (Some(c.pod_uid.as_str()), Some(c.container_id.as_str())),
        "the cgroup still names the container: {}",
        record.json
    );
    for field in ["namespace", "pod", "container", "owner_kind", "owner_name"] {
        assert!(
            record.field(field).is_null(),
            "{field} is unknown while the API server is down: {}",
            record.json
        );
    }
    // Every record that went out unlabelled is counted (the metric moves before the record is
    // written, so the two agree once both are read after it).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lost = label_losses(&agent);
        let expected = unlabelled(&mut agent);
        assert!(expected >= 1);
        #[expect(clippy::cast_precision_loss, reason = "a handful of records")]
        if (lost - expected as f64).abs() < f64::EPSILON {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "coroner_events_lost_total{{stage=\"label\"}} is {lost}, {expected} records went out unlabelled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let watch_up =
        |agent: &Agent| metric(&agent.get("/metrics").unwrap().body, "coroner_kube_watch_up", &[]);
    assert_eq!(watch_up(&agent), Some(0.0), "the pod watch is not up");

    server.up().expect("the double listens again");
    watch_open(&rt, &server, &agent, RECONNECT_WAIT);
    let child = c.spawn(&["exit", "4"]).unwrap();
    let pid = child.id();
    let reaped = reap(child).unwrap();
    let record = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    death(&record, reaped).unwrap();
    assert_labelled(&record, &node, &c, (&name, "search"), ("Deployment", "search"));
    assert!(
        rt.block_on(server.wait_until(EVENT_WAIT, |s| !s.events().is_empty())),
        "an Event once the API server is back\nagent log:\n{}",
        agent.log_tail()
    );
    let events = server.events();
    assert_event(
        &events,
        &record,
        &name,
        &c.pod_uid,
        "search",
        "Warning",
        &["exited with code 4"],
        &format!("{events:#?}"),
    );
    assert_eq!(events.len(), 1, "no Event for the unlabelled death: {events:#?}");
    // The gauge follows the watch within its 2 s refresh.
    let deadline = Instant::now() + Duration::from_secs(5);
    while watch_up(&agent) != Some(1.0) {
        assert!(Instant::now() < deadline, "coroner_kube_watch_up never 1");
        std::thread::sleep(Duration::from_millis(200));
    }
}
