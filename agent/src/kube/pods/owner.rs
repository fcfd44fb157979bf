//! The workload behind a pod: a `ReplicaSet`'s `Deployment`, a `Job`'s `CronJob`, or the pod's
//! own controller. One GET per `ReplicaSet` or `Job`, cached (and shared by lookups that ask at
//! the same time), never one per death.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client};
use tokio::sync::OnceCell;
use tracing::debug;

use super::view::OwnerRef;
use crate::kube::stats::{Counters, bump};

/// How the workload was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerSource {
    /// The pod's own controller: `StatefulSet`, `DaemonSet`, a `Job` without `CronJob`, anything
    /// else.
    Direct,
    /// Read from the controller of the pod's `ReplicaSet` or `Job`.
    Fetched,
    /// The `ReplicaSet` is gone: the `Deployment` is its name without `-<pod-template-hash>`.
    TemplateHash,
    /// The API server did not answer: the pod's own controller, tried again later.
    FetchFailed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub source: OwnerSource,
}

#[derive(Clone, Copy, Debug)]
pub struct OwnerLimits {
    /// Cached `ReplicaSet`s and `Job`s.
    pub max_entries: usize,
    /// How long an answer is trusted (the owner of a `ReplicaSet` or `Job` does not change).
    pub ttl: Duration,
    /// How long a failed GET is remembered before trying again.
    pub failure_ttl: Duration,
    pub request_timeout: Duration,
}

