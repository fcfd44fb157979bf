//! The kubelet's and the controllers' publications → who decided a death (`initiator`) and
//! the grace period it was given (`grace_allowed_seconds`).
//!
//! The pod's own state (deletion, `DisruptionTarget`, status reason, grace periods) comes with
//! the node's pod watch and sits in the index ([`PodTermination`]); most deaths a deletion,
//! an eviction or a shutdown caused are decided from it without a request. A container the
//! kubelet restarted while its pod lives on (probe, changed definition) is told only by its
//! `Killing` Event: the Events of that one pod are listed (`involvedObject.uid`), then watched
//! from the list's resourceVersion — the Event is written before the stop signal, but may
//! reach the API server after the death — until the decision is settled or the record's
//! bounded wait is over. Only this node's pods, only when a record asks.

mod decide;
mod pod_state;
mod published;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use tokio::time::Instant;
use tracing::debug;

pub use decide::{DeathView, Decision, decide, without_api};
pub use pod_state::{PodTermination, UnixMs};
pub use published::KubeletEvent;

use super::pods::Found;
use super::pods::Shared;
use super::stats::bump;
use crate::record::{Initiator, TerminationRecord};

/// Events of one pod kept while a record waits: a pod has a few dozen at most (the API server
/// counts repeats in place).
const MAX_EVENTS: usize = 256;

/// What a record asks: its pod, its container, when it was stopped and died.
#[derive(Clone, Debug)]
pub(crate) struct Question {
    pub pod_uid: String,
    pub namespace: String,
    pub container: Option<String>,
    pub kernel: Initiator,
    pub stopped_at: UnixMs,
    pub died_at: UnixMs,
}

fn unix_ms(t: time::OffsetDateTime) -> UnixMs {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl Question {
    /// `None` when the record needs no API (the kernel decided) or names no pod.
    pub fn of(record: &TerminationRecord) -> Option<Self> {
        if !record.initiator.needs_api() {
            return None;
        }
        let stopped = [record.sigterm_time, record.sigkill_time]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(record.time);
        Some(Question {
            pod_uid: record.pod_uid.clone()?,
            namespace: record.namespace.clone()?,
            container: record.container.clone(),
            kernel: record.initiator,
            stopped_at: unix_ms(stopped),
            died_at: unix_ms(record.time),
        })
    }

    fn death(&self) -> DeathView<'_> {
        DeathView {
            kernel: self.kernel,
            stopped_at: self.stopped_at,
            died_at: self.died_at,
            container: self.container.as_deref(),
        }
    }
}

/// Writes the decision into the record.
pub(crate) fn apply(record: &mut TerminationRecord, decision: Decision) {
    record.initiator = decision.initiator;
    record.grace_allowed_seconds = decision.grace_allowed_seconds;
}

/// The decision from the index alone; `None` when the pod is not known or the watch is down
/// (then only the kernel's part is known).
pub(crate) fn from_index(
    shared: &Shared,
    q: &Question,
    events: &[KubeletEvent],
) -> Option<Decision> {
    if !shared
        .counters
        .watch_up
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return None;
    }
    match shared.find(&q.pod_uid, "") {
        Found::Pod(pod) | Found::Container(pod, _) => {
            Some(decide(&q.death(), &pod.termination, events))
        }
        Found::Unknown => None,
    }
}

fn unanswered(q: &Question) -> Decision {
    Decision {
        initiator: without_api(q.kernel),
        grace_allowed_seconds: None,
        settled: true,
    }
}

/// Decides, waiting for the pod's state and its Events until `deadline` at the latest.
pub(crate) async fn explain(
    client: &Client,
    shared: &Shared,
    q: &Question,
    deadline: Instant,
) -> Decision {
    let Some(mut decision) = from_index(shared, q, &[]) else {
        return unanswered(q);
    };
    if decision.settled {
        return decision;
    }
    let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Event>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &q.namespace, &resource);
    let selector = format!("involvedObject.uid={}", q.pod_uid);
    let mut events = Vec::new();
    let list_params = ListParams::default().fields(&selector);
    let listed = tokio::time::timeout_at(deadline, api.list(&list_params));
    bump(&shared.counters.initiator_event_reads);
    let failed = || bump(&shared.counters.initiator_event_read_failures);
    let version = match listed.await {
        Ok(Ok(list)) => {
            events.extend(
                list.items
                    .iter()
                    .filter_map(|e| KubeletEvent::parse(&e.data))
                    .take(MAX_EVENTS),
            );
            list.metadata.resource_version
        }
        Ok(Err(e)) => {
            failed();
            debug!(pod_uid = %q.pod_uid, "listing the pod's Events: {e}");
            None
        }
        // Out of time: the wait is over, not the API server's fault.
        Err(_) => None,
    };
    let mut changes = shared.subscribe();
    if let Some(d) = from_index(shared, q, &events) {
        decision = d;
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    if decision.settled || remaining.is_zero() {
        return decision;
    }
    // The watch ends by itself shortly after the deadline; the select below ends first.
    let params = WatchParams::default().fields(&selector).timeout(
        u32::try_from(remaining.as_secs() + 1)
            .unwrap_or(290)
            .min(290),
    );
    let stream = match version {
        Some(v) => match tokio::time::timeout_at(deadline, api.watch(&params, &v)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                failed();
                debug!(pod_uid = %q.pod_uid, "watching the pod's Events: {e}");
                None
            }
            Err(_) => None,
        },
        None => None,
    };
    let mut stream = stream.map(Box::pin);
    loop {
        changes.borrow_and_update();
        tokio::select! {
            event = async {
                match stream.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => match event {
                Some(Ok(WatchEvent::Added(e) | WatchEvent::Modified(e))) => {
                    if events.len() < MAX_EVENTS && let Some(e) = KubeletEvent::parse(&e.data) {
                        events.push(e);
                    }
                }
                Some(Ok(_)) => continue,
                // Ended or failed: the pod's state may still tell.
                Some(Err(_)) | None => stream = None,
            },
            update = changes.changed() => if update.is_err() { return decision },
            () = tokio::time::sleep_until(deadline) => return decision,
        }
        match from_index(shared, q, &events) {
            Some(d) if d.settled => return d,
            Some(d) => decision = d,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_is_asked_only_where_the_api_can_tell() {
        let mut r = crate::export::recent::tests::record(Some("shop"), Some("api-1"), 7);
        r.pod_uid = Some("u1".into());
        r.initiator = Initiator::OomKiller;
        assert!(Question::of(&r).is_none());
        r.initiator = Initiator::Host;
        let q = Question::of(&r).unwrap();
        assert_eq!(
            (q.stopped_at, q.died_at),
            (unix_ms(r.time), unix_ms(r.time))
        );
        r.sigterm_time = Some(r.time - time::Duration::seconds(30));
        r.sigkill_time = Some(r.time - time::Duration::seconds(1));
        assert_eq!(
            Question::of(&r).unwrap().stopped_at,
            unix_ms(r.time) - 30_000
        );
        r.namespace = None;
        assert!(Question::of(&r).is_none(), "no pod known: nothing to ask");
    }
}
