//! coroner's last-termination series joined with kube-state-metrics' in a real Prometheus:
//! the real `coroner` binary (`--kube on`, the API server double) records a real OOM kill in a
//! kubelet-style memory cgroup; a stand-in for kube-state-metrics serves KSM's series for the
//! same container (`kube_pod_container_status_restarts_total`,
//! `kube_pod_container_status_last_terminated_reason`, with KSM's namespace/pod/uid/container
//! labels); Prometheus scrapes both, and `group_left` joins put coroner's verdict, initiator
//! and cause on KSM's series. Needs root and `/usr/bin/prometheus` (`cargo xtask test`).

#[path = "e2e_kube/support.rs"]
#[allow(
    dead_code,
    reason = "the kube end-to-end tests' shared module; this binary uses part of it"
)]
mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use coroner_tests::agent::expect::Container;
use coroner_tests::apiserver::ApiServer;
use coroner_tests::cgroups::Layout;
use coroner_tests::prometheus::{Prometheus, Sample};
use support::{LIMIT, NS, agent, deployment_pod, die, name_of, node, runtime, watch_open};

const SCRAPE_WAIT: Duration = Duration::from_secs(20);

/// Serves `body` as `/metrics` (classic text) to every connection, on a thread of its own.
fn serve_ksm(body: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the KSM stand-in");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn wait_query(
    prometheus: &Prometheus,
    promql: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + SCRAPE_WAIT;
    loop {
        let samples = prometheus.query(promql).unwrap();
        if ok(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{promql} is {samples:?}\nprometheus log:\n{}",
            prometheus.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn coroners_reason_joins_kube_state_metrics_series() {
    let rt = runtime();
    let _enter = rt.enter();
    let server = ApiServer::start().expect("the double starts");
    let node = node();
    let api = Container::new(Layout::CgroupfsBurstable).unwrap();
    let pod = name_of(&deployment_pod(
        &server,
        &node,
        "api",
        &api.pod_uid,
        &[("api", &api)],
    ));
    let mut agent = agent(&server, &node);
    watch_open(&rt, &server, &agent, Duration::from_secs(10));

    api.cgroup.set_limit(LIMIT).unwrap();
    let oom = die(&mut agent, &api, &["alloc", "300"], drop);
    assert_eq!(oom.reason(), "OOMKilled", "{}", oom.json);
    let uid = api.pod_uid.clone();

    let labels = format!("namespace=\"{NS}\",pod=\"{pod}\",uid=\"{uid}\",container=\"api\"");
    let ksm = serve_ksm(format!(
        "# TYPE kube_pod_container_status_restarts_total counter\n\
         kube_pod_container_status_restarts_total{{{labels}}} 5\n\
         # TYPE kube_pod_container_status_last_terminated_reason gauge\n\
         kube_pod_container_status_last_terminated_reason{{{labels},reason=\"OOMKilled\"}} 1\n"
    ));
    let prometheus =
        Prometheus::start_jobs(&[("coroner", agent.addr()), ("kube-state-metrics", ksm)]).unwrap();

    let coroner = "max by (namespace, pod, uid, container, reason, initiator, cause) \
                   (coroner_container_last_termination_info)";
    let restarts = format!(
        "max by (namespace, pod, uid, container) (kube_pod_container_status_restarts_total) \
         * on (namespace, pod, uid, container) group_left (reason, initiator, cause) {coroner}"
    );
    let joined = wait_query(&prometheus, &restarts, |s| s.len() == 1);
    let s = &joined[0];
    let label = |k: &str| s.labels.get(k).map(String::as_str);
    assert_eq!(
        (label("pod"), label("uid"), label("container")),
        (Some(pod.as_str()), Some(uid.as_str()), Some("api")),
        "{joined:?}"
    );
    assert_eq!(
        (label("reason"), label("initiator"), label("cause")),
        (Some("OOMKilled"), Some("oom_killer"), None),
        "coroner's verdict on KSM's restarts: {joined:?}"
    );
    assert!((s.value - 5.0).abs() < f64::EPSILON, "{joined:?}");
    println!("{restarts}\n  → {joined:?}");

    // KSM's own reason next to coroner's (renamed: both call it `reason`).
    let reasons = format!(
        "max by (namespace, pod, uid, container, reason) \
         (kube_pod_container_status_last_terminated_reason) \
         * on (namespace, pod, uid, container) group_left (coroner_reason, initiator) \
         label_replace({coroner}, \"coroner_reason\", \"$1\", \"reason\", \"(.*)\")"
    );
    let both = wait_query(&prometheus, &reasons, |s| s.len() == 1);
    let got = |k: &str| both[0].labels.get(k).cloned();
    assert_eq!(
        (got("reason"), got("coroner_reason"), got("initiator")),
        (
            Some("OOMKilled".to_owned()),
            Some("OOMKilled".to_owned()),
            Some("oom_killer".to_owned())
        ),
        "{both:?}"
    );
    println!("{reasons}\n  → {both:?}");

    // The timestamp is the record's time.
    let at = wait_query(
        &prometheus,
        &format!("coroner_container_last_termination_timestamp_seconds{{uid=\"{uid}\"}}"),
        |s| s.len() == 1,
    );
    #[expect(clippy::cast_precision_loss, reason = "seconds")]
    let record_time = oom.record.time.unix_timestamp_nanos() as f64 / 1e9;
    assert!(
        (at[0].value - record_time).abs() < 0.01,
        "{at:?} vs {record_time}"
    );
}
