//! The pod as the watch decodes it: whole when k8s-openapi can read it, else its metadata only.
//!
//! kube's watcher decodes a list as one `ObjectList<K>`: with `K = Pod`, one pod the object
//! model cannot read (a newer API server, a broken admission webhook, a proxy that rewrites
//! JSON) fails the whole list, the watch never syncs and every pod on the node goes unlabelled.
//! Decoding each item on its own keeps the others, and the metadata of the bad one still
//! names its namespace, pod and workload.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Clone, Debug, Default)]
pub(crate) struct WatchedPod {
    /// Whole, or with only the metadata that could be read.
    pub pod: Pod,
    /// Why the object model could not read the rest.
    pub undecodable: Option<String>,
}

impl<'de> Deserialize<'de> for WatchedPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only input that is not JSON at all fails: that is the stream's fault, not one pod's.
        let value = Value::deserialize(deserializer)?;
        Ok(match Pod::deserialize(&value) {
            Ok(pod) => WatchedPod {
                pod,
                undecodable: None,
            },
            Err(e) => WatchedPod {
                pod: Pod {
                    metadata: salvage_metadata(value.get("metadata")),
                    ..Pod::default()
                },
                undecodable: Some(e.to_string()),
            },
        })
    }
}

/// The whole metadata when it decodes, else the string fields that identify the pod and keep
/// the watch's place (a watch event without `resourceVersion` makes the watcher relist).
fn salvage_metadata(metadata: Option<&Value>) -> ObjectMeta {
    let Some(metadata) = metadata else {
        return ObjectMeta::default();
    };
    if let Ok(meta) = ObjectMeta::deserialize(metadata) {
        return meta;
    }
    let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
    ObjectMeta {
        name: text("name"),
        namespace: text("namespace"),
        uid: text("uid"),
        resource_version: text("resourceVersion"),
        ..ObjectMeta::default()
    }
}

impl Resource for WatchedPod {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Pod::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Pod::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Pod::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        Pod::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Pod::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.pod.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.pod.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_readable_pod_is_whole() {
        let got: WatchedPod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "7"},
            "status": {"containerStatuses": [{"name": "app", "image": "i", "imageID": "",
                "ready": true, "restartCount": 0, "containerID": "containerd://c1"}]},
        }))
        .unwrap();
        assert!(got.undecodable.is_none());
        let statuses = got.pod.status.unwrap().container_statuses.unwrap();
        assert_eq!(statuses[0].container_id.as_deref(), Some("containerd://c1"));
    }

    #[test]
    fn an_unreadable_status_keeps_the_metadata() {
        let got: WatchedPod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "7",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "web-1", "uid": "r", "controller": true}]},
            "status": {"containerStatuses": "not a list"},
        }))
        .unwrap();
        assert!(got.undecodable.unwrap().contains("invalid type"));
        assert_eq!(got.pod.metadata.uid.as_deref(), Some("u"));
        assert_eq!(got.pod.metadata.owner_references.unwrap()[0].name, "web-1");
        assert!(got.pod.status.is_none());
    }

    #[test]
    fn unreadable_metadata_keeps_the_fields_that_are_strings() {
        let got: WatchedPod = serde_json::from_value(json!({
            "metadata": {"name": 7, "namespace": "n", "uid": "u", "resourceVersion": "9",
                         "labels": "not a map"},
        }))
        .unwrap();
        assert!(got.undecodable.is_some());
        let meta = got.pod.metadata;
        assert_eq!(
            (meta.name, meta.namespace.as_deref(), meta.uid.as_deref()),
            (None, Some("n"), Some("u"))
        );
        assert_eq!(meta.resource_version.as_deref(), Some("9"));
    }

    #[test]
    fn an_item_in_a_list_fails_alone() {
        let list: Vec<WatchedPod> = serde_json::from_value(json!([
            {"metadata": {"name": "good", "uid": "g"}},
            {"metadata": {"name": "bad", "uid": "b"}, "spec": {"containers": 5}},
        ]))
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].undecodable.is_none());
        assert!(list[1].undecodable.is_some());
        assert_eq!(list[1].pod.metadata.name.as_deref(), Some("bad"));
    }
}
