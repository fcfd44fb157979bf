//! What `why` is asked about: a pod, or a workload whose pods are found the way its controller
//! finds them (its selector, then the pods it controls by `ownerReferences`).

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Client;
use kube::api::{Api, ListParams};
use kube::core::Selector;
use serde::de::DeserializeOwned;

use super::error::{Access, PluginError};

/// The kinds `why` answers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
}

impl Kind {
    /// As the records' `owner_kind` and the API name them.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
        }
    }

    /// The resource as RBAC names it.
    const fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Deployment => "deployments.apps",
            Kind::StatefulSet => "statefulsets.apps",
            Kind::DaemonSet => "daemonsets.apps",
            Kind::Job => "jobs.batch",
        }
    }
}

/// `pod/NAME`, `deployment/NAME`, … as kubectl spells them (short names, plurals, `.apps`
/// suffixes); a bare `NAME` is a pod, as with `kubectl logs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

impl std::str::FromStr for Target {
    type Err = PluginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once('/').unwrap_or(("pod", s));
        let kind = match kind.split('.').next().unwrap_or_default() {
            "po" | "pod" | "pods" => Kind::Pod,
            "deploy" | "deployment" | "deployments" => Kind::Deployment,
            "sts" | "statefulset" | "statefulsets" => Kind::StatefulSet,
            "ds" | "daemonset" | "daemonsets" => Kind::DaemonSet,
            "job" | "jobs" => Kind::Job,
            other => {
                return Err(PluginError::Usage(format!(
                    "cannot explain a {other:?}: give pod/NAME, deployment/NAME, \
                     statefulset/NAME, daemonset/NAME or job/NAME"
                )));
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(PluginError::Usage(format!("{s:?} is not KIND/NAME")));
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }
}

/// A pod of the target as the API has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub uid: String,
    /// `None` while it is not scheduled.
    pub node: Option<String>,
}

/// The target's pods, and the workload its records name (`owner_kind`/`owner_name`), which
/// also finds the deaths of its pods that were replaced since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub pods: Vec<PodInfo>,
    pub workload: Option<(Kind, String)>,
}

/// The target's pods; a pod that does not exist (any more) is `Ok` with no pods, so that its
/// Events can still be read; a workload that does not exist is an error.
pub async fn resolve(client: &Client, ns: &str, target: &Target) -> Result<Resolved, PluginError> {
    let access = |verb, resource| Access {
        verb,
        resource,
        namespace: ns.to_owned(),
    };
    if target.kind == Kind::Pod {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        return match api.get(&target.name).await {
            Ok(pod) => Ok(Resolved {
                pods: vec![info(&pod)],
                workload: None,
            }),
            Err(e) if PluginError::is_not_found(&e) => Ok(Resolved {
                pods: Vec::new(),
                workload: None,
            }),
            Err(e) => Err(PluginError::from_kube(access("get", "pods"), e)),
        };
    }
    let (meta, selector) = match target.kind {
        Kind::Deployment => workload::<Deployment>(client, ns, target).await?,
        Kind::StatefulSet => workload::<StatefulSet>(client, ns, target).await?,
        Kind::DaemonSet => workload::<DaemonSet>(client, ns, target).await?,
        Kind::Job | Kind::Pod => workload::<Job>(client, ns, target).await?,
    };
    let selector = Selector::try_from(selector.unwrap_or_default())
        .map_err(|e| PluginError::Usage(format!("the selector of {}: {e}", target.name)))?;
    let params = ListParams::default().labels_from(&selector);
    let uid = meta.uid.unwrap_or_default();
    // A Deployment controls its ReplicaSets, which control the pods.
    let mut owners = BTreeSet::from([uid]);
    if target.kind == Kind::Deployment {
        let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
        let sets = api
            .list(&params)
            .await
            .map_err(|e| PluginError::from_kube(access("list", "replicasets.apps"), e))?;
        owners = sets
            .items
            .iter()
            .filter(|rs| controlled_by(&rs.metadata, &owners))
            .filter_map(|rs| rs.metadata.uid.clone())
            .collect();
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = api
        .list(&params)
        .await
        .map_err(|e| PluginError::from_kube(access("list", "pods"), e))?;
    let mut pods: Vec<PodInfo> = pods
        .items
        .iter()
        .filter(|p| controlled_by(&p.metadata, &owners))
        .map(info)
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    // A Job's records name its CronJob when it has one: the pods' own names find them.
    let workload = (target.kind != Kind::Job).then(|| (target.kind, target.name.clone()));
    Ok(Resolved { pods, workload })
}

/// The workload's metadata and pod selector.
async fn workload<K>(
    client: &Client,
    ns: &str,
    target: &Target,
) -> Result<(ObjectMeta, Option<LabelSelector>), PluginError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + WithSelector
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.get(&target.name).await {
        Ok(obj) => {
            let selector = obj.selector();
            Ok((obj.meta().clone(), selector))
        }
        Err(e) if PluginError::is_not_found(&e) => Err(PluginError::NotFound {
            kind: target.kind.as_str(),
            namespace: ns.to_owned(),
            name: target.name.clone(),
            hint: "",
        }),
        Err(e) => Err(PluginError::from_kube(
            Access {
                verb: "get",
                resource: target.kind.resource(),
                namespace: ns.to_owned(),
            },
            e,
        )),
    }
}

