//! A crash loop on the real runtime: the kubelet double restarts a container whose command
//! exits 1, or is OOM-killed at its limit (a new container of the same name and the next
//! attempt each time, as the kubelet does), the
//! agent runs with `--kube on` against the API server double and a short crash-loop update
//! interval. Checked: after the third death, the container's deaths are told by exactly one
//! core/v1 `CrashLoop` Event, updated in place to the last count with its one line; no
//! per-death Event after the loop began; no two writes about the container closer than the
//! interval once it loops. Prints the measured write rate and the Events as `kubectl describe
//! pod` would show them. With runc and with crun. Needs root and the runtime.

use std::time::{Duration, Instant};

use coroner_tests::agent::{Agent, Options};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::cgroups::unique_hex;
use coroner_tests::describe::describe_events;
use coroner_tests::exposition::metric;
use coroner_tests::runtime::publish::publish;
use coroner_tests::runtime::{ContainerSpec, Handler, Kubelet, PodOptions};
use serde_json::Value;
use time::OffsetDateTime;

const RECORD_WAIT: Duration = Duration::from_secs(15);
const EXIT_WAIT: Duration = Duration::from_secs(20);
/// `--crash-loop-update-seconds` for the test: the default is 60.
const INTERVAL: Duration = Duration::from_secs(4);
const DEATHS: u32 = 12;

coroner_tests::with_both_runtimes!(
    a_crash_loop_is_one_event_updated_in_place_at_a_bounded_rate,
    an_oom_crash_loop_names_the_limit,
);

fn a_crash_loop_is_one_event_updated_in_place_at_a_bounded_rate(handler: Handler) {
    let spec = |attempt| ContainerSpec {
        attempt,
        ..ContainerSpec::sh("app", "sleep 1; exit 1")
    };
    let Some(message) = crash_loop("a_crash_loop_is_one_event", handler, &spec, "Error") else {
        return;
    };
    assert!(
        message.starts_with(&format!("Error {DEATHS}× in "))
            && message.ends_with(": container \"app\": sh exited with code 1, median uptime 1s"),
        "{message}"
    );
}

/// The init allocates past its container's 64 MiB limit each time: the line says the limit.
fn an_oom_crash_loop_names_the_limit(handler: Handler) {
    let spec = |attempt| ContainerSpec {
        attempt,
        memory_limit: Some(64 << 20),
        ..ContainerSpec::sh("hog", "sleep 1; exec /bin/hog 300")
    };
    let Some(message) = crash_loop(
        "an_oom_crash_loop_names_the_limit",
        handler,
        &spec,
        "OOMKilled",
    ) else {
        return;
    };
    assert!(
        message.starts_with(&format!("OOMKilled {DEATHS}× in "))
            && message.contains(": container \"hog\" hit its 64Mi limit; hog RSS "),
        "{message}"
    );
}

