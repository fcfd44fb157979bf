//! The handle the agent keeps: connection, lookups, Events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::pods::{Found, IndexLimits, OwnerResolver, PodFacts, Shared};
use super::recorder::message::event_note;
use super::recorder::{self, Command, Death, LoopSample, log_unlabelled, pod_reference};
use super::stats::bump;
use super::{KubeMode, KubeOptions, LabelOutcome, Labelled, MAX_LABEL_WAIT, PodMetadata};
use crate::record::TerminationRecord;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("--kube on, but no Kubernetes config: {0}")]
    NoConfig(String),
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Reads the config per `mode` and starts watching; `Ok(None)` is standalone. Does not wait
/// for the API server: one that is down now is retried with backoff. Must run in a Tokio
/// runtime.
pub async fn connect(
    mode: KubeMode,
    options: KubeOptions,
) -> Result<Option<KubeClient>, KubeError> {
    if mode == KubeMode::Off {
        info!("--kube off: records carry no pod metadata");
        return Ok(None);
    }
    match load_config(options.kubeconfig.as_deref()).await {
        Ok((config, source)) => {
            info!(source, server = %config.cluster_url, node = %options.node_name, "Kubernetes API");
            KubeClient::start(config, options).map(Some)
        }
        Err(e) if mode == KubeMode::Auto => {
            warn!("no Kubernetes config, running standalone (no pod names, no Events): {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// An explicit kubeconfig, then `KUBECONFIG`, then in-cluster, then `~/.kube/config`: what an
/// operator names wins over what the environment happens to have.
async fn load_config(explicit: Option<&Path>) -> Result<(Config, &'static str), KubeError> {
    let defaults = KubeConfigOptions::default();
    if let Some(path) = explicit {
        let kubeconfig_error = |source| KubeError::Kubeconfig {
            path: path.display().to_string(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &defaults)
            .await
            .map_err(kubeconfig_error)?;
        return Ok((config, "kubeconfig"));
    }
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        let config =
            Config::from_kubeconfig(&defaults)
                .await
                .map_err(|source| KubeError::Kubeconfig {
                    path: "$KUBECONFIG".to_owned(),
                    source,
                })?;
        return Ok((config, "KUBECONFIG"));
    }
    let in_cluster = match Config::incluster() {
        Ok(config) => return Ok((config, "in-cluster")),
        Err(e) => e,
    };
    match Config::from_kubeconfig(&defaults).await {
        Ok(config) => Ok((config, "~/.kube/config")),
        Err(kubeconfig) => Err(KubeError::NoConfig(format!(
            "in-cluster: {in_cluster}; kubeconfig: {kubeconfig}"
        ))),
    }
}

/// Cheap to clone; the watch and the Event poster stop when the last clone is dropped.
#[derive(Clone)]
pub struct KubeClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) shared: Arc<Shared>,
    owners: OwnerResolver,
    pub(super) events: mpsc::Sender<Command>,
    waiting: Semaphore,
    pub(super) options: KubeOptions,
    tasks: [AbortHandle; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("node_name", &self.inner.options.node_name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl KubeClient {
    /// Starts the watch and the Event poster with this config. Must run in a Tokio runtime.
    pub fn start(config: Config, options: KubeOptions) -> Result<Self, KubeError> {
        let client = Client::try_from(config)?;
        let shared = Arc::new(Shared::new(IndexLimits {
            max_pods: options.max_pods.max(1),
            deleted_retention: options.deleted_retention,
        }));
        let watch = tokio::spawn(super::pods::watch(
            client.clone(),
            options.node_name.clone(),
            Arc::clone(&shared),
        ));
        let (tx, rx) = mpsc::channel(options.events.queue_capacity.max(1));
        let instance = options
            .events
            .reporting_instance
            .clone()
            .unwrap_or_else(|| {
                // events.k8s.io/v1 caps reportingInstance at 128 characters.
                options.node_name.chars().take(128).collect()
            });
        let poster = tokio::spawn(recorder::post(
            client.clone(),
            options.events.clone(),
            instance,
            Arc::clone(&shared),
            rx,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                owners: OwnerResolver::new(client.clone(), options.owners),
                client,
                waiting: Semaphore::new(options.max_waiting_lookups),
                shared,
                events: tx,
                options,
                tasks: [watch.abort_handle(), poster.abort_handle()],
            }),
        })
    }

    /// The rule for waiting on the API, one for everything a death waits for (its labels from
    /// the pod watch, who decided it from the kubelet's publications): a record waits until
    /// one deadline, the configured label wait from now (capped at [`MAX_LABEL_WAIT`]), for
    /// all of its lookups together, then is written with what is known.
    #[must_use]
    pub fn api_deadline(&self) -> Instant {
        Instant::now() + self.inner.options.label_wait.min(MAX_LABEL_WAIT)
    }

    /// [`Self::label_until`] `wait` from now (capped at [`MAX_LABEL_WAIT`]).
    pub async fn label(&self, pod_uid: &str, container_id: &str, wait: Duration) -> Labelled {
        let deadline = Instant::now() + wait.min(MAX_LABEL_WAIT);
        self.label_until(pod_uid, container_id, deadline).await
    }

    /// The labels of a container. When its id is not in the pod's status (yet) — it may reach
    /// the status only after the death — waits until `deadline` for the watch to bring it,
    /// then answers what is known. A deleted pod's status will not change: no wait. Returns by
    /// `deadline` plus one owner lookup (its request timeout).
    pub async fn label_until(
        &self,
        pod_uid: &str,
        container_id: &str,
        deadline: Instant,
    ) -> Labelled {
        let inner = &*self.inner;
        let c = &inner.shared.counters;
        bump(&c.lookups);
        let container_id = super::strip_runtime_prefix(container_id);
        let found = match inner.shared.find(pod_uid, container_id) {
            Found::Pod(pod) if !pod.deleted && !container_id.is_empty() => {
                self.wait_for(pod_uid, container_id, deadline, Found::Pod(pod))
                    .await
            }
            Found::Unknown => {
                self.wait_for(pod_uid, container_id, deadline, Found::Unknown)
                    .await
            }
            found => found,
        };
        let (pod, container) = match found {
            Found::Container(pod, c) => (pod, Some(c)),
            Found::Pod(pod) => {
                bump(&c.lookups_pod_only);
                (pod, None)
            }
            Found::Unknown => {
                bump(&c.lookups_unknown);
                return Labelled {
                    metadata: None,
                    outcome: LabelOutcome::Unknown,
                    owner_source: None,
                    container_kind: None,
                    opted_out: false,
                };
            }
        };
        self.labelled(pod, container).await
    }

    async fn wait_for(
        &self,
        pod_uid: &str,
        container_id: &str,
        deadline: Instant,
        mut found: Found,
    ) -> Found {
        let inner = &*self.inner;
        let Ok(_permit) = inner.waiting.try_acquire() else {
            bump(&inner.shared.counters.waiters_rejected);
            return found;
        };
        bump(&inner.shared.counters.lookups_waited);
        let mut changes = inner.shared.subscribe();
        loop {
            changes.borrow_and_update();
            found = inner.shared.find(pod_uid, container_id);
            match &found {
                Found::Container(..) => return found,
                Found::Pod(pod) if pod.deleted || container_id.is_empty() => return found,
                _ => {}
            }
            tokio::select! {
                update = changes.changed() => if update.is_err() { return found },
                () = tokio::time::sleep_until(deadline) => return found,
            }
        }
    }

    /// [`Self::label`]'s answer when it needs no waiting: the container is in the index (or
    /// its pod is deleted, or there is no container id) and its workload is known without a
    /// request. `None`: call [`Self::label`]. Lets a death storm be labelled in place, without
    /// a task per record.
    #[must_use]
    pub fn label_cached(&self, pod_uid: &str, container_id: &str) -> Option<Labelled> {
        let inner = &*self.inner;
        let container_id = super::strip_runtime_prefix(container_id);
        let (pod, container) = match inner.shared.find(pod_uid, container_id) {
            Found::Container(pod, c) => (pod, Some(c)),
            Found::Pod(pod) if pod.deleted || container_id.is_empty() => (pod, None),
            Found::Pod(_) | Found::Unknown => return None,
        };
        let workload = match &pod.owner {
            Some(owner) => Some(inner.owners.peek(&pod.namespace, owner)?),
            None => None,
        };
        let c = &inner.shared.counters;
        bump(&c.lookups);
        if container.is_none() {
            bump(&c.lookups_pod_only);
        }
        Some(Self::labels(pod, container, workload))
    }

    async fn labelled(
        &self,
        pod: PodFacts,
        container: Option<super::pods::ContainerSeen>,
    ) -> Labelled {
        let inner = &*self.inner;
        let workload = match &pod.owner {
            Some(owner) => Some(
                inner
                    .owners
                    .resolve(
                        &pod.namespace,
                        owner,
                        pod.template_hash.as_deref(),
                        &inner.shared.counters,
                    )
                    .await,
            ),
            None => None,
        };
        Self::labels(pod, container, workload)
    }

    fn labels(
        pod: PodFacts,
        container: Option<super::pods::ContainerSeen>,
        workload: Option<super::pods::Workload>,
    ) -> Labelled {
        Labelled {
            opted_out: pod.ignored,
            outcome: if container.is_some() {
                LabelOutcome::Complete
            } else {
                LabelOutcome::PodOnly
            },
            owner_source: workload.as_ref().map(|w| w.source),
            container_kind: container.as_ref().map(|c| c.kind),
            metadata: Some(PodMetadata {
                namespace: pod.namespace,
                pod: pod.name,
                message: container
                    .as_ref()
                    .and_then(|c| c.terminated_message.clone()),
                container: container.map(|c| c.name),
                owner_kind: workload.as_ref().map(|w| w.kind.clone()),
                owner_name: workload.map(|w| w.name),
            }),
        }
    }

    /// The record's `initiator` and `grace_allowed_seconds` from what the index knows now.
    /// `true` when that is the answer; `false` when the kubelet's Events may still tell more
    /// (call [`Self::explain`]). Never waits, never asks the API server.
    pub fn explain_cached(&self, record: &mut TerminationRecord) -> bool {
        let Some(q) = super::kubelet::Question::of(record) else {
            record.initiator = super::kubelet::without_api(record.initiator);
            return true;
        };
        match super::kubelet::from_index(&self.inner.shared, &q, &[]) {
            Some(d) if d.settled => {
                super::kubelet::apply(record, d);
                true
            }
            Some(_) => false,
            // The pod unknown or the watch down: the kernel's part is all there is.
            None => {
                record.initiator = super::kubelet::without_api(record.initiator);
                true
            }
        }
    }

    /// Who decided this (labelled) death: waits for the pod's state and the kubelet's Events
    /// on it until `deadline` at the latest, then writes `initiator` and
    /// `grace_allowed_seconds`. Without the API, `unknown` where only it could tell.
    pub async fn explain(&self, record: &mut TerminationRecord, deadline: Instant) {
        let Some(q) = super::kubelet::Question::of(record) else {
            record.initiator = super::kubelet::without_api(record.initiator);
            return;
        };
        let inner = &*self.inner;
        let decision = super::kubelet::explain(&inner.client, &inner.shared, &q, deadline).await;
        super::kubelet::apply(record, decision);
    }

    /// Queues a Kubernetes Event for this (labelled) death; never blocks. Reason = the
    /// verdict, Warning for abnormal deaths, note = [`event_note`]. A full queue or a record
    /// without namespace and pod is counted as lost; a namespace the operator left out
    /// (`--namespaces`, `--exclude-namespaces`) as filtered; with `--events off`, nothing.
    pub fn record_event(&self, record: &TerminationRecord) {
        let inner = &*self.inner;
        let c = &inner.shared.counters;
        let events = &inner.options.events;
        if events.types == super::EventTypes::Off {
            return;
        }
        let (Some(namespace), Some(pod)) = (&record.namespace, &record.pod) else {
            bump(&c.events_lost_unlabelled);
            log_unlabelled(record.pod_uid.as_deref());
            return;
        };
        if !events.namespaces.admits(namespace) {
            bump(&c.events_filtered_namespace);
            return;
        }
        let container_id = record.container_id.as_deref().unwrap_or_default();
        let pod_uid = record.pod_uid.as_deref().unwrap_or_default();
        let kind = match inner.shared.find(pod_uid, container_id) {
            Found::Container(_, seen) => Some(seen.kind),
            _ => None,
        };
        let container = record
            .container
            .clone()
            .unwrap_or_else(|| container_id.to_owned());
        let field_path = record.container.as_deref().map(|name| {
            kind.unwrap_or(super::ContainerKind::Regular)
                .field_path(name)
        });
        let death = Death {
            regarding: pod_reference(namespace, pod, record.pod_uid.as_deref(), field_path),
            pod_uid: record
                .pod_uid
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{pod}")),
            container,
            reason: record.reason.as_str(),
            warning: record.reason.is_abnormal(),
            note: event_note(record),
        };
        if inner
            .events
            .try_send(Command::Death(
                Box::new(death),
                LoopSample::of(record).map(Box::new),
            ))
            .is_err()
        {
            bump(&c.events_lost_queue_full);
        }
    }
}
