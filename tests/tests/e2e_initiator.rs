//! Who decided a death, end to end: the real `coroner` binary with `--kube on` against the API
//! server double; real processes in kubelet-style memory cgroups are stopped by the test acting
//! as the runtime on the host, while the test, acting as the kubelet and the API server,
//! publishes what they would: a `Killing` Event (core/v1, or events.k8s.io/v1) — here
//! deliberately only after the death, as a slow Event watch would deliver it — or a deletion.
//! Without the API server, what only it could tell is `unknown`. Every initiator for a real
//! container stopped by the real runtime, in the kubelet's and the controllers' order, is
//! `runtime_initiators.rs`. Needs root; run through `cargo xtask test` (or build `coroner` first).

#[path = "e2e_kube/support.rs"]
#[allow(
    dead_code,
    reason = "the kube end-to-end tests' shared module; this binary uses part of it"
)]
mod support;

use std::time::{Duration, Instant};

use coroner_tests::agent::expect::Container;
use coroner_tests::agent::{Agent, Record};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::victim::signal_pid;
use k8s_openapi::api::core::v1::{ExecAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use support::{NS, agent, deployment_pod, die, name_of, node, runtime, watch_open};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The agent's default bounded wait for the API (labels and initiator share it).
const LABEL_WAIT: Duration = Duration::from_secs(3);

fn now_seconds() -> String {
    let t = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid");
    t.format(&Rfc3339).expect("RFC 3339")
}

/// `terminationGracePeriodSeconds: 30` on the pod; container `name` gets a liveness probe with
/// its own grace of 7 s and a startup probe without one.
fn with_probes(mut p: Pod, name: &str) -> Pod {
    let spec = p.spec.as_mut().expect("a spec");
    spec.termination_grace_period_seconds = Some(30);
    let c = spec
        .containers
        .iter_mut()
        .find(|c| c.name == name)
        .expect("the container");
    let exec = Some(ExecAction {
        command: Some(vec!["/bin/true".into()]),
    });
    c.liveness_probe = Some(Probe {
        exec: exec.clone(),
        termination_grace_period_seconds: Some(7),
        ..Probe::default()
    });
    c.startup_probe = Some(Probe {
        exec,
        ..Probe::default()
    });
    p
}

/// A `Killing` Event as the kubelet's recorder posts it through core/v1.
fn killing_core(p: &Pod, node: &str, container: &str, message: &str) -> Value {
    let at = now_seconds();
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{}", name_of(p), unique_hex(16)), "namespace": NS},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": NS,
            "name": name_of(p), "uid": p.metadata.uid,
            "fieldPath": format!("spec.containers{{{container}}}")},
        "reason": "Killing", "message": message, "type": "Normal",
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": at, "lastTimestamp": at, "count": 1})
}

/// The same through events.k8s.io/v1, as a newer recorder writes it.
fn killing_new(p: &Pod, node_name: &str, container: &str, note: &str) -> Value {
    let at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("RFC 3339");
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": format!("{}.{}", name_of(p), unique_hex(16)), "namespace": NS},
        "regarding": {"kind": "Pod", "apiVersion": "v1", "namespace": NS,
            "name": name_of(p), "uid": p.metadata.uid,
            "fieldPath": format!("spec.containers{{{container}}}")},
        "reason": "Killing", "note": note, "type": "Normal", "action": "Killing",
        "reportingController": "kubelet", "reportingInstance": node_name, "eventTime": at})
}

fn initiator(r: &Record) -> (&str, &Value) {
    (
        r.field("initiator").as_str().unwrap_or("?"),
        r.field("grace_allowed_seconds"),
    )
}

/// Stops `c`'s main process with SIGTERM from the host, as the runtime does; `after_death`
/// then publishes what the kubelet would. Returns the record and how long after the death it
/// was seen.
fn stopped(agent: &mut Agent, c: &Container, after_death: impl FnOnce()) -> (Record, Duration) {
    let mut died = None;
    let record = die(agent, c, &["sleep", "30"], |pid| {
        signal_pid(pid, libc::SIGTERM);
        // Reaped by `die` right after; the Event comes later than the death.
        std::thread::sleep(Duration::from_millis(300));
        died = Some(Instant::now());
        after_death();
    });
    let seen_after = died.map_or(Duration::ZERO, |d| d.elapsed());
    (record, seen_after)
}

