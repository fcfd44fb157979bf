//! What the rest of the agent asks of the handle besides labels and Events: counters, the
//! watch's state, whether a pod is there or opted out, the API client itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::Client;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::client::KubeClient;
use super::pods::Found;
use super::recorder::Command;
use super::stats::bump;
use super::{KubeOptions, KubeStats};
use crate::record::TerminationRecord;

impl KubeClient {
    /// Waits (up to `timeout`) until every Event queued before this call was handled: posted,
    /// held back by the rate limit, or counted lost. For shutdown and tests.
    pub async fn flush_events(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        let queued = tokio::time::timeout(timeout, self.inner.events.send(Command::Flush(done)));
        let deadline = Instant::now() + timeout;
        matches!(queued.await, Ok(Ok(())))
            && matches!(tokio::time::timeout_at(deadline, wait).await, Ok(Ok(())))
    }

    /// Waits (up to `timeout`) until the pod watch is listed and streaming.
    pub async fn wait_watch_up(&self, timeout: Duration) -> bool {
        self.wait_watch(true, timeout).await
    }

    /// Waits (up to `timeout`) until the watch is up (`true`) or has failed (`false`).
    pub async fn wait_watch(&self, up: bool, timeout: Duration) -> bool {
        let shared = &self.inner.shared;
        let is = || shared.counters.snapshot().watch_up == up;
        let mut changes = shared.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if is() {
                return true;
            }
            tokio::select! {
                update = changes.changed() => if update.is_err() { return false },
                () = tokio::time::sleep_until(deadline) => return is(),
            }
        }
    }

    #[must_use]
    pub fn stats(&self) -> KubeStats {
        self.inner.shared.counters.snapshot()
    }

    /// Reads [`KubeClient::stats`] without keeping the client, and so its tasks, alive: for
    /// the metrics, which outlive it.
    pub fn stats_reader(&self) -> impl Fn() -> KubeStats + Send + Sync + 'static {
        let shared = Arc::clone(&self.inner.shared);
        move || shared.counters.snapshot()
    }

    /// Whether a pod uid is in the index, without keeping the client alive: `None` while the
    /// watch is not up (the index may be stale or empty, so nobody should conclude a pod is
    /// gone). For the per-container metrics that live as long as their pod.
    pub fn pod_presence(&self) -> impl Fn(&str) -> Option<bool> + Send + Sync + 'static {
        let shared = Arc::clone(&self.inner.shared);
        move |pod_uid| {
            let up = shared.counters.watch_up.load(Ordering::Relaxed);
            up.then(|| !matches!(shared.find(pod_uid, ""), Found::Unknown))
        }
    }

    /// The API client itself, for the HTTP server's `TokenReview`s and
    /// `SubjectAccessReview`s (`export::http::access`): one connection pool, one identity.
    #[must_use]
    pub fn api_client(&self) -> Client {
        self.inner.client.clone()
    }

    #[must_use]
    pub fn options(&self) -> &KubeOptions {
        &self.inner.options
    }

    /// Whether the record's pod opted out (annotated [`super::IGNORE_ANNOTATION`]`: "true"`);
    /// counts it when so. A pod the index does not know has not opted out: its deaths are
    /// recorded.
    #[must_use]
    pub fn opted_out(&self, record: &TerminationRecord) -> bool {
        let Some(pod_uid) = record.pod_uid.as_deref() else {
            return false;
        };
        let shared = &self.inner.shared;
        let ignored = match shared.find(pod_uid, "") {
            Found::Pod(pod) | Found::Container(pod, _) => pod.ignored,
            Found::Unknown => false,
        };
        if ignored {
            self.count_opted_out();
        }
        ignored
    }

    /// Counts a record left out because its pod opted out ([`super::Labelled::opted_out`]).
    pub fn count_opted_out(&self) {
        bump(&self.inner.shared.counters.records_ignored);
    }
}
