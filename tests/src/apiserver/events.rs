//! Event creation and patches through both APIs, validated the way the API server validates
//! them (pkg/apis/core/validation/events.go): the legacy checks for every Event, and for
//! events.k8s.io/v1 requests the strict ones — required fields, immutable fields on update
//! (the note among them), `series.count` ≥ 2. A core/v1 update may change the message.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use super::event_api::shaped;
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

/// `legacyValidateEvent`: what every create and update must pass, through either API. An
/// Event without `eventTime` (the old kind) only needs its namespaces to agree; one with it
/// needs the reporting fields and the lengths.
fn validate_legacy(event: &Value, namespace: &str, new_api: bool) -> Result<(), String> {
    let text = |field: &str| event[field].as_str().unwrap_or_default();
    let meta_ns = event["metadata"]["namespace"].as_str().unwrap_or(namespace);
    if meta_ns != namespace {
        return Err("metadata.namespace does not match the namespace of the request".into());
    }
    let (regarding, controller, note) = if new_api {
        ("regarding", "reportingController", "note")
    } else {
        ("involvedObject", "reportingComponent", "message")
    };
    let regarding_ns = event[regarding]["namespace"].as_str().unwrap_or_default();
    if event["eventTime"].is_null() {
        let mismatch = if regarding_ns.is_empty() {
            !matches!(namespace, "" | "default")
        } else {
            regarding_ns != namespace
        };
        if mismatch {
            return Err(format!(
                "{regarding}.namespace: does not match event.namespace"
            ));
        }
        return Ok(());
    }
    if regarding_ns.is_empty() && !matches!(namespace, "default" | "kube-system") {
        return Err(format!(
            "{regarding}.namespace: does not match event.namespace"
        ));
    }
    for (field, max) in [
        (controller, 253),
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
    if text(note).len() > 1024 {
        return Err(format!("{note}: can have at most 1024 characters"));
    }
    Ok(())
}

/// `ValidateEventCreate`: the legacy checks, then, for events.k8s.io/v1 only, the strict ones
/// (a name, `eventTime`, the type, the deprecated fields unset, the series).
fn validate(event: &Value, namespace: &str, new_api: bool) -> Result<(), String> {
    validate_legacy(event, namespace, new_api)?;
    // The generic registry's rule, for both APIs.
    if event["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return Err("metadata.name: Required value".into());
    }
    if !new_api {
        return Ok(());
    }
    if event["eventTime"].is_null() {
        return Err("eventTime: Required value".into());
    }
    let kind = event["type"].as_str().unwrap_or_default();
    if !matches!(kind, "Normal" | "Warning") {
        return Err(format!("type: has invalid value: {kind}"));
    }
    for field in [
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
        "deprecatedSource",
    ] {
        if !event[field].is_null() {
            return Err(format!("{field}: needs to be unset"));
        }
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
            new_api,
            at: std::time::Instant::now(),
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

/// Fields an events.k8s.io/v1 update may not change (`ValidateEventUpdate`); a core/v1
/// update gets the legacy checks only, so its `message`, `count` and `lastTimestamp` may
/// change: how the kubelet's repeated Events are counted up.
const IMMUTABLE: [&str; 13] = [
    "regarding",
    "reason",
    "note",
    "deprecatedSource",
    "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp",
    "deprecatedCount",
    "type",
    "eventTime",
    "action",
    "related",
    "reportingController",
    "reportingInstance",
];

/// A merge patch of a stored Event through either API, validated as that API validates an
/// update; the Event is stored in the shape of the API that wrote it last.
pub fn patch(
    shared: &Shared,
    namespace: &str,
    name: &str,
    body: &Bytes,
    new_api: bool,
) -> Response<Body> {
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
        let Some(old) = s.events.get(&key).map(|e| shaped(e, new_api)) else {
            let resource = if new_api {
                "events.events.k8s.io"
            } else {
                "events"
            };
            return json_response(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
            );
        };
        let mut new = old.clone();
        merge(&mut new, &patch);
        if let Err(e) = validate_legacy(&new, namespace, new_api) {
            return invalid(&e);
        }
        if new_api {
            if let Some(field) = IMMUTABLE.iter().find(|f| old[**f] != new[**f]) {
                return invalid(&format!("{field}: Forbidden: field is immutable"));
            }
            if old["series"] != new["series"]
                && let Err(e) = validate_series(&new)
            {
                return invalid(&e);
            }
        }
        s.event_requests.push(EventRequest {
            method: "PATCH".into(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            body: patch,
            new_api,
            at: std::time::Instant::now(),
        });
        let new = s.put_event(key, new);
        json_response(StatusCode::OK, &new)
    })
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