/// The pod selector of a workload's spec.
trait WithSelector {
    fn selector(&self) -> Option<LabelSelector>;
}

impl WithSelector for Deployment {
    fn selector(&self) -> Option<LabelSelector> {
        self.spec.as_ref().map(|s| s.selector.clone())
    }
}

impl WithSelector for StatefulSet {
    fn selector(&self) -> Option<LabelSelector> {
        self.spec.as_ref().map(|s| s.selector.clone())
    }
}

impl WithSelector for DaemonSet {
    fn selector(&self) -> Option<LabelSelector> {
        self.spec.as_ref().map(|s| s.selector.clone())
    }
}

impl WithSelector for Job {
    fn selector(&self) -> Option<LabelSelector> {
        self.spec.as_ref().and_then(|s| s.selector.clone())
    }
}

/// Whether the object's controller is one of `owners` (by uid: a same-named successor is not
/// the owner).
fn controlled_by(meta: &ObjectMeta, owners: &BTreeSet<String>) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && owners.contains(&o.uid))
}

fn info(pod: &Pod) -> PodInfo {
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Target, PluginError> {
        s.parse()
    }

    #[test]
    fn targets_are_spelled_as_kubectl_spells_them() {
        let t = |kind, name: &str| Target {
            kind,
            name: name.into(),
        };
        assert_eq!(parse("web-0").unwrap(), t(Kind::Pod, "web-0"));
        assert_eq!(parse("po/web-0").unwrap(), t(Kind::Pod, "web-0"));
        assert_eq!(parse("pods/web-0").unwrap(), t(Kind::Pod, "web-0"));
        assert_eq!(parse("deploy/api").unwrap(), t(Kind::Deployment, "api"));
        assert_eq!(
            parse("deployment.apps/api").unwrap(),
            t(Kind::Deployment, "api")
        );
        assert_eq!(parse("sts/db").unwrap(), t(Kind::StatefulSet, "db"));
        assert_eq!(
            parse("daemonset/agent").unwrap(),
            t(Kind::DaemonSet, "agent")
        );
        assert_eq!(parse("job.batch/migrate").unwrap(), t(Kind::Job, "migrate"));
    }

    #[test]
    fn other_kinds_and_malformed_targets_are_refused() {
        for bad in ["svc/api", "pod/", "pod/a/b", "configmap/x"] {
            assert!(
                matches!(parse(bad), Err(PluginError::Usage(_))),
                "{bad} accepted"
            );
        }
    }
}