impl Default for OwnerLimits {
    fn default() -> Self {
        Self {
            max_entries: 4096,
            ttl: Duration::from_mins(30),
            failure_ttl: Duration::from_secs(30),
            request_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    kind: Intermediate,
    name: String,
}

/// Owners that stand for a workload above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Intermediate {
    ReplicaSet,
    Job,
}

#[derive(Clone, Debug)]
struct Resolved {
    workload: Workload,
    until: Instant,
}

pub(crate) struct OwnerResolver {
    client: Client,
    limits: OwnerLimits,
    cache: Mutex<HashMap<Key, Arc<OnceCell<Resolved>>>>,
}

impl OwnerResolver {
    pub fn new(client: Client, limits: OwnerLimits) -> Self {
        Self {
            client,
            limits,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn resolve(
        &self,
        namespace: &str,
        owner: &OwnerRef,
        template_hash: Option<&str>,
        counters: &Counters,
    ) -> Workload {
        let kind = match owner.kind.as_str() {
            "ReplicaSet" => Intermediate::ReplicaSet,
            "Job" => Intermediate::Job,
            _ => return direct(owner, OwnerSource::Direct),
        };
        let key = Key {
            namespace: namespace.to_owned(),
            kind,
            name: owner.name.clone(),
        };
        let cell = self.cell(&key);
        let resolved = cell
            .get_or_init(|| self.fetch(&key, owner, template_hash, counters))
            .await;
        resolved.workload.clone()
    }

    /// The workload when it is known without a request: a direct owner, or an answer still
    /// fresh in the cache. `None`: [`Self::resolve`] must ask the API server.
    pub fn peek(&self, namespace: &str, owner: &OwnerRef) -> Option<Workload> {
        let kind = match owner.kind.as_str() {
            "ReplicaSet" => Intermediate::ReplicaSet,
            "Job" => Intermediate::Job,
            _ => return Some(direct(owner, OwnerSource::Direct)),
        };
        let key = Key {
            namespace: namespace.to_owned(),
            kind,
            name: owner.name.clone(),
        };
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let resolved = cache.get(&key)?.get()?;
        (resolved.until > Instant::now()).then(|| resolved.workload.clone())
    }

    /// The cache slot for `key`; an expired answer gets a fresh slot.
    fn cell(&self, key: &Key) -> Arc<OnceCell<Resolved>> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = cache.get(key)
            && cell.get().is_none_or(|r| r.until > now)
        {
            return Arc::clone(cell);
        }
        if !cache.contains_key(key) && cache.len() >= self.limits.max_entries {
            cache.retain(|_, cell| cell.get().is_none_or(|r| r.until > now));
            if cache.len() >= self.limits.max_entries
                && let Some(victim) = cache.keys().next().cloned()
            {
                cache.remove(&victim);
            }
        }
        let cell = Arc::new(OnceCell::new());
        cache.insert(key.clone(), Arc::clone(&cell));
        cell
    }

    async fn fetch(
        &self,
        key: &Key,
        owner: &OwnerRef,
        template_hash: Option<&str>,
        counters: &Counters,
    ) -> Resolved {
        bump(&counters.owner_fetches);
        let now = Instant::now();
        let fetched = tokio::time::timeout(self.limits.request_timeout, self.get(key)).await;
        let (workload, ttl) = match fetched {
            Ok(Ok(Some(meta))) => {
                let workload = controller(&meta).map_or_else(
                    || direct(owner, OwnerSource::Fetched),
                    |o| direct(&o, OwnerSource::Fetched),
                );
                (workload, self.limits.ttl)
            }
            Ok(Ok(None)) => {
                let inferred = (key.kind == Intermediate::ReplicaSet)
                    .then(|| deployment_by_hash(&owner.name, template_hash?))
                    .flatten();
                if inferred.is_some() {
                    bump(&counters.owners_inferred);
                }
                let workload = inferred.unwrap_or_else(|| direct(owner, OwnerSource::Direct));
                (workload, self.limits.ttl)
            }
            Ok(Err(e)) => {
                bump(&counters.owner_fetch_failures);
                debug!(owner = %owner.name, "owner lookup failed: {e}");
                (
                    direct(owner, OwnerSource::FetchFailed),
                    self.limits.failure_ttl,
                )
            }
            Err(_) => {
                bump(&counters.owner_fetch_failures);
                debug!(owner = %owner.name, "owner lookup timed out");
                (
                    direct(owner, OwnerSource::FetchFailed),
                    self.limits.failure_ttl,
                )
            }
        };
        Resolved {
            workload,
            until: now + ttl,
        }
    }

    /// Metadata only (`as=PartialObjectMetadata`): the owner is all that is needed.
    async fn get(&self, key: &Key) -> kube::Result<Option<ObjectMeta>> {
        let client = self.client.clone();
        Ok(match key.kind {
            Intermediate::ReplicaSet => Api::<ReplicaSet>::namespaced(client, &key.namespace)
                .get_metadata_opt(&key.name)
                .await?
                .map(|o| o.metadata),
            Intermediate::Job => Api::<Job>::namespaced(client, &key.namespace)
                .get_metadata_opt(&key.name)
                .await?
                .map(|o| o.metadata),
        })
    }
}

fn direct(owner: &OwnerRef, source: OwnerSource) -> Workload {
    Workload {
        kind: owner.kind.clone(),
        name: owner.name.clone(),
        source,
    }
}

fn controller(meta: &ObjectMeta) -> Option<OwnerRef> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
}

/// A `Deployment` names its `ReplicaSet`s `<deployment>-<pod-template-hash>`.
fn deployment_by_hash(replica_set: &str, hash: &str) -> Option<Workload> {
    let name = replica_set.strip_suffix(hash)?.strip_suffix('-')?;
    (!hash.is_empty() && !name.is_empty()).then(|| Workload {
        kind: "Deployment".to_owned(),
        name: name.to_owned(),
        source: OwnerSource::TemplateHash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_hash_convention() {
        let w = deployment_by_hash("api-server-7d4b9c", "7d4b9c").unwrap();
        assert_eq!(
            (w.kind.as_str(), w.name.as_str()),
            ("Deployment", "api-server")
        );
        assert_eq!(deployment_by_hash("api-server-7d4b9c", "ffff"), None);
        assert_eq!(deployment_by_hash("7d4b9c", "7d4b9c"), None);
        assert_eq!(deployment_by_hash("api-", ""), None);
    }
}
