//! The HTTP server: `/metrics`, `/v1/terminations`, the health endpoints (`health`), and
//! nothing else. Who may read the first two is `access`'s business.
//!
//! axum routes; the connections are driven here with hyper directly, because what a bad client
//! may cost has to be bounded and `axum::serve` bounds none of it: connections are capped (one
//! over the cap gets a 503 and is closed), headers must arrive within a deadline (a client that
//! connects and sends nothing is dropped), a request must be answered within a deadline, and a
//! connection lives at most so long (a client that never reads its response is cut off). Each
//! connection is its own task, so none of them can hold up another or the accept loop.

pub mod access;
pub mod health;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::metrics::{Format, Metrics};
use super::recent::{RecentFilter, RecentRecords};
use access::{Access, Endpoint};
pub use health::Readiness;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct HttpState {
    pub metrics: Metrics,
    pub recent: RecentRecords,
    pub readiness: Readiness,
}

/// What one client may cost the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// From the first byte wanted to the end of the request head, idle keep-alive included.
    pub header_read_timeout: Duration,
    /// From the request head to the response head.
    pub request_timeout: Duration,
    /// After this a connection is asked to close (after its current response), then cut.
    pub connection_lifetime: Duration,
    /// How long open connections get to finish once asked to close.
    pub drain_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            // Prometheus, a kubelet probe and a person with curl need a handful.
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_mins(2),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves until `shutdown` completes, then closes the listener and drains open connections
/// (each gets [`HttpLimits::drain_timeout`] to finish its response).
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_with_limits(listener, state, shutdown, HttpLimits::default()).await;
}

/// [`serve`] with other limits.
pub async fn serve_with_limits(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send,
    limits: HttpLimits,
) {
    serve_guarded(listener, state, Access::open(), shutdown, limits).await;
}

/// [`serve_with_limits`] with `/v1/terminations` and `/metrics` behind `access`.
pub async fn serve_guarded(
    listener: TcpListener,
    state: HttpState,
    access: Access,
    shutdown: impl Future<Output = ()> + Send,
    limits: HttpLimits,
) {
    let app = guarded_routes(state, access, limits.request_timeout);
    serve_router(listener, app, shutdown, limits).await;
}

#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the unguarded routes of the tests")
)]
fn routes(state: HttpState, request_timeout: Duration) -> Router {
    guarded_routes(state, Access::open(), request_timeout)
}

fn guarded_routes(state: HttpState, access: Access, request_timeout: Duration) -> Router {
    let guard = move |endpoint| {
        let access = access.clone();
        middleware::from_fn_with_state((access, endpoint), access::guard)
    };
    let guarded = Router::new()
        .route(
            "/metrics",
            get(metrics).route_layer(guard(Endpoint::Metrics)),
        )
        .route(
            "/v1/terminations",
            get(terminations).route_layer(guard(Endpoint::Terminations)),
        );
    Router::new()
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        // The old name of /readyz, kept for what already probes it.
        .route("/healthz", get(health::readyz))
        .merge(guarded)
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
}

/// `OpenMetrics` for clients that ask for it (Prometheus does), the classic text format for
/// everyone else (promtool, older scrapers, curl). The body is streamed in pieces as the client
/// reads it: at 100k series it is 15 MB, which would otherwise sit in memory whole.
async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, format) = if wants_openmetrics {
        (OPENMETRICS, Format::OpenMetrics)
    } else {
        (CLASSIC_TEXT, Format::Classic)
    };
    let pieces = state.metrics.scrape(format).map(Ok::<_, Infallible>);
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(futures::stream::iter(pieces)),
    )
        .into_response()
}

async fn terminations(
    State(state): State<HttpState>,
    Query(filter): Query<RecentFilter>,
) -> Response {
    axum::Json(state.recent.snapshot(&filter)).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
    limits: HttpLimits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections so the set stays as small as the permits.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::debug!(%peer, "too many HTTP connections, refusing one");
                        refuse(&stream);
                        continue;
                    };
                    let task = connection(stream, app.clone(), permit, stop_rx.clone(), limits);
                    connections.spawn(task);
                }
                Err(error) => {
                    // EMFILE and friends pass; spinning on them would not help them pass.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections did not finish in time, closing them"
        );
        connections.shutdown().await;
    }
}

/// Best effort: tell the client why before closing; never wait on it.
fn refuse(stream: &TcpStream) {
    // Closing with unread bytes makes the kernel answer with a reset, which can overtake the
    // 503: take what already arrived first.
    let mut sink = [0u8; 4096];
    let _ = stream.try_read(&mut sink);
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    );
}

async fn connection(
    stream: TcpStream,
    app: Router,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    limits: HttpLimits,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            return;
        }
        () = tokio::time::sleep(limits.connection_lifetime) => {}
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(limits.drain_timeout, conn)
        .await
        .is_err()
    {
        tracing::debug!("HTTP connection did not close in time, cutting it");
    }
}
