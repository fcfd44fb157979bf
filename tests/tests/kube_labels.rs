//! Labels and owners from the API server double, through `coroner::kube`'s public API.

use std::time::{Duration, Instant};

use coroner::kube::{LabelOutcome, OwnerSource, PodMetadata};
use coroner_tests::apiserver::fixture::{NODE, init_logs, synced};
use coroner_tests::apiserver::objects::{
    job, pod, replicaset, with_label, with_owner, with_running, with_terminated, with_waiting,
};

const WAIT: Duration = Duration::from_secs(3);

fn meta(ns: &str, pod: &str, container: Option<&str>, owner: Option<(&str, &str)>) -> PodMetadata {
    PodMetadata {
        namespace: ns.into(),
        pod: pod.into(),
        container: container.map(Into::into),
        owner_kind: owner.map(|o| o.0.into()),
        owner_name: owner.map(|o| o.1.into()),
        message: None,
    }
}

#[tokio::test]
async fn pods_of_another_node_are_ignored() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&with_running(
        pod("shop", "mine", "u-mine", NODE),
        "api",
        "c-mine",
    ));
    server.put_pod(&with_running(
        pod("shop", "theirs", "u-theirs", "node-b"),
        "api",
        "c-theirs",
    ));
    let mine = client.label("u-mine", "containerd://c-mine", WAIT).await;
    assert_eq!(mine.outcome, LabelOutcome::Complete);
    assert_eq!(mine.metadata, Some(meta("shop", "mine", Some("api"), None)));

    let started = Instant::now();
    let theirs = client
        .label("u-theirs", "c-theirs", Duration::from_millis(300))
        .await;
    assert_eq!(theirs.outcome, LabelOutcome::Unknown);
    assert!(theirs.metadata.is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    // The node's pods only, asked of the server: never the whole cluster's.
    let pod_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert!(!pod_requests.is_empty());
    for r in pod_requests {
        assert!(
            r.query.contains("fieldSelector=spec.nodeName%3Dnode-a"),
            "{r:?}"
        );
    }
    assert_eq!(client.stats().lookups_unknown, 1);
}

