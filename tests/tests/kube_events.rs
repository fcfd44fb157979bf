//! Kubernetes Events for deaths, as the API server double receives them.

use std::time::Duration;

use coroner::kube::message::event_note;
use coroner::kube::{EventTypes, IGNORE_ANNOTATION, KubeClient, NamespaceFilter, Rate};
use coroner::record::{Initiator, Reason, TerminationRecord};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::fixture::{NODE, connect_on, init_logs, options, synced};
use coroner_tests::apiserver::objects::{pod, with_init_completed, with_running};
use coroner_tests::fixtures::died;
use serde_json::{Value, json};

const FLUSH: Duration = Duration::from_secs(5);
const HOUR: Duration = Duration::from_hours(1);

fn record(reason: Reason, container: &str, container_id: &str) -> TerminationRecord {
    let mut r = died(reason, container, container_id);
    // The Events tests read the kernel's facts only: no workload, no initiator, no sender;
    // an OOM kill all anonymous memory.
    (r.owner_kind, r.owner_name, r.initiator) = (None, None, Initiator::Unknown);
    (r.grace_allowed_seconds, r.sender, r.sigkill_time) = (None, None, None);
    r.uptime_seconds = None;
    if let Some(oom) = r.oom.as_mut() {
        (oom.anon_rss_bytes, oom.file_rss_bytes, oom.oom_score_adj) = (Some(312 << 20), Some(0), 0);
    }
    r
}

fn api_pod() -> k8s_openapi::api::core::v1::Pod {
    with_init_completed(
        with_running(pod("shop", "api-x", "u-api", NODE), "api", "c-api"),
        "migrate",
        "c-migrate",
    )
}

async fn client_with(
    server: &ApiServer,
    tune: impl FnOnce(&mut coroner::kube::KubeOptions),
) -> KubeClient {
    let mut o = options(server, NODE);
    tune(&mut o);
    let client = connect_on(o).await;
    assert!(client.wait_watch_up(FLUSH).await);
    client
}

fn series_count(event: &Value) -> i64 {
    event["series"]["count"].as_i64().unwrap_or(1)
}

#[tokio::test]
async fn events_name_the_pod_and_container_and_say_the_cause() {
    init_logs();
    let server = ApiServer::start().unwrap();
    // `--events all`: the Completed death's Normal Event too.
    let client = client_with(&server, |o| o.events.types = EventTypes::All).await;
    server.put_pod(&api_pod());
    // The Event's fieldPath needs the container's place in the pod: the index knows it.
    client.label("u-api", "c-migrate", FLUSH).await;

    let oom = record(Reason::OomKilled, "api", "c-api");
    let done = record(Reason::Completed, "migrate", "c-migrate");
    client.record_event(&oom);
    client.record_event(&done);
    assert!(client.flush_events(FLUSH).await);

    let events = server.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let find = |reason: &str| {
        events
            .iter()
            .find(|e| e["reason"] == reason)
            .unwrap()
            .clone()
    };
    let e = find("OOMKilled");
    assert_eq!(e["apiVersion"], "events.k8s.io/v1");
    assert_eq!(e["metadata"]["namespace"], "shop");
    assert_eq!(
        e["regarding"],
        json!({"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "api-x",
               "uid": "u-api", "fieldPath": "spec.containers{api}"})
    );
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["note"], event_note(&oom).as_str());
    assert_eq!(
        e["note"],
        "OOMKilled by the kernel: memcg limit 256Mi hit by container \"api\"; \
         python3 (pid 4242) RSS 312Mi; container peak 318Mi"
    );
    assert_eq!(e["reportingController"], "coroner");
    assert_eq!(e["reportingInstance"], NODE);
    assert_eq!(e["action"], "Died");
    assert!(e["series"].is_null());

    let e = find("Completed");
    assert_eq!(e["type"], "Normal");
    assert_eq!(e["regarding"]["fieldPath"], "spec.initContainers{migrate}");
    assert_eq!(e["note"], event_note(&done).as_str());
    assert_eq!(client.stats().events_posted, 2);
}

