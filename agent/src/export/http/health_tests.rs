//! `/livez`, `/readyz`, `/healthz` through the real router (no socket: the answers are what
//! is under test, the connection handling is `tests`').

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt as _;

use super::access::{Access, AccessConfig, AuthMode};
use super::*;

fn state(readiness: Readiness) -> HttpState {
    HttpState {
        metrics: Metrics::default(),
        recent: RecentRecords::new(4),
        readiness,
    }
}

async fn get(app: &Router, path: &str) -> (u16, String) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn app(readiness: &Readiness) -> Router {
    routes(state(readiness.clone()), Duration::from_secs(5))
}

#[tokio::test]
async fn starting_is_live_but_not_ready() {
    let readiness = Readiness::not_ready("starting");
    let app = app(&readiness);
    assert_eq!(get(&app, "/livez").await, (200, "ok\n".to_owned()));
    for path in ["/readyz", "/healthz"] {
        assert_eq!(
            get(&app, path).await,
            (503, "not ready: starting\n".to_owned()),
            "{path}"
        );
    }
    readiness.set_ready();
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(get(&app, path).await, (200, "ok\n".to_owned()), "{path}");
    }
}

#[tokio::test]
async fn a_missing_optional_probe_degrades_both_and_fails_neither() {
    let readiness = Readiness::not_ready("starting");
    readiness.set_ready();
    readiness.set_degraded("probes not attached: execve_exit (no tracefs)");
    let app = app(&readiness);
    assert_eq!(get(&app, "/livez").await, (200, "ok\n".to_owned()));
    for path in ["/readyz", "/healthz"] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            body, "ok, degraded: probes not attached: execve_exit (no tracefs)\n",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_loop_that_stops_beating_fails_liveness_and_readiness() {
    let readiness = Readiness::with_stale_after("starting", Duration::from_millis(50));
    readiness.set_ready();
    let heartbeat = readiness.heartbeat("kernel-events");
    let app = app(&readiness);
    // Never beaten: not watched yet.
    assert_eq!(get(&app, "/livez").await.0, 200);
    heartbeat.beat();
    assert_eq!(get(&app, "/livez").await.0, 200);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let (status, body) = get(&app, "/livez").await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with("not live: loop stuck: kernel-events silent for"),
        "{body}"
    );
    assert_eq!(get(&app, "/readyz").await.0, 503);
    heartbeat.beat();
    assert_eq!(get(&app, "/livez").await.0, 200, "beating again is live");
}

#[tokio::test]
async fn a_watched_task_that_ends_fails_liveness() {
    let readiness = Readiness::not_ready("starting");
    readiness.set_ready();
    let task = tokio::spawn(async {});
    readiness.watch_task("labelling", task.abort_handle());
    let _ = task.await;
    let (status, body) = get(&app(&readiness), "/livez").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "not live: loop stuck: labelling ended\n")
    );
}

#[tokio::test]
async fn health_stays_open_when_everything_else_is_guarded() {
    let readiness = Readiness::not_ready("starting");
    readiness.set_ready();
    // A reviewer that must never be asked: the health endpoints do not consult it.
    let config = AccessConfig::new(AuthMode::Kubernetes, AuthMode::Kubernetes, "coroner", "a");
    let access = Access::new(
        config,
        std::sync::Arc::new(super::access::tests::Scripted::default()),
        Metrics::default(),
    );
    let app = guarded_routes(state(readiness), access, Duration::from_secs(5));
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(get(&app, path).await.0, 200, "{path}");
    }
    assert_eq!(get(&app, "/v1/terminations").await.0, 401);
    assert_eq!(get(&app, "/metrics").await.0, 401);
}

#[tokio::test]
async fn no_spelling_of_a_guarded_path_gets_past_the_guard() {
    let readiness = Readiness::not_ready("starting");
    readiness.set_ready();
    let config = AccessConfig::new(AuthMode::Kubernetes, AuthMode::Kubernetes, "coroner", "a");
    let access = Access::new(
        config,
        std::sync::Arc::new(super::access::tests::Scripted::default()),
        Metrics::default(),
    );
    let app = guarded_routes(state(readiness), access, Duration::from_secs(5));
    for path in [
        "/v1/%74erminations",
        "/v1//terminations",
        "//v1/terminations",
        "/v1/terminations/",
        "/V1/terminations",
        "/%6detrics",
        "/metrics/",
        "/metrics?x=1",
        "/v1/terminations?namespace=a",
    ] {
        let (status, _) = get(&app, path).await;
        assert!(status == 401 || status == 404, "{path}: {status}");
    }
}
