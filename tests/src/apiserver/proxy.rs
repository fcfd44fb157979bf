//! Single pods, the pod proxy and the workloads the plugin reads: `GET …/pods/NAME`,
//! `GET …/pods/NAME:PORT/proxy/PATH` forwarded to the pod's IP as the API server forwards it
//! (its errors as the API server words them), Deployments and `ReplicaSet` lists; RBAC's 403
//! where a test forbade a path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use super::http::{Body, json_response};
use super::labels;
use super::store::status;

/// How long the proxied backend may take, as a bound on a hung test.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A GET this module answers; `None` for any other path.
pub async fn route(
    shared: &Shared,
    segments: &[&str],
    q: &HashMap<String, String>,
    raw_query: &str,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    match segments {
        ["api", "v1", "namespaces", ns, "pods", name] => Some(get_pod(shared, ns, name)),
        [
            "api",
            "v1",
            "namespaces",
            ns,
            "pods",
            target,
            "proxy",
            rest @ ..,
        ] => Some(forward(shared, ns, target, &rest.join("/"), raw_query, headers).await),
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name] => {
            Some(shared.read(|s| match s.deployments.get(&key(ns, name)) {
                Some(d) => json_response(StatusCode::OK, d),
                None => not_found("deployments.apps", name),
            }))
        }
        ["apis", "apps", "v1", "namespaces", ns, "replicasets"] => {
            Some(list_replicasets(shared, ns, q))
        }
        _ => None,
    }
}

/// RBAC's 403 for a path the test forbade.
pub fn forbidden(shared: &Shared, path: &str) -> Option<Response<Body>> {
    let message = shared.read(|s| {
        s.forbidden
            .iter()
            .find(|(part, _)| path.contains(part.as_str()))
            .map(|(_, message)| message.clone())
    })?;
    Some(json_response(
        StatusCode::FORBIDDEN,
        &status(403, "Forbidden", &message),
    ))
}

fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_owned(), name.to_owned())
}

/// The API server's 404 of a named object.
pub fn not_found(resource: &str, name: &str) -> Response<Body> {
    let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
    let mut body = status(404, "NotFound", &format!("{resource} \"{name}\" not found"));
    body["details"] = json!({"name": name, "group": group, "kind": kind});
    json_response(StatusCode::NOT_FOUND, &body)
}

fn get_pod(shared: &Shared, ns: &str, name: &str) -> Response<Body> {
    shared.read(|s| match s.pods.get(&key(ns, name)) {
        Some(pod) => json_response(StatusCode::OK, pod),
        None => not_found("pods", name),
    })
}

fn list_replicasets(shared: &Shared, ns: &str, q: &HashMap<String, String>) -> Response<Body> {
    let selector = match labels::parse(q.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &status(400, "BadRequest", &e)),
    };
    shared.read(|s| {
        let items: Vec<&Value> = s
            .replicasets
            .iter()
            .filter(|((n, _), rs)| n == ns && labels::matches(&selector, rs))
            .map(|(_, rs)| rs)
            .collect();
        json_response(
            StatusCode::OK,
            &json!({"kind": "ReplicaSetList", "apiVersion": "apps/v1",
                    "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
        )
    })
}

/// `NAME:PORT` (or `http:NAME:PORT`) to the pod's `status.podIP`, the path and query as given,
/// with the caller's headers as the API server passes them on: without `Authorization` (its
/// authentication filter removes it once the caller is authenticated), `Impersonate-*` (the
/// impersonation filter's) and the hop-by-hop ones.
async fn forward(
    shared: &Shared,
    ns: &str,
    target: &str,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let parts: Vec<&str> = target.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [name, port] | ["http", name, port] => (*name, *port),
        [name] => (*name, ""),
        _ => return bad_request(&format!("invalid pod proxy target {target:?}")),
    };
    let Some(pod) = shared.read(|s| s.pods.get(&key(ns, name)).cloned()) else {
        return not_found("pods", name);
    };
    let Some(ip) = pod["status"]["podIP"].as_str().filter(|ip| !ip.is_empty()) else {
        return bad_request("address not allowed");
    };
    let Ok(port) = port.parse::<u16>() else {
        return bad_request(&format!("no port {port:?} on pod {name}"));
    };
    let Ok(addr) = format!("{ip}:{port}").parse::<SocketAddr>() else {
        return bad_request("address not allowed");
    };
    let mut target = format!("/{path}");
    if !raw_query.is_empty() {
        target.push('?');
        target.push_str(raw_query);
    }
    let passed = passed_on(headers);
    match tokio::time::timeout(BACKEND_TIMEOUT, exchange(addr, &target, &passed)).await {
        Ok(Ok((code, content_type, body))) => Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(body).map_err(|e| match e {}).boxed())
            .unwrap_or_default(),
        // What the API server's proxy transport answers when it cannot dial the pod.
        Ok(Err(e)) => unavailable(&format!(
            "error trying to reach service: dial tcp {addr}: {e}"
        )),
        Err(_) => unavailable(&format!(
            "error trying to reach service: dial tcp {addr}: i/o timeout"
        )),
    }
}

fn bad_request(message: &str) -> Response<Body> {
    json_response(StatusCode::BAD_REQUEST, &status(400, "BadRequest", message))
}

fn unavailable(message: &str) -> Response<Body> {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &status(503, "ServiceUnavailable", message),
    )
}

/// The request headers the proxy sends on, as `Name: value\r\n` lines.
fn passed_on(headers: &HeaderMap) -> String {
    const DROPPED: [&str; 11] = [
        "authorization",
        "host",
        "accept",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    let mut lines = String::new();
    for (name, value) in headers {
        let name = name.as_str();
        if DROPPED.contains(&name) || name.starts_with("impersonate-") {
            continue;
        }
        if let Ok(value) = value.to_str() {
            lines.push_str(name);
            lines.push_str(": ");
            lines.push_str(value);
            lines.push_str("\r\n");
        }
    }
    lines
}

/// One HTTP/1.0 GET: status, content type, body.
async fn exchange(
    addr: SocketAddr,
    target: &str,
    headers: &str,
) -> std::io::Result<(StatusCode, String, Bytes)> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            std::io::Error::new(e.kind(), "connect: connection refused")
        }
        _ => e,
    })?;
    stream
        .write_all(
            format!(
                "GET {target} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n{headers}\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let invalid =
        || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(invalid)?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(invalid)?;
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
        .map_or_else(|| "text/plain".to_owned(), |(_, v)| v.trim().to_owned());
    Ok((code, content_type, Bytes::copy_from_slice(&raw[end + 4..])))
}
