//! The crash-loop Event on the wire: a core/v1 Event created once, then merge-patched in
//! place (`message`, `count`, `lastTimestamp`), the way client-go's legacy correlator updates
//! the kubelet's repeated Events. core/v1, because only its updates may change the message
//! (see `crashloop`).

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use time::OffsetDateTime;
use tracing::warn;

use super::crashloop::{LOOP_REASON, LoopOutcome, LoopWrite};
use super::poster::{ACTION, EventOptions, event_name};

/// Who writes: the controller and the node, as in the per-death Events.
pub(crate) struct Writer<'a> {
    pub client: &'a Client,
    pub options: &'a EventOptions,
    pub instance: &'a str,
}

impl Writer<'_> {
    pub async fn perform(&self, write: &LoopWrite) -> LoopOutcome {
        let timeout = self.options.request_timeout;
        let namespace = write.regarding.namespace.clone().unwrap_or_default();
        match &write.target {
            None => {
                let event = self.new_event(write);
                let name = event.metadata.name.clone().unwrap_or_default();
                let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &namespace);
                match tokio::time::timeout(timeout, api.create(&PostParams::default(), &event))
                    .await
                {
                    Ok(Ok(_)) => LoopOutcome::Created { namespace, name },
                    Ok(Err(e)) => failed("create", &name, &e),
                    Err(_) => failed("create", &name, &"timed out"),
                }
            }
            Some((namespace, name)) => {
                let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), namespace);
                let body = serde_json::json!({
                    "message": write.message,
                    "count": write.count,
                    "lastTimestamp": Time(timestamp(write.last)),
                });
                let params = PatchParams::default();
                let patch = Patch::Merge(&body);
                match tokio::time::timeout(timeout, api.patch(name, &params, &patch)).await {
                    Ok(Ok(_)) => LoopOutcome::Updated,
                    Ok(Err(kube::Error::Api(status))) if status.code == 404 => LoopOutcome::Gone,
                    Ok(Err(e)) => failed("update", name, &e),
                    Err(_) => failed("update", name, &"timed out"),
                }
            }
        }
    }

    fn new_event(&self, write: &LoopWrite) -> CoreEvent {
        let pod = write.regarding.name.as_deref().unwrap_or("pod");
        CoreEvent {
            metadata: ObjectMeta {
                name: Some(event_name(pod)),
                namespace: write.regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            involved_object: write.regarding.clone(),
            reason: Some(LOOP_REASON.to_owned()),
            message: Some(write.message.clone()),
            type_: Some("Warning".to_owned()),
            count: Some(i32::try_from(write.count).unwrap_or(i32::MAX)),
            first_timestamp: Some(Time(timestamp(write.first))),
            last_timestamp: Some(Time(timestamp(write.last))),
            // `source` is what `kubectl describe` shows as "From".
            source: Some(EventSource {
                component: Some(self.options.reporting_controller.clone()),
                host: Some(self.instance.to_owned()),
            }),
            reporting_component: Some(self.options.reporting_controller.clone()),
            reporting_instance: Some(self.instance.to_owned()),
            action: Some(ACTION.to_owned()),
            ..CoreEvent::default()
        }
    }
}

fn timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(t.unix_timestamp_nanos()).unwrap_or_else(|_| Timestamp::now())
}

fn failed(what: &str, name: &str, error: &dyn std::fmt::Display) -> LoopOutcome {
    warn!(event = name, "could not {what} a crash-loop Event: {error}");
    LoopOutcome::Failed
}
