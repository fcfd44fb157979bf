//! State the watcher writes and lookups read: the index, a change signal, the counters.

use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLock};

use tokio::sync::watch;

use super::index::{Found, IndexLimits, PodIndex};
use crate::kube::stats::Counters;

#[derive(Debug)]
pub(crate) struct Shared {
    index: RwLock<PodIndex>,
    /// Bumped after every change of the index: waiting lookups look again.
    changed: watch::Sender<u64>,
    pub counters: Counters,
}

impl Shared {
    pub fn new(limits: IndexLimits) -> Self {
        Self {
            index: RwLock::new(PodIndex::new(limits)),
            changed: watch::Sender::new(0),
            counters: Counters::default(),
        }
    }

    pub fn find(&self, pod_uid: &str, container_id: &str) -> Found {
        // A panic elsewhere while holding the lock leaves a consistent index (every update is
        // a few map operations); keep serving it.
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .find(pod_uid, container_id)
    }

    pub fn update<T>(&self, f: impl FnOnce(&mut PodIndex) -> T) -> T {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut index);
        self.counters
            .pods_indexed
            .store(index.len() as u64, Ordering::Relaxed);
        drop(index);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        out
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Returns the previous state; a change wakes those waiting for the watch.
    pub fn set_watch_up(&self, up: bool) -> bool {
        let was = self.counters.watch_up.swap(up, Ordering::Relaxed);
        if was != up {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        was
    }
}