/// Runs `DEATHS` attempts of `spec` in one pod, each to its death with verdict `reason`, and
/// checks the loop Event and the write rate; returns its message (`None`: no runtime).
fn crash_loop(
    test: &str,
    handler: Handler,
    spec: &dyn Fn(u32) -> ContainerSpec,
    reason: &str,
) -> Option<String> {
    if !coroner_tests::runtime::available(test) {
        return None;
    }
    let mut kubelet = Kubelet::start(handler).expect("containerd and the kubelet double start");
    let server = {
        let _enter = kubelet.tokio().enter();
        ApiServer::start().expect("the API server double starts")
    };
    let node = format!("node-loop-{}", unique_hex(8));
    let mut agent = Agent::start_with(&Options {
        kube: Some("on".into()),
        node: Some(node.clone()),
        env: vec![("KUBECONFIG".into(), server.kubeconfig().into())],
        args: vec![
            "--crash-loop-update-seconds".into(),
            INTERVAL.as_secs().to_string().into(),
        ],
    })
    .expect("coroner starts with --kube on");
    let up = kubelet
        .tokio()
        .block_on(server.wait_until(Duration::from_secs(10), |s| s.open_watches() >= 1));
    assert!(up, "the agent's pod watch is open:\n{}", agent.log_tail());

    let pod = kubelet.run_pod(&PodOptions::default()).unwrap();
    let started = Instant::now();
    for attempt in 0..DEATHS {
        let (id, _) = kubelet.run_container(&pod, &spec(attempt)).unwrap();
        publish(&kubelet, &server, &node, &pod).unwrap();
        kubelet.wait_exited(&id, EXIT_WAIT).unwrap();
        publish(&kubelet, &server, &node, &pod).unwrap();
        let record = agent
            .wait_for("the init's death", RECORD_WAIT, |r| {
                r.record.container_id.as_deref() == Some(id.as_str()) && r.field("role") == "init"
            })
            .unwrap();
        assert_eq!(record.reason(), reason, "{}", record.json);
    }
    let deaths_took = started.elapsed();

    let is_loop = |e: &Value| e["reason"] == "CrashLoop";
    let told_all = kubelet.tokio().block_on(server.wait_until(
        INTERVAL * 3 + Duration::from_secs(5),
        |s| {
            s.core_events()
                .iter()
                .any(|e| is_loop(e) && e["count"] == DEATHS)
        },
    ));
    let events = server.core_events();
    let now = OffsetDateTime::now_utc();
    println!("{}", describe_events(&events, now));
    assert!(
        told_all,
        "the loop Event tells all {DEATHS} deaths: {events:#?}\n{}",
        agent.log_tail()
    );
    let loops: Vec<&Value> = events.iter().filter(|e| is_loop(e)).collect();
    assert_eq!(loops.len(), 1, "one loop Event: {events:#?}");
    let l = loops[0];
    assert_eq!(l["type"], "Warning");
    assert_eq!(l["involvedObject"]["uid"], pod.uid.as_str());
    let container = spec(0).name;
    assert_eq!(
        l["involvedObject"]["fieldPath"],
        format!("spec.containers{{{container}}}")
    );
    let message = l["message"].as_str().unwrap_or_default().to_owned();

    let loop_name = l["metadata"]["name"].as_str().unwrap_or_default();
    check_writes(&server, loop_name, deaths_took);

    let exposition = agent.get("/metrics").unwrap().body;
    let created = metric(
        &exposition,
        "coroner_kube_crash_loop_writes_total",
        &[("result", "created")],
    );
    let deaths_in_loop = metric(&exposition, "coroner_kube_crash_loop_deaths_total", &[]);
    assert_eq!(created, Some(1.0), "{exposition}");
    assert_eq!(deaths_in_loop, Some(f64::from(DEATHS - 2)), "{exposition}");
    kubelet.remove_pod(&pod).unwrap();
    Some(message)
}

/// Every Event write of the test was about the one container (the test posts none of the
/// kubelet's): from the loop's create on, only the loop Event, updated in place, no two writes
/// closer than the interval. Prints the measured rate.
fn check_writes(server: &ApiServer, loop_name: &str, deaths_took: Duration) {
    let requests = server.event_requests();
    let first_loop = requests
        .iter()
        .position(|r| r.name == loop_name)
        .expect("the loop Event's create");
    assert_eq!(requests[first_loop].method, "POST");
    assert!(!requests[first_loop].new_api, "the loop Event is core/v1");
    assert!(
        requests[first_loop..].iter().all(|r| r.name == loop_name),
        "no per-death Event once the loop began: {requests:#?}"
    );
    assert!(
        requests[first_loop + 1..]
            .iter()
            .all(|r| r.method == "PATCH"),
        "updated in place: {requests:#?}"
    );
    // From the loop's first write on, no two writes closer than the interval (with a little
    // slack for the double's clock against the agent's).
    let gaps: Vec<Duration> = requests[first_loop.saturating_sub(1)..]
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    let slack = Duration::from_millis(100);
    assert!(
        gaps.iter().all(|g| *g + slack >= INTERVAL),
        "gaps between writes about the looping container: {gaps:?}"
    );
    let loop_writes = requests.len() - first_loop;
    let loop_span = requests[requests.len() - 1]
        .at
        .duration_since(requests[first_loop].at);
    let per_minute = |writes: usize, over: Duration| {
        #[expect(clippy::cast_precision_loss, reason = "a rate to print")]
        let writes = writes as f64;
        writes * 60.0 / over.as_secs_f64().max(INTERVAL.as_secs_f64())
    };
    println!(
        "{DEATHS} deaths in {:.1}s; {} Event writes in all, {loop_writes} of the loop Event \
         over {:.1}s: {:.1} writes per looping container per minute (limit {:.0} at \
         --crash-loop-update-seconds {}, 1 at the default 60); min gap {:?}",
        deaths_took.as_secs_f64(),
        requests.len(),
        loop_span.as_secs_f64(),
        per_minute(loop_writes.saturating_sub(1), loop_span),
        60.0 / INTERVAL.as_secs_f64(),
        INTERVAL.as_secs(),
        gaps.iter().min()
    );
}
