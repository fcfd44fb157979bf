//! API server faults that `kube_watch.rs` (dropped streams, `410 Gone`, down and back) does
//! not cover: `500` on lists and watches, an `ERROR` event with a 500 in the stream, and an
//! API server that answers slowly. Through `coroner::kube`'s public API and the double.

use std::time::{Duration, Instant};

use coroner::kube::LabelOutcome;
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::fixture::{NODE, connect_on, init_logs, options, synced};
use coroner_tests::apiserver::objects::{pod, with_running};
use serde_json::json;

/// kube's default backoff starts at 0.8 s and grows; a few retries fit in this.
const RECOVERY: Duration = Duration::from_secs(15);

fn running(name: &str) -> k8s_openapi::api::core::v1::Pod {
    with_running(
        pod("shop", name, &format!("u-{name}"), NODE),
        "app",
        &format!("c-{name}"),
    )
}

async fn labelled(client: &coroner::kube::KubeClient, name: &str, wait: Duration) -> bool {
    let got = client
        .label(&format!("u-{name}"), &format!("c-{name}"), wait)
        .await;
    got.outcome == LabelOutcome::Complete
}

/// What the index knows answers at once, whatever the API server is doing.
async fn known_answers_at_once(client: &coroner::kube::KubeClient, name: &str) {
    let started = Instant::now();
    assert!(labelled(client, name, Duration::from_secs(1)).await);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{name}: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn lists_and_watches_answering_500_then_recovering() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&running("first"));
    assert!(labelled(&client, "first", Duration::from_secs(5)).await);

    server.fail_pods(Some(500));
    server.drop_watches();
    assert!(
        client.wait_watch(false, Duration::from_secs(5)).await,
        "{:?}",
        client.stats()
    );
    known_answers_at_once(&client, "first").await;
    server.put_pod(&running("second"));
    // Unknown while the server fails: the lookup answers when its wait is over.
    let started = Instant::now();
    assert!(!labelled(&client, "second", Duration::from_millis(300)).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed = server.count_requests("GET", "/api/v1/pods");

    server.fail_pods(None);
    let started = Instant::now();
    assert!(
        labelled(&client, "second", RECOVERY).await,
        "{:?}",
        client.stats()
    );
    eprintln!(
        "labelled {:?} after the server recovered ({failed} pod requests meanwhile)",
        started.elapsed()
    );
    assert!(client.stats().watch_up);
    known_answers_at_once(&client, "first").await;
}

#[tokio::test]
async fn a_500_or_503_at_start_then_up() {
    init_logs();
    // kube's client retries a 503 itself (the watch sees no error); a 500 reaches the watch.
    for code in [500, 503] {
        let server = ApiServer::start().unwrap();
        server.fail_pods(Some(code));
        server.put_pod(&running("web"));
        let client = connect_on(options(&server, NODE)).await;
        assert!(
            !client.wait_watch_up(Duration::from_secs(2)).await,
            "{code}"
        );
        let started = Instant::now();
        assert!(!labelled(&client, "web", Duration::from_millis(300)).await);
        assert!(started.elapsed() < Duration::from_secs(1), "{code}");
        if code == 500 {
            let stats = client.stats();
            assert!(stats.watch_errors >= 1, "{stats:?}");
        }
        server.fail_pods(None);
        assert!(
            labelled(&client, "web", RECOVERY).await,
            "{code}: {:?}",
            client.stats()
        );
    }
}

#[tokio::test]
async fn an_error_event_with_a_500_in_the_stream_rewatches() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&running("before"));
    assert!(labelled(&client, "before", Duration::from_secs(5)).await);
    let error = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
        "metadata": {}, "status": "Failure", "message": "etcdserver: request timed out",
        "reason": "InternalError", "code": 500}});
    server.inject_watch_line(error.to_string().as_bytes());
    server.put_pod(&running("after"));
    assert!(
        labelled(&client, "after", RECOVERY).await,
        "{:?}",
        client.stats()
    );
    known_answers_at_once(&client, "before").await;
}

#[tokio::test]
async fn a_slow_api_server_delays_only_what_it_has_not_sent() {
    init_logs();
    let server = ApiServer::start().unwrap();
    server.put_pod(&running("early"));
    // Every list and watch takes 3 s to start answering, from the very first.
    server.delay_pods(Some(Duration::from_secs(3)));
    let started = Instant::now();
    let client = connect_on(options(&server, NODE)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "connecting waited for the server"
    );
    // A lookup before the list arrived answers when its own wait is over.
    assert!(!labelled(&client, "early", Duration::from_millis(300)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A lookup that may wait longer than the server is slow gets the answer.
    assert!(labelled(&client, "early", Duration::from_secs(10)).await);
    assert!(client.wait_watch_up(RECOVERY).await);
    known_answers_at_once(&client, "early").await;
    // Once the watch is open, changes stream without the delay.
    assert!(server.wait_until(RECOVERY, |s| s.open_watches() == 1).await);
    server.put_pod(&running("late"));
    let streamed = Instant::now();
    assert!(labelled(&client, "late", Duration::from_secs(5)).await);
    assert!(
        streamed.elapsed() < Duration::from_secs(1),
        "{:?}",
        streamed.elapsed()
    );
}