#[test]
fn a_liveness_probe_kill_from_a_killing_event_that_comes_after_the_death() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start().expect("the double starts");
    let node = node();
    let api = Container::new(Layout::CgroupfsBurstable).unwrap();
    let worker = api.sibling().unwrap();
    let tool = api.sibling().unwrap();
    let p = deployment_pod(
        &server,
        &node,
        "shop-api",
        &api.pod_uid,
        &[("api", &api), ("worker", &worker), ("tool", &tool)],
    );
    let p = with_probes(with_probes(p, "api"), "worker");
    server.put_pod(&p);
    let mut agent = agent(&server, &node);
    watch_open(&rt, &server, &agent, Duration::from_secs(10));

    let (record, seen_after) = stopped(&mut agent, &api, || {
        server.publish_event(&killing_core(
            &p,
            &node,
            "api",
            "Container api failed liveness probe, will be restarted",
        ));
    });
    assert_eq!(record.reason(), "Terminated", "{}", record.json);
    assert_eq!(
        initiator(&record),
        ("liveness_probe", &json!(7)),
        "the probe's own grace: {}\nagent log:\n{}",
        record.json,
        agent.log_tail()
    );
    assert!(
        seen_after < LABEL_WAIT + Duration::from_secs(2),
        "held back {seen_after:?}"
    );
    // Only this pod's Events were asked for, through the Event API.
    let asked: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/events") && r.method == "GET")
        .collect();
    assert!(!asked.is_empty(), "the agent read the pod's Events");
    for r in &asked {
        assert_eq!(r.path, format!("/api/v1/namespaces/{NS}/events"), "{r:?}");
        assert!(
            r.query
                .contains(&format!("involvedObject.uid%3D{}", api.pod_uid)),
            "{r:?}"
        );
    }

    let reads = coroner_tests::exposition::metric(
        &agent.get("/metrics").unwrap().body,
        "coroner_kube_initiator_event_reads_total",
        &[],
    );
    assert!(reads.is_some_and(|n| n >= 1.0), "counted: {reads:?}");

    // An events.k8s.io/v1 Killing reads the same; no probe grace of its own: the pod's.
    let (record, _) = stopped(&mut agent, &worker, || {
        server.publish_event(&killing_new(
            &p,
            &node,
            "worker",
            "Container worker failed startup probe, will be restarted",
        ));
    });
    assert_eq!(
        initiator(&record),
        ("startup_probe", &json!(30)),
        "{}\nagent log:\n{}",
        record.json,
        agent.log_tail()
    );

    // An operator's kill from the host: the kubelet publishes nothing; after the bounded wait
    // the record says so, and is not held back longer.
    let (record, seen_after) = stopped(&mut agent, &tool, || {});
    assert_eq!(
        initiator(&record),
        ("host", &Value::Null),
        "{}",
        record.json
    );
    assert!(
        seen_after < LABEL_WAIT + Duration::from_secs(2),
        "held back {seen_after:?}"
    );
}

#[test]
fn a_pod_deletion_from_the_deletion_timestamp_with_its_grace() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start().expect("the double starts");
    let node = node();
    let c = Container::new(Layout::SystemdContainerd).unwrap();
    let p = with_probes(
        deployment_pod(&server, &node, "cart", &c.pod_uid, &[("cart", &c)]),
        "cart",
    );
    server.put_pod(&p);
    let mut agent = agent(&server, &node);
    watch_open(&rt, &server, &agent, Duration::from_secs(10));

    let record = die(&mut agent, &c, &["sleep", "30"], |pid| {
        // `kubectl delete --grace-period=45`: the API server sets the deletion, the kubelet
        // stops the container.
        let mut deleting = p.clone();
        let end = jiff_now_plus(45);
        deleting.metadata.deletion_timestamp = Some(end);
        deleting.metadata.deletion_grace_period_seconds = Some(45);
        server.put_pod(&deleting);
        std::thread::sleep(Duration::from_millis(200));
        signal_pid(pid, libc::SIGTERM);
    });
    assert_eq!(
        initiator(&record),
        ("pod_deletion", &json!(45)),
        "{}\nagent log:\n{}",
        record.json,
        agent.log_tail()
    );
    // The kernel decides an exit at once, whatever the pod's state.
    let record = die(&mut agent, &c.sibling().unwrap(), &["exit", "3"], drop);
    assert_eq!(
        initiator(&record),
        ("exited", &Value::Null),
        "{}",
        record.json
    );
}

fn jiff_now_plus(seconds: i64) -> Time {
    let now = OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    let text = now
        .replace_nanosecond(0)
        .expect("0 ns")
        .format(&Rfc3339)
        .expect("RFC 3339");
    serde_json::from_value(json!(text)).expect("a Time")
}

#[test]
fn without_the_api_server_only_what_the_kernel_knows() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start_down().expect("the double has a port");
    let node = node();
    let c = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let p = deployment_pod(&server, &node, "search", &c.pod_uid, &[("search", &c)]);
    let mut agent = agent(&server, &node);

    let (record, seen_after) = stopped(&mut agent, &c, || {
        // What the kubelet would say reaches nobody: the API server is down.
        server.publish_event(&killing_core(
            &p,
            &node,
            "search",
            "Container search failed liveness probe, will be restarted",
        ));
    });
    assert_eq!(record.reason(), "Terminated", "{}", record.json);
    assert_eq!(
        initiator(&record),
        ("unknown", &Value::Null),
        "{}",
        record.json
    );
    assert!(
        seen_after < LABEL_WAIT + Duration::from_secs(2),
        "held back {seen_after:?}"
    );
    let record = die(&mut agent, &c.sibling().unwrap(), &["segv"], drop);
    assert_eq!(
        initiator(&record),
        ("kernel", &Value::Null),
        "{}",
        record.json
    );
}
