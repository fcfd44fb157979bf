//! The pod watch through outages: dropped streams, `410 Gone`, paged lists, an API server that
//! is down at start or goes away and comes back. Each test runs on one thread, so what the
//! double does between two awaits happens before the agent's tasks run again.

use std::time::{Duration, Instant};

use coroner::kube::LabelOutcome;
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::fixture::{NODE, connect_on, init_logs, options, synced};
use coroner_tests::apiserver::objects::{pod, with_running};

const WAIT: Duration = Duration::from_secs(5);

fn running(name: &str) -> k8s_openapi::api::core::v1::Pod {
    with_running(
        pod("shop", name, &format!("u-{name}"), NODE),
        "app",
        &format!("c-{name}"),
    )
}

fn lists(server: &ApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/pods" && !r.query.contains("watch=true"))
        .count()
}

fn watches(server: &ApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/pods" && r.query.contains("watch=true"))
        .count()
}

async fn labelled(client: &coroner::kube::KubeClient, name: &str) -> bool {
    let got = client
        .label(&format!("u-{name}"), &format!("c-{name}"), WAIT)
        .await;
    got.outcome == LabelOutcome::Complete
}

#[tokio::test]
async fn a_watch_dropped_mid_stream_resumes_without_a_relist() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&running("before"));
    server.bookmark();
    assert!(labelled(&client, "before").await);

    server.drop_watches();
    // Changed while no watch is open: the resumed watch replays it from the history.
    server.put_pod(&running("during"));
    assert!(labelled(&client, "during").await);
    server.put_pod(&running("after"));
    assert!(labelled(&client, "after").await);

    assert_eq!(
        lists(&server),
        1,
        "resumed from its resourceVersion, no relist"
    );
    assert_eq!(watches(&server), 2);
    assert_eq!(client.stats().relists, 1);
}

#[tokio::test]
async fn a_410_in_the_stream_relists_and_continues() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&running("old"));
    assert!(labelled(&client, "old").await);

    // etcd compacted: the open watch gets an ERROR event with a 410 Status.
    server.expire_watches();
    server.put_pod(&running("new"));
    server.delete_pod("shop", "old");
    assert!(labelled(&client, "new").await);
    let stats = client.stats();
    assert_eq!((stats.relists, stats.watch_errors), (2, 1), "{stats:?}");
    assert_eq!(lists(&server), 2);
    // Gone from the relist: deleted meanwhile, still labelled for the retention.
    assert!(labelled(&client, "old").await);
    assert!(client.stats().watch_up);
}

#[tokio::test]
async fn a_resume_from_a_compacted_version_relists() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&running("seen"));
    assert!(labelled(&client, "seen").await);

    // The watch drops, more changes happen, and the history is compacted before the agent
    // comes back: resuming from its resourceVersion is answered 410, so it lists again.
    server.drop_watches();
    server.put_pod(&running("missed"));
    server.compact();
    assert!(labelled(&client, "missed").await);
    assert_eq!(lists(&server), 2);
    let stats = client.stats();
    assert_eq!((stats.relists, stats.watch_errors), (2, 1), "{stats:?}");
}

#[tokio::test]
async fn a_long_list_is_paged_and_a_stale_continue_starts_over() {
    init_logs();
    let server = ApiServer::start().unwrap();
    for i in 0..1200 {
        server.put_pod(&running(&format!("p{i}")));
    }
    server.expire_next_continue();
    let client = connect_on(options(&server, NODE)).await;
    assert!(client.wait_watch_up(WAIT).await);
    // Page 1, its continue answered 410, then pages 1, 2 and 3 of a fresh list.
    assert_eq!(lists(&server), 5);
    let continues = server
        .requests()
        .iter()
        .filter(|r| r.query.contains("continue="))
        .count();
    assert_eq!(continues, 3);
    assert_eq!(client.stats().pods_indexed, 1200);
    let started = Instant::now();
    assert!(labelled(&client, "p1199").await);
    assert!(labelled(&client, "p0").await);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn the_api_server_down_at_start_then_up() {
    init_logs();
    let server = ApiServer::start_down().unwrap();
    let client = connect_on(options(&server, NODE)).await;

    // Nothing is known; the lookup answers once its wait is over.
    let started = Instant::now();
    let got = client
        .label("u-web", "c-web", Duration::from_millis(300))
        .await;
    assert_eq!(got.outcome, LabelOutcome::Unknown);
    assert!(started.elapsed() < Duration::from_secs(1));
    let stats = client.stats();
    assert!(!stats.watch_up);
    assert!(stats.watch_errors >= 1, "{stats:?}");

    server.put_pod(&running("web"));
    server.up().unwrap();
    // kube's default backoff starts at 0.8 s: a few seconds at most.
    assert!(
        client.wait_watch_up(Duration::from_secs(8)).await,
        "{:?}",
        client.stats()
    );
    assert!(labelled(&client, "web").await);
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn the_api_server_goes_away_and_comes_back() {
    init_logs();
    let (server, client) = synced().await;
    server.put_pod(&running("first"));
    assert!(labelled(&client, "first").await);

    server.down().await;
    // The watch notices (its reconnection is refused) and backs off.
    assert!(client.wait_watch(false, WAIT).await);
    // What the index knows keeps answering while the API server is away.
    let started = Instant::now();
    assert!(labelled(&client, "first").await);
    assert!(started.elapsed() < Duration::from_millis(100));
    server.put_pod(&running("second"));
    server.up().unwrap();
    assert!(labelled(&client, "second").await);
    let stats = client.stats();
    assert!(stats.watch_up && stats.watch_errors >= 1, "{stats:?}");
    assert_eq!(lists(&server), 1, "resumed from its resourceVersion");
}
