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
    }
}

#[tokio::test]
async fn pods_of_another_node_are_ignored() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&with_running(pod("shop", "mine", "u-mine", NODE), "api", "c-mine"));
    server.put_pod(&with_running(pod("shop", "theirs", "u-theirs", "node-b"), "api", "c-theirs"));
    let mine = client.label("u-mine", "containerd://c-mine", WAIT).await;
    assert_eq!(mine.outcome, LabelOutcome::Complete);
    assert_eq!(mine.metadata, Some(meta("shop", "mine", Some("api"), None)));

    let started = Instant::now();
    let theirs = client.label("u-theirs", "c-theirs", Duration::from_millis(300)).await;
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
        assert!(r.query.contains("fieldSelector=spec.nodeName%3Dnode-a"), "{r:?}");
    }
    assert_eq!(client.stats().lookups_unknown, 1);
}

#[tokio::test]
async fn owners_through_replicasets_and_jobs_fetched_once() {
    init_logs();
    let (server, client) = synced().await;
    server.put_replicaset(&replicaset("shop", "api-7d4b9c", Some("api")));
    server.put_job(&job("batch", "report-29001", Some("report")));
    server.put_job(&job("batch", "oneoff", None));
    let on_node = |ns: &str, name: &str, uid: &str| pod(ns, name, uid, NODE);
    let pods = [
        with_owner(on_node("shop", "api-7d4b9c-a", "u1"), "apps/v1", "ReplicaSet", "api-7d4b9c"),
        with_owner(on_node("shop", "api-7d4b9c-b", "u2"), "apps/v1", "ReplicaSet", "api-7d4b9c"),
        with_owner(on_node("batch", "report-29001-x", "u3"), "batch/v1", "Job", "report-29001"),
        with_owner(on_node("batch", "oneoff-x", "u4"), "batch/v1", "Job", "oneoff"),
        with_owner(on_node("db", "pg-0", "u5"), "apps/v1", "StatefulSet", "pg"),
        with_owner(on_node("kube-system", "proxy-x", "u6"), "apps/v1", "DaemonSet", "proxy"),
        on_node("default", "bare", "u7"),
        // Its ReplicaSet is gone: the Deployment comes from the pod-template-hash convention.
        with_label(
            with_owner(on_node("shop", "web-5f6d7-q", "u8"), "apps/v1", "ReplicaSet", "web-5f6d7"),
            "pod-template-hash",
            "5f6d7",
        ),
    ];
    for (i, p) in pods.into_iter().enumerate() {
        server.put_pod(&with_running(p, "main", &format!("c{}", i + 1)));
    }
    let expect = [
        ("u1", "c1", meta("shop", "api-7d4b9c-a", Some("main"), Some(("Deployment", "api"))), Some(OwnerSource::Fetched)),
        ("u2", "c2", meta("shop", "api-7d4b9c-b", Some("main"), Some(("Deployment", "api"))), Some(OwnerSource::Fetched)),
        ("u3", "c3", meta("batch", "report-29001-x", Some("main"), Some(("CronJob", "report"))), Some(OwnerSource::Fetched)),
        ("u4", "c4", meta("batch", "oneoff-x", Some("main"), Some(("Job", "oneoff"))), Some(OwnerSource::Fetched)),
        ("u5", "c5", meta("db", "pg-0", Some("main"), Some(("StatefulSet", "pg"))), Some(OwnerSource::Direct)),
        ("u6", "c6", meta("kube-system", "proxy-x", Some("main"), Some(("DaemonSet", "proxy"))), Some(OwnerSource::Direct)),
        ("u7", "c7", meta("default", "bare", Some("main"), None), None),
        ("u8", "c8", meta("shop", "web-5f6d7-q", Some("main"), Some(("Deployment", "web"))), Some(OwnerSource::TemplateHash)),
    ];
    for (uid, cid, want, source) in expect {
        for _ in 0..3 {
            let got = client.label(uid, cid, WAIT).await;
            assert_eq!(got.outcome, LabelOutcome::Complete, "{uid}");
            assert_eq!(got.metadata.as_ref(), Some(&want), "{uid}");
            assert_eq!(got.owner_source, source, "{uid}");
        }
    }
    // One GET per ReplicaSet and per Job, however many pods and deaths.
    assert_eq!(server.count_requests("GET", "/apis/apps/v1/namespaces/shop/replicasets/api-7d4b9c"), 1);
    assert_eq!(server.count_requests("GET", "/apis/apps/v1/namespaces/shop/replicasets/web-5f6d7"), 1);
    assert_eq!(server.count_requests("GET", "/apis/batch/v1/"), 2);
    let stats = client.stats();
    assert_eq!((stats.owner_fetches, stats.owners_inferred, stats.owner_fetch_failures), (4, 1, 0));
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
    server.put_pod(&with_running(pod("shop", "marker", "u-marker", NODE), "m", "c-marker"));
    assert_eq!(client.label("u-marker", "c-marker", WAIT).await.outcome, LabelOutcome::Complete);

    let got = client.label("u-gone", "c-dead", WAIT).await;
    assert_eq!(got.outcome, LabelOutcome::Complete);
    assert_eq!(got.metadata, Some(meta("shop", "gone", Some("api"), None)));
    // Its other containers' ids never come now: no waiting for them.
    let started = Instant::now();
    let other = client.label("u-gone", "c-never", WAIT).await;
    assert_eq!(other.outcome, LabelOutcome::PodOnly);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_container_id_that_reaches_the_status_late_is_labelled_within_the_wait() {
    init_logs();
    let (server, client) = synced().await;
    let p = with_waiting(pod("shop", "slow", "u-slow", NODE), "api");
    server.put_pod(&p);
    let marker = with_running(pod("shop", "marker", "u-marker", NODE), "m", "c-marker");
    server.put_pod(&marker);
    assert_eq!(client.label("u-marker", "c-marker", WAIT).await.outcome, LabelOutcome::Complete);

    let started = Instant::now();
    // `biased`: the lookup is polled first and is waiting before the kubelet's update lands.
    let (got, ()) = tokio::join!(
        biased;
        client.label("u-slow", "c-late", Duration::from_secs(5)),
        async {
            assert_eq!(client.stats().lookups_waited, 1, "the lookup waits");
            server.put_pod(&with_terminated(p, "api", "c-late", 1));
        },
    );
    assert_eq!(got.outcome, LabelOutcome::Complete);
    assert_eq!(got.metadata, Some(meta("shop", "slow", Some("api"), None)));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // A container id that never comes: the pod's labels after the wait, counted as partial.
    let started = Instant::now();
    let partial = client.label("u-slow", "c-never", Duration::from_millis(300)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(partial.is_partial());
    assert_eq!(partial.metadata, Some(meta("shop", "slow", None, None)));
    let stats = client.stats();
    assert_eq!((stats.lookups_waited, stats.lookups_pod_only), (2, 1));
}

#[tokio::test]
async fn many_waiting_lookups_are_bounded() {
    init_logs();
    let server = coroner_tests::apiserver::ApiServer::start().await.unwrap();
    let mut options = coroner_tests::apiserver::fixture::options(&server, NODE);
    options.max_waiting_lookups = 2;
    let client = coroner_tests::apiserver::fixture::connect_on(options).await;
    assert!(client.wait_watch_up(Duration::from_secs(5)).await);
    let lookups: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.label(&format!("u{i}"), "c", Duration::from_millis(500)).await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().outcome, LabelOutcome::Unknown);
    }
    let stats = client.stats();
    assert_eq!((stats.lookups_waited, stats.waiters_rejected), (2, 3));
}
