//! The node-scoped pod watch: kube-rs's `watcher` (list, then watch from the list's
//! resourceVersion; a `410 Gone` sends it back to a fresh list) behind kube's default backoff,
//! feeding the index.
//!
//! Not a `reflector`: its `Store` is keyed by namespace/name, forgets a pod the moment it is
//! deleted and has no index by container id; the index keeps a few strings per pod instead.

use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{debug, info, warn};

use super::index::PodIndex;
use super::lenient::WatchedPod;
use super::shared::Shared;
use super::view::PodView;
use crate::kube::stats::bump;

/// Runs until the task is aborted; the backoff never gives up.
pub(crate) async fn run(client: Client, node_name: String, shared: Arc<Shared>) {
    let pods: Api<WatchedPod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut events = pin!(watcher(pods, config).default_backoff());
    while let Some(event) = events.next().await {
        apply(&shared, event);
    }
}

pub(crate) fn apply(shared: &Shared, event: Result<watcher::Event<WatchedPod>, watcher::Error>) {
    let c = &shared.counters;
    match event {
        Ok(watcher::Event::Init) => shared.update(PodIndex::begin_relist),
        Ok(watcher::Event::InitApply(pod)) => apply_pod(shared, &pod),
        Ok(watcher::Event::Apply(pod)) => {
            // kube's watcher re-watches after a dropped stream without telling; an event is
            // the first sign the watch works again.
            shared.set_watch_up(true);
            apply_pod(shared, &pod);
        }
        Ok(watcher::Event::Delete(pod)) => {
            shared.set_watch_up(true);
            note_undecodable(shared, &pod);
            if let Some(view) = PodView::from_pod(&pod.pod) {
                shared.update(|index| index.delete(view, Instant::now()));
            }
        }
        Ok(watcher::Event::InitDone) => {
            bump(&c.relists);
            shared.update(|index| index.end_relist(Instant::now()));
            release_list_memory();
            if !shared.set_watch_up(true) {
                info!("pod watch synced");
            }
        }
        Err(e) => {
            bump(&c.watch_errors);
            if shared.set_watch_up(false) {
                warn!("pod watch failed, retrying with backoff: {e}");
            } else {
                debug!("pod watch still failing: {e}");
            }
        }
    }
}

/// A pod only partly readable still names its namespace, pod and workload: applied like any
/// other (the index keeps the containers it already knew).
fn apply_pod(shared: &Shared, pod: &WatchedPod) {
    note_undecodable(shared, pod);
    if let Some(view) = PodView::from_pod(&pod.pod) {
        let added = shared.update(|index| index.apply(view, Instant::now()));
        if !added {
            bump(&shared.counters.index_full);
            warn!("pod index full of live pods; a new pod is not labelled");
        }
    }
}

fn note_undecodable(shared: &Shared, pod: &WatchedPod) {
    let Some(why) = &pod.undecodable else {
        return;
    };
    bump(&shared.counters.pods_undecodable);
    let meta = &pod.pod.metadata;
    warn!(
        namespace = meta.namespace.as_deref().unwrap_or("?"),
        pod = meta.name.as_deref().unwrap_or("?"),
        uid = meta.uid.as_deref().unwrap_or("?"),
        "pod object not readable whole, only its metadata is used: {why}"
    );
}

/// A full list decodes every pod of the node (megabytes of JSON and objects) only to keep a
/// few strings of each; glibc would keep the freed heap for good. Once per list, which is
/// rare (start-up and after a `410 Gone`).
fn release_list_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