/// What each filter leaves: Warnings only by default, none with `off`, none for an excluded or
/// unlisted namespace; each left-out death counted by why.
#[tokio::test]
async fn warnings_only_by_default_and_the_operators_filters() {
    init_logs();
    let oom = record(Reason::OomKilled, "api", "c-api");
    let done = record(Reason::Completed, "migrate", "c-migrate");
    let own = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let cases: [(&str, EventTypes, NamespaceFilter, &[&str]); 5] = [
        (
            "default",
            EventTypes::default(),
            NamespaceFilter::default(),
            &["OOMKilled"],
        ),
        ("off", EventTypes::Off, NamespaceFilter::default(), &[]),
        (
            "excluded",
            EventTypes::All,
            NamespaceFilter::new(own(&[]), own(&["shop"])),
            &[],
        ),
        (
            "not listed",
            EventTypes::All,
            NamespaceFilter::new(own(&["pay"]), own(&[])),
            &[],
        ),
        (
            "listed",
            EventTypes::Warning,
            NamespaceFilter::new(own(&["shop"]), own(&[])),
            &["OOMKilled"],
        ),
    ];
    for (case, types, namespaces, want) in cases {
        let server = ApiServer::start().unwrap();
        server.put_pod(&api_pod());
        let client = client_with(&server, |o| {
            o.events.types = types;
            o.events.namespaces = namespaces.clone();
        })
        .await;
        client.label("u-api", "c-migrate", FLUSH).await;
        client.record_event(&oom);
        client.record_event(&done);
        assert!(client.flush_events(FLUSH).await, "{case}");
        let reasons: Vec<String> = server
            .events()
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(reasons, want, "{case}");
        let stats = client.stats();
        assert_eq!(stats.events_posted, want.len() as u64, "{case}");
        let (by_type, by_namespace) = match case {
            "default" | "listed" => (1, 0),
            "excluded" | "not listed" => (0, 2),
            _ => (0, 0),
        };
        assert_eq!(stats.events_filtered_type, by_type, "{case}: {stats:?}");
        assert_eq!(
            stats.events_filtered_namespace, by_namespace,
            "{case}: {stats:?}"
        );
    }
}

/// `coroner.io/ignore: "true"` on a pod: the sink leaves its records out, and counts them.
#[tokio::test]
async fn an_annotated_pod_has_opted_out() {
    init_logs();
    let (server, client) = synced().await;
    let mut quiet = with_running(pod("shop", "quiet-x", "u-quiet", NODE), "app", "c-quiet");
    quiet.metadata.annotations = Some([(IGNORE_ANNOTATION.to_owned(), "true".to_owned())].into());
    server.put_pod(&quiet);
    server.put_pod(&api_pod());
    client.label("u-quiet", "c-quiet", FLUSH).await;
    client.label("u-api", "c-api", FLUSH).await;
    let mut ignored = record(Reason::OomKilled, "app", "c-quiet");
    ignored.pod_uid = Some("u-quiet".into());
    assert!(client.opted_out(&ignored));
    assert!(!client.opted_out(&record(Reason::OomKilled, "api", "c-api")));
    let mut unknown = record(Reason::OomKilled, "app", "c-other");
    unknown.pod_uid = Some("u-unknown".into());
    assert!(!client.opted_out(&unknown), "an unknown pod is recorded");
    assert_eq!(client.stats().records_ignored, 1);
    // Taking the annotation off opts the pod back in.
    quiet.metadata.annotations = None;
    server.put_pod(&quiet);
    let deadline = tokio::time::Instant::now() + FLUSH;
    while client.opted_out(&ignored) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watch brings the pod without its annotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_crash_loop_does_not_flood_the_api_server() {
    init_logs();
    let server = ApiServer::start().unwrap();
    server.put_pod(&api_pod());
    let client = client_with(&server, |o| {
        o.events.per_container = Rate {
            burst: 2,
            interval: Duration::from_millis(300),
        };
    })
    .await;

    // A child's deaths (a worker the init forks anew): no crash loop, one series.
    let mut child = record(Reason::Error, "api", "c-api");
    child.role = coroner::record::Role::Child;
    child.main_process = false;
    for _ in 0..20 {
        client.record_event(&child);
    }
    assert!(client.flush_events(FLUSH).await);
    // One Event, its series raised once; 18 deaths held back.
    let methods: Vec<String> = server
        .event_requests()
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["POST", "PATCH"]);
    assert_eq!(client.stats().events_suppressed, 18);
    // With the next token they are counted in: one more PATCH, the series says 20.
    assert!(
        server
            .wait_until(FLUSH, |s| s
                .events()
                .first()
                .is_some_and(|e| series_count(e) == 20))
            .await,
        "{:#?}",
        server.events()
    );
    assert_eq!(server.event_requests().len(), 3);
    assert_eq!(server.events().len(), 1);
    assert_eq!(client.stats().events_lost(), 0);
}

