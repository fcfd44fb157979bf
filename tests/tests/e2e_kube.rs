//! End to end with the Kubernetes side: the real `coroner` binary with `--kube on`, talking
//! through `KUBECONFIG` to the API server double; real processes die in kubelet-style memory
//! cgroups whose container ids the double's pods carry in `status.containerStatuses`.
//! Checked: the labels and workload on each record, the Events the double received, a pod
//! deleted just before the death, a container id that reaches the status after it, and an API
//! server that is down when the agent starts. Needs root; run through `cargo xtask test` (or
//! build `coroner` first).

#[path = "e2e_kube/support.rs"]
mod support;

use std::time::{Duration, Instant};

use coroner::kube::IGNORE_ANNOTATION;
use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::{Container, death, wait_ignoring};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::objects::{job, pod, with_owner, with_terminated, with_waiting};
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::exposition::metric;
use coroner_tests::victim::{reap, signal_pid};
use support::{
    EVENT_WAIT, LIMIT, NS, RECONNECT_WAIT, RECORD_WAIT, agent, assert_event, assert_labelled,
    deployment_pod, die, name_of, node, runtime, watch_open,
};

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
    let oom = die(&mut agent, &api, &["alloc", "300"], drop);
    assert_eq!(oom.reason(), "OOMKilled", "{}", oom.json);
    assert_labelled(&oom, &node, &api, (&api_pod, "api"), ("Deployment", "api"));

    let grace = die(&mut agent, &worker, &["ignore-term", "30"], |pid| {
        wait_ignoring(pid, libc::SIGTERM).unwrap();
        signal_pid(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_secs(1));
        signal_pid(pid, libc::SIGKILL);
    });
    assert_eq!(grace.reason(), "GracePeriodExpired", "{}", grace.json);
    assert_labelled(
        &grace,
        &node,
        &worker,
        (&worker_pod, "worker"),
        ("Deployment", "worker"),
    );

    let error = die(&mut agent, &proxy, &["exit", "1"], drop);
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
    assert_eq!(events.len(), 3, "one Event per death: {events:#?}");
    let oom_pid = format!("pid {}", oom.pid());
    let oom_says = ["OOMKilled", "64Mi", "container \"api\"", &oom_pid];
    assert_event(&events, &oom, &api_pod, "api", &oom_says);
    let grace_says = ["GracePeriodExpired", "SIGTERM", "SIGKILL", "s later"];
    assert_event(&events, &grace, &worker_pod, "worker", &grace_says);
    let error_says = ["Error", "exited with code 1", "container \"proxy\""];
    assert_event(&events, &error, &api_pod, "proxy", &error_says);
    // The workload of pod "api-…" was looked up once for its two deaths: cached.
    let rs_gets = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/replicasets/api-"))
        .count();
    assert_eq!(
        rs_gets,
        1,
        "one ReplicaSet lookup for two deaths: {:#?}",
        server.requests()
    );

    // The metrics carry the same labels.
    let metrics = agent.get("/metrics").unwrap().body;
    let labels = [
        ("namespace", NS),
        ("pod", api_pod.as_str()),
        ("uid", api.pod_uid.as_str()),
        ("container", "api"),
        ("workload_kind", "Deployment"),
        ("workload_name", "api"),
        ("scope", "memcg"),
    ];
    assert_eq!(
        metric(&metrics, "coroner_oom_kills_total", &labels),
        Some(1.0),
        "a labelled coroner_oom_kills_total series of 1:\n{metrics}"
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

    let record = die(&mut agent, &c, &["sleep", "30"], |pid| {
        // A force delete: the pod object goes, its container still runs for a moment. The
        // watch delivers DELETED within milliseconds; the death comes well after.
        assert!(server.delete_pod(NS, &name).is_some());
        std::thread::sleep(Duration::from_millis(700));
        signal_pid(pid, libc::SIGKILL);
    });
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
        "cart",
        &["Killed", "SIGKILL", "container \"cart\""],
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
        with_owner(
            pod(NS, &name, &c.pod_uid, &node),
            "batch/v1",
            "Job",
            &job_name,
        ),
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
    let early = agent
        .records()
        .unwrap()
        .iter()
        .find(|r| r.pid() == pid)
        .cloned();
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

    // The pod's earlier container start (a container has one init; the status the double
    // serves names the later one, `c`).
    let earlier = c.sibling().unwrap();
    let record = die(&mut agent, &earlier, &["exit", "2"], drop);
    assert_eq!(record.reason(), "Error", "{}", record.json);
    let r = &record.record;
    assert_eq!(
        (r.pod_uid.as_deref(), r.container_id.as_deref()),
        (
            Some(c.pod_uid.as_str()),
            Some(earlier.container_id.as_str())
        ),
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
    let watch_up = |agent: &Agent| {
        metric(
            &agent.get("/metrics").unwrap().body,
            "coroner_kube_watch_up",
            &[],
        )
    };
    assert_eq!(watch_up(&agent), Some(0.0), "the pod watch is not up");

    server.up().expect("the double listens again");
    watch_open(&rt, &server, &agent, RECONNECT_WAIT);
    let record = die(&mut agent, &c, &["exit", "4"], drop);
    assert_labelled(
        &record,
        &node,
        &c,
        (&name, "search"),
        ("Deployment", "search"),
    );
    assert!(
        rt.block_on(server.wait_until(EVENT_WAIT, |s| !s.events().is_empty())),
        "an Event once the API server is back\nagent log:\n{}",
        agent.log_tail()
    );
    let events = server.events();
    assert_event(&events, &record, &name, "search", &["exited with code 4"]);
    assert_eq!(
        events.len(),
        1,
        "no Event for the unlabelled death: {events:#?}"
    );
    // The gauge follows the watch within its 2 s refresh.
    let deadline = Instant::now() + Duration::from_secs(5);
    while watch_up(&agent) != Some(1.0) {
        assert!(Instant::now() < deadline, "coroner_kube_watch_up never 1");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A pod annotated `coroner.io/ignore: "true"`: its container's death gets no record (neither
/// in the JSON lines nor on `/v1/terminations`), no per-pod series and no Event, and is counted;
/// a pod beside it is recorded as usual.
#[test]
fn a_pod_that_opted_out_gets_no_record_metric_or_event() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start().expect("the double starts");
    let node = node();
    let quiet = Container::new(Layout::CgroupfsBurstable).unwrap();
    let loud = Container::new(Layout::CgroupfsBurstable).unwrap();
    let mut annotated = deployment_pod(&server, &node, "quiet", &quiet.pod_uid, &[("app", &quiet)]);
    annotated.metadata.annotations =
        Some([(IGNORE_ANNOTATION.to_owned(), "true".to_owned())].into());
    server.put_pod(&annotated);
    let quiet_name = name_of(&annotated);
    let loud_name = name_of(&deployment_pod(
        &server,
        &node,
        "loud",
        &loud.pod_uid,
        &[("app", &loud)],
    ));
    let mut agent = agent(&server, &node);
    watch_open(&rt, &server, &agent, Duration::from_secs(10));

    let child = quiet.spawn(&["exit", "3"]).unwrap();
    let quiet_pid = child.id();
    reap(child).unwrap();
    let record = die(&mut agent, &loud, &["exit", "3"], drop);
    assert_labelled(
        &record,
        &node,
        &loud,
        (&loud_name, "app"),
        ("Deployment", "loud"),
    );
    let ignored = || {
        let body = agent.get("/metrics").unwrap().body;
        metric(&body, "coroner_records_ignored_total", &[])
    };
    let deadline = Instant::now() + RECORD_WAIT;
    while ignored() != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "coroner_records_ignored_total never 1\nagent log:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = agent.records().unwrap();
    assert!(
        records.iter().all(|r| r.pid() != quiet_pid),
        "no JSON line for pid {quiet_pid}"
    );
    let api = agent.get("/v1/terminations").unwrap().body;
    assert!(api.contains(&loud.container_id), "{api}");
    assert!(!api.contains(&quiet.container_id), "{api}");
    let metrics = agent.get("/metrics").unwrap().body;
    assert!(
        metrics.contains(&format!("pod=\"{loud_name}\"")),
        "{metrics}"
    );
    assert!(!metrics.contains(&quiet_name), "{metrics}");
    assert!(
        rt.block_on(server.wait_until(EVENT_WAIT, |s| !s.events().is_empty())),
        "the loud pod's Event\nagent log:\n{}",
        agent.log_tail()
    );
    let events = server.events();
    assert_event(&events, &record, &loud_name, "app", &["exited with code 3"]);
    assert!(
        events
            .iter()
            .all(|e| e["regarding"]["name"] != quiet_name.as_str()),
        "{events:#?}"
    );
}
