//! The HTTP/1.1 side: routing and the list, watch, get and Event handlers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Shared;
use super::store::{
    RequestLog, WatchMsg, Watcher, key_of, line, matches, parse_selector, status, watch_line,
};
use super::{event_api, events, labels, proxy};

pub type Body = BoxBody<Bytes, io::Error>;

#[expect(
    clippy::too_many_lines,
    reason = "the route table: one arm per API path, read best as one list"
)]
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let uri_query = req.uri().query().unwrap_or_default().to_owned();
    let query: HashMap<String, String> =
        req.uri().query().map(url_decode_pairs).unwrap_or_default();
    let headers = req.headers().clone();
    let metadata_only = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadata"));
    shared.with(|s| {
        s.requests.push(RequestLog {
            method: method.to_string(),
            path: path.clone(),
            query: req.uri().query().unwrap_or_default().to_owned(),
        });
    });
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", &e.to_string()),
            ));
        }
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // RBAC's refusals first, then the reviews the agent's HTTP guard asks for.
    if let Some(response) = proxy::forbidden(&shared, &path)
        .or_else(|| super::access_review::route(&shared, &method, &segments, &body))
    {
        return Ok(response);
    }
    if method == Method::GET
        && let Some(response) = reads(&shared, &segments, &query, &uri_query, &headers).await
    {
        return Ok(response);
    }
    let response = match (&method, segments.as_slice()) {
        (&Method::GET, ["api", "v1", "pods"]) => pods(&shared, None, &query),
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => pods(&shared, Some(ns), &query),
        (&Method::GET, ["apis", "apps", "v1", "namespaces", ns, "replicasets", name]) => get(
            &shared,
            |s| s.replicasets.get(&key(ns, name)).cloned(),
            "replicasets",
            name,
            metadata_only,
        ),
        (&Method::GET, ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => get(
            &shared,
            |s| s.jobs.get(&key(ns, name)).cloned(),
            "jobs.batch",
            name,
            metadata_only,
        ),
        (&Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"]) => {
            events::create(&shared, ns, &body, true)
        }
        (&Method::POST, ["api", "v1", "namespaces", ns, "events"]) => {
            events::create(&shared, ns, &body, false)
        }
        (
            &Method::PATCH,
            [
                "apis",
                "events.k8s.io",
                "v1",
                "namespaces",
                ns,
                "events",
                name,
            ],
        ) => events::patch(&shared, ns, name, &body, true),
        (&Method::PATCH, ["api", "v1", "namespaces", ns, "events", name]) => {
            events::patch(&shared, ns, name, &body, false)
        }
        (
            &Method::GET,
            [
                "apis",
                "events.k8s.io",
                "v1",
                "namespaces",
                ns,
                "events",
                name,
            ],
        ) => get(
            &shared,
            |s| s.events.get(&key(ns, name)).cloned(),
            "events.events.k8s.io",
            name,
            metadata_only,
        ),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    };
    Ok(response)
}

/// GETs answered before the routes: a pod list's or watch's injected fault, single pods, the
/// pod proxy, Deployments, Event lists and watches.
async fn reads(
    shared: &Shared,
    segments: &[&str],
    query: &HashMap<String, String>,
    raw_query: &str,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    if segments.last() == Some(&"pods") {
        return pods_fault(shared).await;
    }
    if let Some(response) = proxy::route(shared, segments, query, raw_query, headers).await {
        return Some(response);
    }
    event_api::route(shared, segments, query)
}

/// What the test asked pod lists and watches to suffer: a delay, then maybe an error status.
async fn pods_fault(shared: &Shared) -> Option<Response<Body>> {
    let (fail, delay) = shared.read(|s| (s.fail_pods, s.delay_pods));
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let code = StatusCode::from_u16(fail?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = code.canonical_reason().unwrap_or("InternalError");
    Some(json_response(
        code,
        &status(
            code.as_u16(),
            &reason.replace(' ', ""),
            "injected by the test",
        ),
    ))
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_owned(), name.to_owned())
}

fn url_decode_pairs(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap_or_default()
}

fn get(
    shared: &Shared,
    find: impl FnOnce(&super::store::Store) -> Option<Value>,
    resource: &str,
    name: &str,
    metadata_only: bool,
) -> Response<Body> {
    match shared.read(find) {
        Some(obj) if metadata_only => json_response(
            StatusCode::OK,
            &json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"]}),
        ),
        Some(obj) => json_response(StatusCode::OK, &obj),
        None => json_response(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
        ),
    }
}

