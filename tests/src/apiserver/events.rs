//! Event creation and series patches, validated the way the API server validates
//! events.k8s.io/v1 Events (pkg/apis/core/validation/events.go): required fields, lengths,
//! immutable fields on update, `series.count` ≥ 2.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use super::http::{Body, json_response};
use super::store::{EventRequest, status};

fn invalid(message: &str) -> Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &status(422, "Invalid", message),
    )
}

fn failing() -> Response<Body> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &status(
            500,
            "InternalError",
            "the double was told to fail Event requests",
        ),
    )
}

/// The checks of a new events.k8s.io/v1 Event; core/v1 Events get the legacy subset.
fn validate(event: &Value, namespace: &str, new_api: bool) -> Result<(), String> {
    let text = |field: &str| event[field].as_str().unwrap_or_default();
    let meta_ns = event["metadata"]["namespace"].as_str().unwrap_or(namespace);
    if meta_ns != namespace {
        return Err("metadata.namespace does not match the namespace of the request".into());
    }
    if event["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return Err("metadata.name: Required value".into());
    }
    let regarding = if new_api {
        "regarding"
    } else {
        "involvedObject"
    };
    if event[regarding]["namespace"].as_str().unwrap_or_default() != namespace {
        return Err(format!(
            "{regarding}.namespace: does not match event.namespace"
        ));
    }
    if !new_api {
        return Ok(());
    }
    if event["eventTime"].is_null() {
        return Err("eventTime: Required value".into());
    }
    for (field, max) in [
        ("reportingController", 253),
        ("reportingInstance", 128),
        ("action", 128),
        ("reason", 128),
    ] {
        let value = text(field);
        if value.is_empty() {
            return Err(format!("{field}: Required value"));
        }
        if value.len() > max {
            return Err(format!("{field}: can have at most {max} characters"));
        }
    }
    if text("note").len() > 1024 {
        return Err("note: can have at most 1024 characters".into());
    }
    if !matches!(text("type"), "Normal" | "Warning") {
        return Err(format!("type: has invalid value: {}", text("type")));
    }
    validate_series(event)
}

fn validate_series(event: &Value) -> Result<(), String> {
    let series = &event["series"];
    if series.is_null() {
        return Ok(());
    }
    if series["count"].as_i64().unwrap_or(0) < 2 {
        return Err("series.count: should be at least 2".into());
    }
    if series["lastObservedTime"].is_null() {
        return Err("series.lastObservedTime: Required value".into());
    }
    Ok(())
}

pub fn create(shared: &Shared, namespace: &str, body: &Bytes, new_api: bool) -> Response<Body> {
    let Ok(mut event) = serde_json::from_slice::<Value>(body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &status(400, "BadRequest", "not JSON"),
        );
    };
    if let Err(e) = validate(&event, namespace, new_api) {
        return invalid(&e);
    }
    shared.with(|s| {
        if s.fail_events {
            return failing();
        }
        let name = event["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (namespace.to_owned(), name.clone());
        if s.events.contains_key(&key) {
            return json_response(
                StatusCode::CONFLICT,
                &status(
                    409,
                    "AlreadyExists",
                    &format!("events \"{name}\" already exists"),
                ),
            );
        }
        let meta = &mut event["metadata"];
        meta["namespace"] = json!(namespace);
        meta["uid"] = json!(format!("event-uid-{}", s.rv + 1));
        s.event_requests.push(EventRequest {
            method: "POST".into(),
            namespace: namespace.to_owned(),
            name,
            body: serde_json::from_slice(body).unwrap_or_default(),
        });
        let event = s.put_event(key, event);
        json_response(StatusCode::CREATED, &event)
    })
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in fields {
        if v.is_null() {
            if let Some(obj) = target.as_object_mut() {
                obj.remove(k);
            }
        } else {
            merge(&mut target[k.as_str()], v);
        }
    }
}

/// Fields an update may not change (the API server's `ValidateEventUpdate` for v1).
const IMMUTABLE: [&str; 8] = [
    "note",
    "reason",
    "type",
    "action",
    "regarding",
    "related",
    "reportingController",
    "reportingInstance",
];

pub fn patch(shared: &Shared, namespace: &str, name: &str, body: &Bytes) -> Response<Body> {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &status(400, "BadRequest", "not JSON"),
        );
    };
    shared.with(|s| {
        if s.fail_events {
            return failing();
        }
        let key = (namespace.to_owned(), name.to_owned());
        let Some(old) = s.events.get(&key).cloned() else {
            return json_response(
                StatusCode::NOT_FOUND,
                &status(
                    404,
                    "NotFound",
                    &format!("events.events.k8s.io \"{name}\" not found"),
                ),
            );
        };
        let mut new = old.clone();
        merge(&mut new, &patch);
        if let Some(field) = IMMUTABLE.iter().find(|f| old[**f] != new[**f]) {
            return invalid(&format!("{field}: Forbidden: field is immutable"));
        }
        if let Err(e) = validate_series(&new) {
            return invalid(&e);
        }
        s.event_requests.push(EventRequest {
            method: "PATCH".into(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            body: patch,
        });
        let new = s.put_event(key, new);
        json_response(StatusCode::OK, &new)
    })
}
