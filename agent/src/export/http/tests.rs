//! Real requests over TCP to a server on 127.0.0.1:0, with a hand-written HTTP/1.1 client.
#![expect(
    clippy::float_cmp,
    reason = "the values are small integers, written and read back exactly"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::export::recent::tests::record;

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(state: HttpState, limits: HttpLimits) -> Self {
        Self::start_app(routes(state, limits.request_timeout), limits).await
    }

    async fn start_app(app: Router, limits: HttpLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_router(listener, app, shutdown, limits));
        Self { addr, stop, task }
    }

    /// Stops the server and checks that it returns within the drain budget.
    async fn stop(self, within: Duration) {
        let _ = self.stop.send(());
        tokio::time::timeout(within, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic");
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One request on a fresh connection, `Connection: close`, the whole reply read; `None` when
/// the server closed without a reply.
async fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
) -> std::io::Result<Option<Reply>> {
    try_request_with(addr, method, target, "").await
}

/// [`try_request`] with extra header lines (each ending in `\r\n`).
async fn try_request_with(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
) -> std::io::Result<Option<Reply>> {
    let mut stream = TcpStream::connect(addr).await?;
    let req =
        format!("{method} {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n{headers}\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("reply within 5 s")?;
    if raw.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8(raw).expect("utf-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Some(Reply { status, head, body }))
}

/// The body of a chunked reply, its chunks joined.
fn dechunk(mut raw: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap_or(size), 16)
            .expect("a hexadecimal chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&rest[..size]);
        raw = rest[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after a chunk");
    }
}

async fn request(addr: SocketAddr, method: &str, target: &str) -> Reply {
    try_request(addr, method, target)
        .await
        .expect("request")
        .expect("a reply")
}

async fn http_get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target).await
}

fn state() -> HttpState {
    HttpState {
        metrics: Metrics::default(),
        recent: RecentRecords::new(16),
        readiness: Readiness::not_ready("probe signal_generate not attached"),
    }
}

fn quick_limits() -> HttpLimits {
    HttpLimits {
        max_connections: 8,
        header_read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        connection_lifetime: Duration::from_secs(3),
        drain_timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn healthz_is_503_with_the_reason_until_ready() {
    let state = state();
    let server = Server::start(state.clone(), HttpLimits::default()).await;

    let reply = http_get(server.addr, "/healthz").await;
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("probe signal_generate not attached"),
        "{}",
        reply.body
    );

    state.readiness.set_ready();
    let reply = http_get(server.addr, "/healthz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.trim(), "ok");

    state.readiness.set_not_ready("kernel programs detached");
    assert_eq!(http_get(server.addr, "/healthz").await.status, 503);
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn metrics_are_openmetrics_text_for_who_asks_and_classic_text_otherwise() {
    let state = state();
    let mut oom = record(Some("shop"), Some("cart-7f9c"), 42);
    oom.reason = crate::record::Reason::OomKilled;
    state.metrics.observe(&oom);
    let server = Server::start(state, HttpLimits::default()).await;

    let classic = http_get(server.addr, "/metrics").await;
    assert!(
        classic
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        classic.head
    );
    assert!(
        classic
            .body
            .contains("# TYPE coroner_terminations_total counter"),
        "{}",
        classic.body
    );
    assert!(!classic.body.contains("# EOF"));

    // What Prometheus sends.
    let accept = "accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";
    let reply = try_request_with(server.addr, "GET", "/metrics", accept)
        .await
        .expect("request")
        .expect("a reply");
    assert_eq!(reply.status, 200);
    assert!(
        reply.head.contains(&format!("content-type: {OPENMETRICS}")),
        "{}",
        reply.head
    );
    let e = crate::export::metrics::exposition::parse(&reply.body);
    let labels = [
        ("namespace", "shop"),
        ("pod", "cart-7f9c"),
        ("uid", "1"),
        ("container", "app"),
        ("workload_kind", ""),
        ("workload_name", ""),
        ("reason", "OOMKilled"),
        ("main_process", "true"),
    ];
    assert_eq!(e.value("coroner_terminations_total", &labels), 1.0);
    // OpenMetrics only: the series' birth, the record's time.
    assert_eq!(
        e.value("coroner_terminations_created", &labels),
        1_700_000_000.123
    );
    assert!(!classic.body.contains("_created"), "{}", classic.body);
    assert_eq!(
        e.value("coroner_events_lost_total", &[("stage", "kernel")]),
        0.0
    );
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_large_exposition_is_streamed_and_arrives_whole() {
    let state = state();
    for i in 0..3000 {
        state
            .metrics
            .observe(&record(Some("shop"), Some(&format!("cart-{i}")), i));
    }
    let whole = state.metrics.encode();
    let server = Server::start(state, HttpLimits::default()).await;
    let accept = "accept: application/openmetrics-text;version=1.0.0\r\n";
    let reply = try_request_with(server.addr, "GET", "/metrics", accept)
        .await
        .expect("request")
        .expect("a reply");
    assert_eq!(reply.status, 200);
    assert!(
        reply.head.contains("transfer-encoding: chunked"),
        "{}",
        reply.head
    );
    assert!(
        whole.len() > 256 * 1024,
        "{} bytes: not several pieces",
        whole.len()
    );
    assert_eq!(reply.body, whole);
    let e = crate::export::metrics::exposition::parse(&reply.body);
    assert_eq!(e.find("coroner_terminations_total", &[]).len(), 3000);
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn terminations_are_filtered_and_oldest_first() {
    let state = state();
    state.recent.push(record(Some("a"), Some("web"), 1));
    state.recent.push(record(Some("b"), Some("web"), 2));
    state.recent.push(record(Some("a"), Some("db"), 3));
    state.recent.push(record(Some("a"), Some("web"), 4));
    let server = Server::start(state, HttpLimits::default()).await;

    let pids = |reply: &Reply| -> Vec<u64> {
        let value: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON body");
        value
            .as_array()
            .expect("a JSON array")
            .iter()
            .map(|r| r["pid"].as_u64().expect("pid"))
            .collect()
    };
    let all = http_get(server.addr, "/v1/terminations").await;
    assert_eq!(all.status, 200);
    assert!(all.head.contains("content-type: application/json"));
    assert_eq!(pids(&all), [1, 2, 3, 4]);
    assert_eq!(
        pids(&http_get(server.addr, "/v1/terminations?namespace=a").await),
        [1, 3, 4]
    );
    assert_eq!(
        pids(&http_get(server.addr, "/v1/terminations?pod=web").await),
        [1, 2, 4]
    );
    assert_eq!(
        pids(&http_get(server.addr, "/v1/terminations?namespace=a&pod=web").await),
        [1, 4]
    );
    assert_eq!(
        pids(&http_get(server.addr, "/v1/terminations?namespace=zzz").await),
        Vec::<u64>::new()
    );
    assert_eq!(
        pids(
            &http_get(
                server.addr,
                "/v1/terminations?namespace=a&container=app&pod_uid=1"
            )
            .await
        ),
        [1, 3, 4]
    );
    assert_eq!(
        pids(&http_get(server.addr, "/v1/terminations?owner_kind=Deployment").await),
        Vec::<u64>::new()
    );
    // A filter given twice is ambiguous: refused, not half-applied.
    assert_eq!(
        http_get(server.addr, "/v1/terminations?pod=web&pod=db")
            .await
            .status,
        400
    );
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn nothing_else_is_exposed() {
    let server = Server::start(state(), HttpLimits::default()).await;
    for target in [
        "/",
        "/metricsx",
        "/metrics/extra",
        "/v1",
        "/v1/terminations/1",
        "/debug",
    ] {
        assert_eq!(http_get(server.addr, target).await.status, 404, "{target}");
    }
    assert_eq!(request(server.addr, "POST", "/metrics").await.status, 405);
    assert_eq!(
        request(server.addr, "DELETE", "/v1/terminations")
            .await
            .status,
        405
    );
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_stalled_client_blocks_neither_others_nor_shutdown() {
    let state = state();
    // Enough records that the reply outgrows the socket buffers of a client that never reads.
    for pid in 0..16 {
        let mut r = record(Some("ns"), Some("p"), pid);
        r.comm = "x".repeat(1 << 20);
        state.recent.push(r);
    }
    state.readiness.set_ready();
    let server = Server::start(state, quick_limits()).await;

    // One sends half a request head and stops; one asks for a large reply and never reads it.
    let mut half = TcpStream::connect(server.addr).await.expect("connect");
    half.write_all(b"GET /metrics HTTP/1.1\r\nhost: te")
        .await
        .expect("send");
    let mut deaf = TcpStream::connect(server.addr).await.expect("connect");
    deaf.write_all(b"GET /v1/terminations HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    assert_eq!(http_get(server.addr, "/healthz").await.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));

    // The half request is dropped at the header deadline.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(3), half.read(&mut buf))
        .await
        .expect("the server closes a stalled head");
    assert!(matches!(closed, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"));

    // Shutdown does not wait on the deaf client beyond the drain budget.
    let started = Instant::now();
    server.stop(Duration::from_secs(4)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(deaf);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_until_one_frees() {
    let limits = HttpLimits {
        max_connections: 2,
        ..quick_limits()
    };
    let server = Server::start(state(), limits).await;
    let idle: Vec<TcpStream> = vec![
        TcpStream::connect(server.addr).await.expect("connect"),
        TcpStream::connect(server.addr).await.expect("connect"),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Refused before any handler ran: a bare 503, or, if the kernel's reset overtook it, no
    // reply at all; never the handler's answer.
    if let Ok(Some(refused)) = try_request(server.addr, "GET", "/healthz").await {
        assert_eq!(refused.status, 503);
        assert!(refused.body.is_empty(), "{}", refused.body);
    }

    // Idle connections hit the header deadline and give their permits back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reply = http_get(server.addr, "/healthz").await;
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("not ready"),
        "served by the handler: {}",
        reply.body
    );
    drop(idle);
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_slow_handler_is_answered_503_at_the_request_deadline() {
    let limits = quick_limits();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            deadline,
        ));
    let server = Server::start_app(app, limits).await;

    let started = Instant::now();
    let reply = http_get(server.addr, "/slow").await;
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop(Duration::from_secs(5)).await;
}
