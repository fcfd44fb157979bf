//! Kubernetes Events on the pod, posted by one task fed by a bounded queue.
//!
//! kube-rs's `Recorder` is not used, for three reasons found in its source (kube-runtime
//! 5.0.0, `events.rs`): a repeat of an Event it posted in the last six minutes becomes a PATCH
//! of `series.count` to "previous + 1", so deaths held back by our rate limit could never be
//! counted in; its dedup key ignores the note, so a repeat's words are silently dropped (the
//! API makes a note immutable, so that part is the server's rule, not a bug — we keep it); and
//! a PATCH of an Event the API server has expired fails forever until its cache forgets it.
//! This module talks the same protocol (events.k8s.io/v1 create, merge-patch of `series`) with
//! its own series book: per-container and node-wide token buckets, counts that include
//! held-back deaths, re-creation of expired Events.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::crashloop::{ContainerKey, Fold, LoopBook, LoopOptions, LoopOutcome};
use super::crashloop_line::LoopSample;
use super::crashloop_post::Writer;
use super::filter::{EventTypes, NamespaceFilter};
use super::ratelimit::Rate;
use super::series::{Death, Outcome, Request, SeriesBook};
use crate::kube::pods::Shared;
use crate::kube::stats::{add, bump};

/// What an Event's `action` says coroner did: it saw a process die.
pub const ACTION: &str = "Died";

#[derive(Clone, Debug)]
pub struct EventOptions {
    /// Deaths waiting for the poster; more are dropped and counted.
    pub queue_capacity: usize,
    /// Requests per container: a burst, then one per interval.
    pub per_container: Rate,
    /// Requests for the whole node.
    pub global: Rate,
    /// A death within this time of its series' last request joins the series.
    pub series_window: Duration,
    /// Series remembered at once.
    pub max_series: usize,
    /// Bound on one request to the API server.
    pub request_timeout: Duration,
    /// `reportingController` (a qualified name).
    pub reporting_controller: String,
    /// `reportingInstance`; the node name when `None`.
    pub reporting_instance: Option<String>,
    /// When a container's deaths become one crash-loop Event (`crashloop`).
    pub crash_loop: LoopOptions,
    /// Which deaths get an Event (`--events`).
    pub types: EventTypes,
    /// Whose pods get Events (`--namespaces`, `--exclude-namespaces`).
    pub namespaces: NamespaceFilter,
}

impl Default for EventOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            per_container: Rate {
                burst: 5,
                interval: Duration::from_mins(1),
            },
            global: Rate {
                burst: 50,
                interval: Duration::from_millis(100),
            },
            // The same window as kube-rs's Recorder and client-go's series.
            series_window: Duration::from_mins(6),
            max_series: 2048,
            request_timeout: Duration::from_secs(5),
            reporting_controller: "coroner".to_owned(),
            reporting_instance: None,
            crash_loop: LoopOptions::default(),
            types: EventTypes::default(),
            namespaces: NamespaceFilter::default(),
        }
    }
}

#[derive(Debug)]
pub(crate) enum Command {
    /// A death, with its sample when it is a container init's (see `crashloop`).
    Death(Box<Death>, Option<Box<LoopSample>>),
    Flush(oneshot::Sender<()>),
}

/// The posting task: one request at a time, each bounded by the request timeout.
pub(crate) async fn run(
    client: Client,
    options: EventOptions,
    instance: String,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Command>,
) {
    let mut poster = Poster {
        client,
        book: SeriesBook::new(
            options.per_container,
            options.global,
            options.series_window,
            options.max_series,
            Instant::now().into_std(),
        ),
        loops: LoopBook::new(options.crash_loop.clone()),
        options,
        instance,
        shared,
    };
    loop {
        let wake = [
            poster.book.next_due(Instant::now().into_std()),
            poster.loops.next_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            command = rx.recv() => match command {
                None => break,
                Some(Command::Death(death, sample)) => poster.death(*death, sample.map(|s| *s)).await,
                Some(Command::Flush(done)) => {
                    poster.send_due().await;
                    let _ = done.send(());
                }
            },
            () = sleep_until(wake), if wake.is_some() => poster.send_due().await,
        }
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(Instant::from_std(at)).await;
    }
}

struct Poster {
    client: Client,
    book: SeriesBook,
    loops: LoopBook,
    options: EventOptions,
    instance: String,
    shared: Arc<Shared>,
}

impl Poster {
    async fn death(&mut self, death: Death, sample: Option<LoopSample>) {
        let now = Instant::now().into_std();
        let container: ContainerKey = (death.pod_uid.clone(), death.container.clone());
        if self.loops.death(&container, &death.regarding, sample, now) == Fold::Folded {
            bump(&self.shared.counters.crash_loop_deaths);
            self.send_loops().await;
            return;
        }
        // After the fold: a Completed death still counts towards its container's crash loop.
        if !self.options.types.posts(death.warning) {
            bump(&self.shared.counters.events_filtered_type);
            return;
        }
        let (key, lost) = self.book.record(death, now);
        add(&self.shared.counters.events_lost_evicted, lost);
        match self.book.request_for(&key, now) {
            Some(request) => self.send(request).await,
            None => bump(&self.shared.counters.events_suppressed),
        }
    }

