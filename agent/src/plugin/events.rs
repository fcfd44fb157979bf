//! The fallback when no agent has a pod's records (the agent restarted and its ring is empty,
//! the pod or its node is gone): the Events coroner posted on the pod (kube/recorder/poster.rs writes
//! them: events.k8s.io/v1, `reportingController` coroner, `action` Died, the verdict as
//! `reason`, the cause of death in one line as `note`, repeats counted in `series`). They live
//! as long as the API server keeps Events (`--event-ttl`, one hour by default).

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;
use time::OffsetDateTime;

use super::error::{Access, PluginError};

/// One of coroner's Events about a pod.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeathEvent {
    /// The last death it counts (`series.lastObservedTime`, else `eventTime`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub time: Option<OffsetDateTime>,
    pub pod: String,
    /// From `regarding.fieldPath` (`spec.containers{NAME}`).
    pub container: Option<String>,
    /// `Warning` or `Normal`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The verdict.
    pub reason: String,
    /// Deaths it stands for (`series.count`, 1 without a series).
    pub count: u32,
    pub note: String,
    /// The Event's name, for `kubectl get event NAME -o yaml`.
    pub name: String,
}

/// coroner's Events about pod `pod` in `namespace`, newest first.
pub async fn of_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    controller: &str,
) -> Result<Vec<DeathEvent>, PluginError> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    // The reporting controller is filtered here too: a selector is a request, and other
    // components' Events must never read as coroner's.
    let params = ListParams::default().fields(&format!("regarding.kind=Pod,regarding.name={pod}"));
    let list = api.list(&params).await.map_err(|e| {
        let access = Access {
            verb: "list",
            resource: "events.events.k8s.io",
            namespace: namespace.to_owned(),
        };
        PluginError::from_kube(access, e)
    })?;
    let mut events: Vec<DeathEvent> = list
        .items
        .iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(controller))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .map(death_event)
        .collect();
    sort_newest_first(&mut events);
    Ok(events)
}

pub fn sort_newest_first(events: &mut [DeathEvent]) {
    events.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.name.cmp(&b.name)));
}

fn death_event(e: &Event) -> DeathEvent {
    let micro = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime| {
        OffsetDateTime::from_unix_timestamp_nanos(t.0.as_nanosecond()).ok()
    };
    let time = e
        .series
        .as_ref()
        .and_then(|s| micro(&s.last_observed_time))
        .or_else(|| e.event_time.as_ref().and_then(micro));
    let regarding = e.regarding.as_ref();
    DeathEvent {
        time,
        pod: regarding.and_then(|r| r.name.clone()).unwrap_or_default(),
        container: regarding
            .and_then(|r| r.field_path.as_deref())
            .and_then(container_of),
        type_: e.type_.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        count: e
            .series
            .as_ref()
            .and_then(|s| u32::try_from(s.count).ok())
            .unwrap_or(1),
        note: e.note.clone().unwrap_or_default(),
        name: e.metadata.name.clone().unwrap_or_default(),
    }
}

/// `spec.containers{api}` → `api` (also init and ephemeral containers).
fn container_of(field_path: &str) -> Option<String> {
    let (_, rest) = field_path.split_once('{')?;
    rest.strip_suffix('}').map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::EventSeries;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    use super::*;

    #[test]
    fn an_event_reads_as_the_deaths_it_counts() {
        let at = "2026-12-03T14:02:11.5Z".parse().unwrap();
        let e = Event {
            metadata: ObjectMeta {
                name: Some("web-0.1a".into()),
                ..ObjectMeta::default()
            },
            regarding: Some(ObjectReference {
                name: Some("web-0".into()),
                field_path: Some("spec.initContainers{setup}".into()),
                ..ObjectReference::default()
            }),
            reason: Some("OOMKilled".into()),
            type_: Some("Warning".into()),
            note: Some("OOMKilled by the kernel".into()),
            series: Some(EventSeries {
                count: 3,
                last_observed_time: MicroTime(at),
            }),
            ..Event::default()
        };
        let d = death_event(&e);
        assert_eq!(d.container.as_deref(), Some("setup"));
        assert_eq!(d.count, 3);
        assert_eq!(
            d.time.map(OffsetDateTime::unix_timestamp_nanos),
            Some(1_796_306_531_500_000_000)
        );
        assert_eq!(container_of("spec.containers"), None);
    }
}
