//! Hostile input from the API server side, through `coroner::kube`'s public API and the API
//! server double: pods with hundreds of containers, malformed objects in the watch stream and
//! in a list. The promise: the agent keeps labelling the other pods.

use std::time::{Duration, Instant};

use coroner::kube::LabelOutcome;
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::fixture::{NODE, connect_on, init_logs, options, synced};
use coroner_tests::apiserver::objects::{pod, with_running};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

fn running(name: &str) -> Pod {
    with_running(
        pod("shop", name, &format!("u-{name}"), NODE),
        "app",
        &format!("c-{name}"),
    )
}

async fn outcome(client: &coroner::kube::KubeClient, uid: &str, id: &str) -> LabelOutcome {
    client.label(uid, id, WAIT).await.outcome
}

#[tokio::test]
async fn a_pod_with_hundreds_of_containers_is_labelled_whole() {
    init_logs();
    let (server, client) = synced().await;
    let mut big = pod("shop", "big", "u-big", NODE);
    for i in 0..300 {
        big = with_running(big, &format!("c{i}"), &format!("{i:064x}"));
    }
    server.put_pod(&big);
    server.put_pod(&running("small"));
    assert_eq!(
        outcome(&client, "u-small", "c-small").await,
        LabelOutcome::Complete
    );
    let started = Instant::now();
    let mut wrong = Vec::new();
    for i in [299, 250, 150, 31, 1, 0] {
        let got = client
            .label(
                "u-big",
                &format!("containerd://{i:064x}"),
                Duration::from_millis(200),
            )
            .await;
        let name = got.metadata.as_ref().and_then(|m| m.container.clone());
        if got.outcome != LabelOutcome::Complete || name != Some(format!("c{i}")) {
            wrong.push((i, got.outcome, name));
        }
    }
    assert!(
        wrong.is_empty(),
        "containers of a pod with 300 not labelled (index, outcome, name): {wrong:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // A status update of the big pod (one container restarted) keeps every container.
    big = with_running(big, "c300", &format!("{:064x}", 300));
    server.put_pod(&big);
    assert_eq!(
        outcome(&client, "u-big", &format!("{:064x}", 300)).await,
        LabelOutcome::Complete
    );
    assert_eq!(
        outcome(&client, "u-small", "c-small").await,
        LabelOutcome::Complete
    );
}

/// Lines a broken or hostile API server (or a proxy in between) may put in a watch stream.
fn malformed_lines() -> Vec<Vec<u8>> {
    let huge = "x".repeat(1 << 20);
    vec![
        b"this is not JSON".to_vec(),
        br#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1""#.to_vec(),
        br#"{"type":"MODIFIED"}"#.to_vec(),
        br#"{"type":"SOMETHING","object":{}}"#.to_vec(),
        json!({"type": "ADDED", "object": {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": 7, "namespace": "shop", "uid": "u-bad"}}})
        .to_string()
        .into_bytes(),
        json!({"type": "MODIFIED", "object": {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "typed", "namespace": "shop", "uid": "u-typed",
                         "resourceVersion": "1"},
            "status": {"containerStatuses": "not a list"}}})
        .to_string()
        .into_bytes(),
        json!({"type": "ADDED", "object": {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "huge", "namespace": "shop", "uid": "u-huge",
                         "annotations": {"a": huge}}}})
        .to_string()
        .into_bytes(),
        vec![0xff, 0xfe, b'{', 0x80],
    ]
}

#[tokio::test]
async fn malformed_watch_events_do_not_stop_the_labelling() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&running("before"));
    assert_eq!(
        outcome(&client, "u-before", "c-before").await,
        LabelOutcome::Complete
    );
    for (i, line) in malformed_lines().iter().enumerate() {
        server.inject_watch_line(line);
        // A pod that arrives after the bad line is labelled; the ones before still are.
        let name = format!("after-{i}");
        server.put_pod(&running(&name));
        let started = Instant::now();
        assert_eq!(
            outcome(&client, &format!("u-{name}"), &format!("c-{name}")).await,
            LabelOutcome::Complete,
            "after malformed line {i}: {:?}",
            client.stats()
        );
        assert!(
            started.elapsed() < WAIT,
            "line {i}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            outcome(&client, "u-before", "c-before").await,
            LabelOutcome::Complete
        );
    }
    // The bad lines did reach the watch, as errors (the valid huge one did not).
    let stats = client.stats();
    assert!(stats.watch_up && stats.watch_errors >= 5, "{stats:?}");
    // An object with an unreadable status is applied from its metadata, not dropped. Sent
    // once more on a watch known to be open: a bad line above may have made kube relist, and
    // a line sent while no watch is open reaches nobody.
    let started = Instant::now();
    while client.stats().pods_undecodable == 0 && started.elapsed() < WAIT {
        if server.open_watches() > 0 {
            server.inject_watch_line(&malformed_lines()[5]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = client.stats();
    assert!(stats.pods_undecodable >= 1, "{stats:?}");
    let typed = client
        .label(
            "u-typed",
            "containerd://c-typed",
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(
        typed.metadata.map(|m| m.pod),
        Some("typed".to_owned()),
        "the pod of an object with an unreadable status is still known"
    );
}

#[tokio::test]
async fn a_malformed_pod_in_a_list_does_not_hide_the_others() {
    init_logs();
    let server = ApiServer::start().unwrap();
    server.put_pod(&running("good"));
    // A pod whose status the API object model cannot read (a newer server, a broken
    // aggregated API, a proxy rewriting JSON): the list that carries it must not cost the
    // node every other pod's labels.
    server.put_pod(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "broken", "namespace": "shop", "uid": "u-broken"},
        "spec": {"nodeName": NODE, "containers": []},
        "status": {"containerStatuses": "not a list"},
    }));
    let client = connect_on(options(&server, NODE)).await;
    let synced = client.wait_watch_up(WAIT).await;
    assert_eq!(
        outcome(&client, "u-good", "c-good").await,
        LabelOutcome::Complete,
        "synced: {synced}, {:?}",
        client.stats()
    );
    // The broken pod itself still names its namespace and pod.
    let broken = client
        .label(
            "u-broken",
            "containerd://c-unknown",
            Duration::from_millis(200),
        )
        .await;
    let meta = broken.metadata.expect("the broken pod's metadata");
    assert_eq!(
        (meta.namespace.as_str(), meta.pod.as_str()),
        ("shop", "broken")
    );
    assert_eq!(client.stats().pods_undecodable, 1, "{:?}", client.stats());
}