    async fn send_due(&mut self) {
        for request in self.book.due(Instant::now().into_std()) {
            self.send(request).await;
        }
        self.send_loops().await;
    }

    /// The crash-loop Events' writes that are due.
    async fn send_loops(&mut self) {
        for write in self.loops.due(Instant::now().into_std()) {
            let writer = Writer {
                client: &self.client,
                options: &self.options,
                instance: &self.instance,
            };
            let outcome = writer.perform(&write).await;
            let c = &self.shared.counters;
            match outcome {
                LoopOutcome::Created { .. } => bump(&c.crash_loop_events),
                LoopOutcome::Updated => bump(&c.crash_loop_updates),
                LoopOutcome::Gone => {}
                LoopOutcome::Failed => bump(&c.crash_loop_write_failures),
            }
            self.loops
                .settle(&write, outcome, Instant::now().into_std());
        }
    }

    async fn send(&mut self, request: Request) {
        let mut request = Some(request);
        while let Some(r) = request.take() {
            let outcome = self.perform(&r).await;
            let c = &self.shared.counters;
            match &outcome {
                Outcome::Created { .. } => bump(&c.events_posted),
                Outcome::Patched => bump(&c.events_series_updates),
                Outcome::Gone | Outcome::Failed => {}
            }
            let now = Instant::now().into_std();
            if matches!(outcome, Outcome::Created { .. } | Outcome::Patched) {
                let key = match &r {
                    Request::Create { key, .. } | Request::Patch { key, .. } => key,
                };
                self.loops
                    .wrote(&(key.pod_uid.clone(), key.container.clone()), now);
            }
            let (lost, retry) = self.book.settle(&r, outcome, now);
            add(&c.events_lost_post_failed, lost);
            request = retry;
        }
    }

    async fn perform(&self, request: &Request) -> Outcome {
        let timeout = self.options.request_timeout;
        match request {
            Request::Create { latest, count, .. } => {
                let event = self.new_event(latest, *count);
                let namespace = event.metadata.namespace.clone().unwrap_or_default();
                let name = event.metadata.name.clone().unwrap_or_default();
                let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
                match tokio::time::timeout(timeout, api.create(&PostParams::default(), &event))
                    .await
                {
                    Ok(Ok(_)) => Outcome::Created { namespace, name },
                    Ok(Err(e)) => failed("create", &name, &e),
                    Err(_) => failed("create", &name, &"timed out"),
                }
            }
            Request::Patch {
                namespace,
                name,
                count,
                ..
            } => {
                let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
                let series = EventSeries {
                    count: i32::try_from(*count).unwrap_or(i32::MAX),
                    last_observed_time: MicroTime(Timestamp::now()),
                };
                let body = serde_json::json!({ "series": series });
                let params = PatchParams::default();
                let patch = Patch::Merge(&body);
                match tokio::time::timeout(timeout, api.patch(name, &params, &patch)).await {
                    Ok(Ok(_)) => Outcome::Patched,
                    Ok(Err(kube::Error::Api(status))) if status.code == 404 => Outcome::Gone,
                    Ok(Err(e)) => failed("patch", name, &e),
                    Err(_) => failed("patch", name, &"timed out"),
                }
            }
        }
    }

    fn new_event(&self, death: &Death, count: u32) -> K8sEvent {
        let now = Timestamp::now();
        let pod = death.regarding.name.as_deref().unwrap_or("pod");
        let mut note = death.note.clone();
        if count > 1 {
            note = format!(
                "{note} (+{} more like it, held back by the rate limit)",
                count - 1
            );
            truncate(&mut note);
        }
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(event_name(pod)),
                namespace: death.regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            series: (count > 1).then(|| EventSeries {
                count: i32::try_from(count).unwrap_or(i32::MAX),
                last_observed_time: MicroTime(now),
            }),
            reporting_controller: Some(self.options.reporting_controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(ACTION.to_owned()),
            reason: Some(death.reason.to_owned()),
            note: Some(note),
            type_: Some(if death.warning { "Warning" } else { "Normal" }.to_owned()),
            regarding: Some(death.regarding.clone()),
            ..K8sEvent::default()
        }
    }
}

fn failed(what: &str, name: &str, error: &dyn std::fmt::Display) -> Outcome {
    warn!(event = name, "could not {what} a Kubernetes Event: {error}");
    Outcome::Failed
}

/// `<pod>.<unix nanos in hex>`, the way kubelet and kube-rs name Events; the pod part is cut so
/// the name stays a valid object name.
pub(crate) fn event_name(pod: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut end = pod.len().min(253 - 33);
    while !pod.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}.{nanos:x}", &pod[..end])
}

fn truncate(note: &mut String) {
    if note.len() > super::message::NOTE_MAX_BYTES {
        let mut end = super::message::NOTE_MAX_BYTES;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
}

/// The pod reference an Event is about, with the container in `fieldPath` like the kubelet's.
pub(crate) fn pod_reference(
    namespace: &str,
    pod: &str,
    uid: Option<&str>,
    field_path: Option<String>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(pod.to_owned()),
        uid: uid.map(str::to_owned),
        field_path,
        ..ObjectReference::default()
    }
}

pub(crate) fn log_unlabelled(pod_uid: Option<&str>) {
    debug!(
        pod_uid,
        "no Event: the pod's namespace and name are unknown"
    );
}