/// A pod on the node, its controller, and the workload a record should name.
struct OwnerCase {
    namespace: &'static str,
    pod: &'static str,
    controller: Option<(&'static str, &'static str, &'static str)>,
    template_hash: Option<&'static str>,
    workload: Option<(&'static str, &'static str)>,
    source: Option<OwnerSource>,
}

const OWNER_CASES: [OwnerCase; 8] = [
    OwnerCase {
        namespace: "shop",
        pod: "api-7d4b9c-a",
        controller: Some(("apps/v1", "ReplicaSet", "api-7d4b9c")),
        template_hash: Some("7d4b9c"),
        workload: Some(("Deployment", "api")),
        source: Some(OwnerSource::Fetched),
    },
    OwnerCase {
        namespace: "shop",
        pod: "api-7d4b9c-b",
        controller: Some(("apps/v1", "ReplicaSet", "api-7d4b9c")),
        template_hash: Some("7d4b9c"),
        workload: Some(("Deployment", "api")),
        source: Some(OwnerSource::Fetched),
    },
    // Its ReplicaSet is gone: the Deployment comes from the pod-template-hash convention.
    OwnerCase {
        namespace: "shop",
        pod: "web-5f6d7-q",
        controller: Some(("apps/v1", "ReplicaSet", "web-5f6d7")),
        template_hash: Some("5f6d7"),
        workload: Some(("Deployment", "web")),
        source: Some(OwnerSource::TemplateHash),
    },
    OwnerCase {
        namespace: "batch",
        pod: "report-29001-x",
        controller: Some(("batch/v1", "Job", "report-29001")),
        template_hash: None,
        workload: Some(("CronJob", "report")),
        source: Some(OwnerSource::Fetched),
    },
    OwnerCase {
        namespace: "batch",
        pod: "oneoff-x",
        controller: Some(("batch/v1", "Job", "oneoff")),
        template_hash: None,
        workload: Some(("Job", "oneoff")),
        source: Some(OwnerSource::Fetched),
    },
    OwnerCase {
        namespace: "db",
        pod: "pg-0",
        controller: Some(("apps/v1", "StatefulSet", "pg")),
        template_hash: None,
        workload: Some(("StatefulSet", "pg")),
        source: Some(OwnerSource::Direct),
    },
    OwnerCase {
        namespace: "kube-system",
        pod: "proxy-x",
        controller: Some(("apps/v1", "DaemonSet", "proxy")),
        template_hash: None,
        workload: Some(("DaemonSet", "proxy")),
        source: Some(OwnerSource::Direct),
    },
    OwnerCase {
        namespace: "default",
        pod: "bare",
        controller: None,
        template_hash: None,
        workload: None,
        source: None,
    },
];

#[tokio::test]
async fn owners_through_replicasets_and_jobs_fetched_once() {
    init_logs();
    let (server, client) = synced().await;
    server.put_replicaset(&replicaset("shop", "api-7d4b9c", Some("api")));
    server.put_job(&job("batch", "report-29001", Some("report")));
    server.put_job(&job("batch", "oneoff", None));
    for case in &OWNER_CASES {
        let mut p = pod(case.namespace, case.pod, &format!("u-{}", case.pod), NODE);
        if let Some((api_version, kind, name)) = case.controller {
            p = with_owner(p, api_version, kind, name);
        }
        if let Some(hash) = case.template_hash {
            p = with_label(p, "pod-template-hash", hash);
        }
        server.put_pod(&with_running(p, "main", &format!("c-{}", case.pod)));
    }
    for case in &OWNER_CASES {
        let want = meta(case.namespace, case.pod, Some("main"), case.workload);
        // Three deaths each: the owner is looked up once.
        for _ in 0..3 {
            let got = client
                .label(&format!("u-{}", case.pod), &format!("c-{}", case.pod), WAIT)
                .await;
            assert_eq!(got.outcome, LabelOutcome::Complete, "{}", case.pod);
            assert_eq!(got.metadata.as_ref(), Some(&want), "{}", case.pod);
            assert_eq!(got.owner_source, case.source, "{}", case.pod);
        }
    }
    // One GET per ReplicaSet and per Job, however many pods and deaths.
    let rs = "/apis/apps/v1/namespaces/shop/replicasets/";
    assert_eq!(server.count_requests("GET", &format!("{rs}api-7d4b9c")), 1);
    assert_eq!(server.count_requests("GET", &format!("{rs}web-5f6d7")), 1);
    assert_eq!(server.count_requests("GET", "/apis/batch/v1/"), 2);
    let stats = client.stats();
    let owners = (
        stats.owner_fetches,
        stats.owners_inferred,
        stats.owner_fetch_failures,
    );
    assert_eq!(owners, (4, 1, 0));
}

#[tokio::test]
async fn a_pod_deleted_just_before_the_lookup_still_labels() {
    init_logs();
    let (server, client) = synced().await;
    let p = with_waiting(pod("shop", "gone", "u-gone", NODE), "api");
    server.put_pod(&p);
    // The kubelet writes the dead container's id, then the pod is deleted.
    server.put_pod(&with_terminated(p, "api", "c-dead", 137));
    server.delete_pod("shop", "gone");
    // A pod added after the deletion: once it is labelled, the deletion was seen too.
    server.put_pod(&with_running(
        pod("shop", "marker", "u-marker", NODE),
        "m",
        "c-marker",
    ));
    assert_eq!(
        client.label("u-marker", "c-marker", WAIT).await.outcome,
        LabelOutcome::Complete
    );

    let got = client.label("u-gone", "c-dead", WAIT).await;
    assert_eq!(got.outcome, LabelOutcome::Complete);
    assert_eq!(got.metadata, Some(meta("shop", "gone", Some("api"), None)));
    // Its other containers' ids never come now: no waiting for them.
    let started = Instant::now();
    let other = client.label("u-gone", "c-never", WAIT).await;
    assert_eq!(other.outcome, LabelOutcome::PodOnly);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_container_id_that_reaches_the_status_late_is_labelled_within_the_wait() {
    init_logs();
    let (server, client) = synced().await;
    let p = with_waiting(pod("shop", "slow", "u-slow", NODE), "api");
    server.put_pod(&p);
    let marker = with_running(pod("shop", "marker", "u-marker", NODE), "m", "c-marker");
    server.put_pod(&marker);
    assert_eq!(
        client.label("u-marker", "c-marker", WAIT).await.outcome,
        LabelOutcome::Complete
    );

    let waited = client.stats().lookups_waited;
    let started = Instant::now();
    // `biased`: the lookup is polled first and is waiting before the kubelet's update lands.
    let (got, ()) = tokio::join!(
        biased;
        client.label("u-slow", "c-late", Duration::from_secs(5)),
        async {
            assert_eq!(client.stats().lookups_waited, waited + 1, "the lookup waits");
            server.put_pod(&with_terminated(p, "api", "c-late", 1));
        },
    );
    assert_eq!(got.outcome, LabelOutcome::Complete);
    assert_eq!(got.metadata, Some(meta("shop", "slow", Some("api"), None)));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A container id that never comes: the pod's labels after the wait, counted as partial.
    let started = Instant::now();
    let partial = client
        .label("u-slow", "c-never", Duration::from_millis(300))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(partial.is_partial());
    assert_eq!(partial.metadata, Some(meta("shop", "slow", None, None)));
    let stats = client.stats();
    assert_eq!(
        (stats.lookups_waited, stats.lookups_pod_only),
        (waited + 2, 1)
    );
}

#[tokio::test]
async fn many_waiting_lookups_are_bounded() {
    init_logs();
    let server = coroner_tests::apiserver::ApiServer::start().unwrap();
    let mut options = coroner_tests::apiserver::fixture::options(&server, NODE);
    options.max_waiting_lookups = 2;
    let client = coroner_tests::apiserver::fixture::connect_on(options).await;
    assert!(client.wait_watch_up(Duration::from_secs(5)).await);
    let lookups: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .label(&format!("u{i}"), "c", Duration::from_millis(500))
                    .await
            })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().outcome, LabelOutcome::Unknown);
    }
    let stats = client.stats();
    assert_eq!((stats.lookups_waited, stats.waiters_rejected), (2, 3));
}