fn pods(shared: &Shared, namespace: Option<&str>, q: &HashMap<String, String>) -> Response<Body> {
    let selector = match parse_selector(q.get("fieldSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &status(400, "BadRequest", &e)),
    };
    let flag = |name: &str| q.get(name).is_some_and(|v| v == "true" || v == "1");
    if flag("watch") {
        watch(shared, namespace, selector, q, flag("allowWatchBookmarks"))
    } else {
        match labels::parse(q.get("labelSelector").map_or("", String::as_str)) {
            Ok(labels) => list(shared, namespace, &selector, &labels, q),
            Err(e) => json_response(StatusCode::BAD_REQUEST, &status(400, "BadRequest", &e)),
        }
    }
}

fn list(
    shared: &Shared,
    namespace: Option<&str>,
    selector: &super::store::Selector,
    labels: &labels::LabelSelector,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let gone = || {
        json_response(
            StatusCode::GONE,
            &status(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ),
        )
    };
    shared.with(|s| {
        let (rv, mut items) = if let Some(token) = q.get("continue").filter(|c| !c.is_empty()) {
            match s.continues.remove(token) {
                _ if std::mem::take(&mut s.expire_next_continue) => return gone(),
                Some((rv, items)) if rv >= s.compacted => (rv, items),
                _ => return gone(),
            }
        } else {
            let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
            let asked = q.get("resourceVersion").and_then(|v| v.parse::<u64>().ok());
            if exact && asked.is_some_and(|v| v < s.compacted) {
                return json_response(
                    StatusCode::GONE,
                    &status(410, "Expired", "too old resource version"),
                );
            }
            let items: Vec<Value> = s
                .pods
                .values()
                .filter(|p| matches(selector, namespace, p) && labels::matches(labels, p))
                .cloned()
                .collect();
            (s.rv, items)
        };
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let Some(limit) = limit.filter(|l| *l < items.len()) {
            let rest = items.split_off(limit);
            s.next_continue += 1;
            let token = format!("c{}", s.next_continue);
            meta["continue"] = json!(token);
            meta["remainingItemCount"] = json!(rest.len());
            s.continues.insert(token, (rv, rest));
        }
        json_response(
            StatusCode::OK,
            &json!({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items}),
        )
    })
}

fn watch(
    shared: &Shared,
    namespace: Option<&str>,
    selector: super::store::Selector,
    q: &HashMap<String, String>,
    bookmarks: bool,
) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    let from = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    shared.with(|s| {
        let watcher = Watcher {
            namespace: namespace.map(str::to_owned),
            selector,
            bookmarks,
            tx,
        };
        match from.map(|v| v.parse::<u64>()) {
            Some(Ok(rv)) if rv >= s.compacted => {
                for change in s.history.iter().filter(|(at, ..)| *at > rv) {
                    if let Some(l) = watch_line(&watcher, change) {
                        let _ = watcher.tx.send(WatchMsg::Line(l));
                    }
                }
                s.watchers.push(watcher);
            }
            Some(_) => {
                // What the API server does for a resourceVersion it no longer has: 200, then
                // an ERROR event with a 410 Status, then the end of the stream.
                let message = format!(
                    "too old resource version: {} ({})",
                    from.map_or("", String::as_str),
                    s.compacted
                );
                let gone = json!({"type": "ERROR", "object": status(410, "Expired", &message)});
                let _ = watcher.tx.send(WatchMsg::Line(line(&gone)));
                let _ = watcher.tx.send(WatchMsg::End);
            }
            None => {
                for obj in s.pods.values() {
                    if matches(&watcher.selector, watcher.namespace.as_deref(), obj) {
                        let added = json!({"type": "ADDED", "object": obj});
                        let _ = watcher.tx.send(WatchMsg::Line(line(&added)));
                    }
                }
                s.watchers.push(watcher);
            }
        }
    });
    watch_stream(rx, timeout)
}

/// A chunked watch response streaming what `rx` gets, ended after `timeout` (the client's
/// `timeoutSeconds`) like the API server's.
pub fn watch_stream(
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    timeout: Option<Duration>,
) -> Response<Body> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let frames = stream::unfold((rx, deadline), |(mut rx, deadline)| async move {
        let msg = match deadline {
            Some(at) => tokio::time::timeout_at(at, rx.recv()).await.ok().flatten(),
            None => rx.recv().await,
        };
        match msg {
            Some(WatchMsg::Line(bytes)) => Some((Ok(Frame::data(bytes)), (rx, deadline))),
            Some(WatchMsg::Abort) => Some((
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "watch dropped by the double",
                )),
                (rx, deadline),
            )),
            Some(WatchMsg::End) | None => None,
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(StreamBody::new(frames).boxed())
        .unwrap_or_default()
}

/// For the tests' own objects: the key they are stored under.
pub fn object_key(obj: &Value) -> (String, String) {
    key_of(obj)
}