/// 20 deaths of the container's init: the first two have their Events, then one core/v1
/// `CrashLoop` Event tells them all, updated in place no more often than the interval.
#[tokio::test]
async fn an_init_crash_loop_is_one_core_event_updated_in_place() {
    init_logs();
    let server = ApiServer::start().unwrap();
    server.put_pod(&api_pod());
    let interval = Duration::from_millis(400);
    let client = client_with(&server, |o| o.events.crash_loop.interval = interval).await;
    for _ in 0..20 {
        client.record_event(&record(Reason::Error, "api", "c-api"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let is_loop = |e: &Value| e["reason"] == coroner::kube::CRASH_LOOP_REASON;
    assert!(
        server
            .wait_until(FLUSH, |s| s
                .core_events()
                .iter()
                .any(|e| is_loop(e) && e["count"] == 20))
            .await,
        "{:#?}",
        server.core_events()
    );
    let requests = server.event_requests();
    let shape: Vec<(&str, bool)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.new_api))
        .collect();
    assert_eq!(
        &shape[..3],
        [("POST", true), ("PATCH", true), ("POST", false)]
    );
    assert!(
        shape[3..].iter().all(|s| *s == ("PATCH", false)),
        "{shape:?}"
    );
    assert!(
        requests[1..]
            .windows(2)
            .all(|w| w[1].at.duration_since(w[0].at) + Duration::from_millis(50) >= interval),
        "{requests:#?}"
    );
    let events = server.core_events();
    let l = events.iter().find(|e| is_loop(e)).expect("the loop Event");
    assert_eq!(
        events.len(),
        2,
        "the first deaths' Event and the loop's: {events:#?}"
    );
    assert_eq!(l["type"], "Warning");
    assert_eq!(l["involvedObject"]["fieldPath"], "spec.containers{api}");
    assert_eq!(l["source"]["component"], "coroner");
    assert_eq!(
        l["message"],
        "Error 20× in 0s: container \"api\": python3 died of SIGKILL"
    );
    let stats = client.stats();
    assert_eq!((stats.crash_loop_events, stats.crash_loop_deaths), (1, 18));
}

#[tokio::test]
async fn the_node_wide_cap_holds_across_containers() {
    init_logs();
    let server = ApiServer::start().unwrap();
    let client = client_with(&server, |o| {
        o.events.global = Rate {
            burst: 3,
            interval: HOUR,
        };
    })
    .await;
    for i in 0..10 {
        let mut r = record(Reason::Killed, &format!("c{i}"), &format!("id{i}"));
        r.pod_uid = Some(format!("u{i}"));
        client.record_event(&r);
    }
    assert!(client.flush_events(FLUSH).await);
    assert_eq!(server.event_requests().len(), 3);
    assert_eq!(client.stats().events_suppressed, 7);
}

#[tokio::test]
async fn an_expired_event_is_posted_again_rather_than_patched_forever() {
    init_logs();
    let (server, client) = synced().await;
    client.record_event(&record(Reason::Error, "api", "c-api"));
    assert!(client.flush_events(FLUSH).await);
    server.expire_events();
    client.record_event(&record(Reason::Error, "api", "c-api"));
    assert!(client.flush_events(FLUSH).await);
    // The PATCH got 404; a new Event took its place.
    assert_eq!(
        server.count_requests("PATCH", "/apis/events.k8s.io/v1/namespaces/shop/events/"),
        1
    );
    let methods: Vec<String> = server
        .event_requests()
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["POST", "POST"]);
    assert_eq!(server.events().len(), 1);
    assert_eq!(client.stats().events_lost(), 0);
}

#[tokio::test]
async fn what_cannot_be_posted_is_counted() {
    init_logs();
    let server = ApiServer::start().unwrap();
    let client = client_with(&server, |o| o.events.queue_capacity = 1).await;

    let mut unlabelled = record(Reason::Error, "api", "c-api");
    unlabelled.namespace = None;
    client.record_event(&unlabelled);

    server.fail_events(true);
    client.record_event(&record(Reason::Error, "api", "c-api"));
    assert!(client.flush_events(FLUSH).await);

    // The poster cannot run between these (one thread): the queue of one overflows.
    for _ in 0..5 {
        client.record_event(&record(Reason::Crashed, "api", "c-api"));
    }
    assert!(client.flush_events(FLUSH).await);
    let stats = client.stats();
    assert_eq!(stats.events_lost_unlabelled, 1);
    assert_eq!(stats.events_lost_post_failed, 2, "{stats:?}");
    assert_eq!(stats.events_lost_queue_full, 4);
    assert_eq!(stats.events_lost(), 7);
    assert!(server.event_requests().is_empty());
}
