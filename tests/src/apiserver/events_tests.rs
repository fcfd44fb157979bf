//! The update rule of `ValidateEventUpdate`, held here so that an agent that updates an
//! Event the real API server would refuse fails against the double too.

use std::sync::Mutex;

use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::*;
use crate::apiserver::store::Store;

fn shared() -> Shared {
    Shared {
        store: Mutex::new(Store::default()),
        changed: watch::Sender::new(0),
    }
}

fn bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn core_event() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "p.1", "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p"},
        "reason": "CrashLoop", "message": "Error 3× in 20s", "type": "Warning",
        "count": 3, "firstTimestamp": "2026-12-03T12:00:00Z",
        "lastTimestamp": "2026-12-03T12:00:20Z",
        "source": {"component": "coroner", "host": "n"},
        "reportingComponent": "coroner", "reportingInstance": "n", "action": "Died",
    })
}

fn new_event() -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "p.2", "namespace": "ns"},
        "regarding": {"kind": "Pod", "namespace": "ns", "name": "p"},
        "reason": "Error", "note": "Error: app exited with code 1", "type": "Warning",
        "eventTime": "2026-12-03T12:00:00.000000Z",
        "reportingController": "coroner", "reportingInstance": "n", "action": "Died",
    })
}

#[test]
fn a_core_v1_update_may_change_the_message_count_and_last_timestamp() {
    let s = shared();
    assert_eq!(
        create(&s, "ns", &bytes(&core_event()), false).status(),
        StatusCode::CREATED
    );
    let update = json!({"message": "Error 5× in 1m", "count": 5,
                        "lastTimestamp": "2026-12-03T12:01:00Z"});
    assert_eq!(
        patch(&s, "ns", "p.1", &bytes(&update), false).status(),
        StatusCode::OK
    );
    let stored = s
        .read(|st| st.events.values().next().cloned())
        .unwrap_or_default();
    assert_eq!(
        (stored["message"].clone(), stored["count"].clone()),
        (json!("Error 5× in 1m"), json!(5))
    );
}

#[test]
fn an_events_v1_update_may_not_change_the_note_nor_a_core_events_message_through_it() {
    let s = shared();
    assert_eq!(
        create(&s, "ns", &bytes(&new_event()), true).status(),
        StatusCode::CREATED
    );
    let note = json!({"note": "Error 5× in 1m"});
    assert_eq!(
        patch(&s, "ns", "p.2", &bytes(&note), true).status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Its series may change.
    let series = json!({"series": {"count": 2, "lastObservedTime": "2026-12-03T12:00:10.000000Z"}});
    assert_eq!(
        patch(&s, "ns", "p.2", &bytes(&series), true).status(),
        StatusCode::OK
    );
    // A core/v1 Event seen through events.k8s.io/v1: its note is the message, immutable there.
    assert_eq!(
        create(&s, "ns", &bytes(&core_event()), false).status(),
        StatusCode::CREATED
    );
    assert_eq!(
        patch(&s, "ns", "p.1", &bytes(&note), true).status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[test]
fn a_core_v1_update_still_gets_the_legacy_checks() {
    let s = shared();
    let mut event = core_event();
    event["eventTime"] = json!("2026-12-03T12:00:00.000000Z");
    assert_eq!(
        create(&s, "ns", &bytes(&event), false).status(),
        StatusCode::CREATED
    );
    let long = json!({"message": "x".repeat(1025)});
    assert_eq!(
        patch(&s, "ns", "p.1", &bytes(&long), false).status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let no_controller = json!({"reportingComponent": null});
    assert_eq!(
        patch(&s, "ns", "p.1", &bytes(&no_controller), false).status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}
