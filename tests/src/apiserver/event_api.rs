//! Reading Events back: list and watch through core/v1 (`/api/v1/…/events`) and
//! events.k8s.io/v1 (`/apis/events.k8s.io/v1/…/events`) over the same stored objects, each
//! converted to the shape of the API asked (as the API server stores one Event and serves
//! it through both), with the field selectors each API supports.

use std::collections::HashMap;
use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::Shared;
use super::http::{Body, json_response, watch_stream};
use super::store::{Selector, WatchMsg, line, status};

/// The field labels of core/v1 Events (`pkg/apis/core/v1/conversion.go`); `source` is
/// `source.component`.
const CORE_FIELDS: [&str; 11] = [
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.name",
];

const NEW_FIELDS: [&str; 9] = [
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
];

/// An open Event watch.
#[derive(Debug)]
pub struct EventWatcher {
    pub namespace: Option<String>,
    pub selector: Selector,
    pub new_api: bool,
    pub tx: mpsc::UnboundedSender<WatchMsg>,
}

fn pick(obj: &Map<String, Value>, out: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
        out.insert(to.to_owned(), v.clone());
    }
}

/// The stored Event in the shape of the API asked.
#[must_use]
pub fn shaped(event: &Value, new_api: bool) -> Value {
    let Some(obj) = event.as_object() else {
        return event.clone();
    };
    let is_new =
        obj.contains_key("regarding") || obj.get("apiVersion") == Some(&json!("events.k8s.io/v1"));
    if is_new == new_api {
        return event.clone();
    }
    let mut out = Map::new();
    for key in [
        "metadata",
        "reason",
        "type",
        "action",
        "related",
        "eventTime",
        "series",
    ] {
        pick(obj, &mut out, key, key);
    }
    if new_api {
        out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
        pick(obj, &mut out, "involvedObject", "regarding");
        pick(obj, &mut out, "message", "note");
        pick(obj, &mut out, "source", "deprecatedSource");
        pick(obj, &mut out, "firstTimestamp", "deprecatedFirstTimestamp");
        pick(obj, &mut out, "lastTimestamp", "deprecatedLastTimestamp");
        pick(obj, &mut out, "count", "deprecatedCount");
        let controller = obj
            .get("reportingComponent")
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            .or_else(|| obj.get("source").and_then(|s| s.get("component")));
        if let Some(c) = controller {
            out.insert("reportingController".into(), c.clone());
        }
        pick(obj, &mut out, "reportingInstance", "reportingInstance");
    } else {
        out.insert("apiVersion".into(), json!("v1"));
        pick(obj, &mut out, "regarding", "involvedObject");
        pick(obj, &mut out, "note", "message");
        pick(obj, &mut out, "deprecatedSource", "source");
        pick(obj, &mut out, "deprecatedFirstTimestamp", "firstTimestamp");
        pick(obj, &mut out, "deprecatedLastTimestamp", "lastTimestamp");
        pick(obj, &mut out, "deprecatedCount", "count");
        pick(obj, &mut out, "reportingController", "reportingComponent");
        pick(obj, &mut out, "reportingInstance", "reportingInstance");
    }
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

pub fn parse(s: &str, new_api: bool) -> Result<Selector, String> {
    let supported: &[&str] = if new_api { &NEW_FIELDS } else { &CORE_FIELDS };
    let mut terms = Vec::new();
    for term in s.split(',').filter(|t| !t.is_empty()) {
        let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, true, v)
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            ));
        };
        if !supported.contains(&field) && field != "metadata.namespace" {
            return Err(format!("field label not supported: {field}"));
        }
        terms.push((field.to_owned(), eq, value.to_owned()));
    }
    Ok(terms)
}

/// Whether the Event, in the shape of its API, is in the namespace and matches the selector.
pub fn matches(selector: &Selector, namespace: Option<&str>, shaped: &Value) -> bool {
    if namespace.is_some_and(|ns| shaped["metadata"]["namespace"].as_str() != Some(ns)) {
        return false;
    }
    selector.iter().all(|(field, eq, value)| {
        let path = if field == "source" {
            "source.component"
        } else {
            field.as_str()
        };
        let v = path.split('.').fold(shaped, |v, part| &v[part]);
        (v.as_str().unwrap_or_default() == value) == *eq
    })
}

/// The watch line a watcher sees for a change of a stored Event.
pub fn watch_line(
    w: &EventWatcher,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Option<bytes::Bytes> {
    let is = |o: Option<&Value>| {
        o.is_some_and(|o| matches(&w.selector, w.namespace.as_deref(), &shaped(o, w.new_api)))
    };
    let (kind, obj) = match (is(before), is(after)) {
        (false, true) => ("ADDED", after?),
        (true, true) => ("MODIFIED", after?),
        (true, false) => ("DELETED", after.or(before)?),
        (false, false) => return None,
    };
    Some(line(
        &json!({"type": kind, "object": shaped(obj, w.new_api)}),
    ))
}

/// A GET of an Event collection, through either API; `None` for any other path.
pub fn route(
    shared: &Shared,
    segments: &[&str],
    q: &HashMap<String, String>,
) -> Option<Response<Body>> {
    let (namespace, new_api) = match segments {
        ["api", "v1", "events"] => (None, false),
        ["api", "v1", "namespaces", ns, "events"] => (Some(*ns), false),
        ["apis", "events.k8s.io", "v1", "events"] => (None, true),
        ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"] => (Some(*ns), true),
        _ => return None,
    };
    Some(collection(shared, namespace, q, new_api))
}

/// GET of an Event collection: a list, or a watch with `watch=true`.
pub fn collection(
    shared: &Shared,
    namespace: Option<&str>,
    q: &HashMap<String, String>,
    new_api: bool,
) -> Response<Body> {
    let selector = match parse(q.get("fieldSelector").map_or("", String::as_str), new_api) {
        Ok(s) => s,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &status(400, "BadRequest", &e)),
    };
    let watching = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    if !watching {
        return shared.read(|s| {
            let items: Vec<Value> = s
                .events
                .values()
                .map(|e| shaped(e, new_api))
                .filter(|e| matches(&selector, namespace, e))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": "EventList",
                        "apiVersion": if new_api { "events.k8s.io/v1" } else { "v1" },
                        "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            )
        });
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let from = q
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0);
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    shared.with(|s| {
        let watcher = EventWatcher {
            namespace: namespace.map(str::to_owned),
            selector,
            new_api,
            tx,
        };
        match from {
            Some(rv) => {
                for (at, before, after) in &s.event_history {
                    if *at > rv
                        && let Some(l) = watch_line(&watcher, before.as_ref(), after.as_ref())
                    {
                        let _ = watcher.tx.send(WatchMsg::Line(l));
                    }
                }
            }
            None => {
                for e in s.events.values() {
                    if let Some(l) = watch_line(&watcher, None, Some(e)) {
                        let _ = watcher.tx.send(WatchMsg::Line(l));
                    }
                }
            }
        }
        s.event_watchers.push(watcher);
    });
    watch_stream(rx, timeout)
}
