//! The `pod_object` fuzz target's promises under generated input: pods as the API server
//! writes them (and worse), those pods' JSON cut or corrupted, and plain bytes.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Value, json};

use std::time::{Duration, Instant};

use super::{Outcome, check, check_pod};
use crate::kube::pods::index::{Found, IndexLimits, PodIndex};
use crate::kube::pods::view::PodView;

/// Strings a hostile or broken object may carry: empty, unicode, quotes, very long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{1,20}",
        "\\PC{0,12}",
        "[a-z]{1,4}://[0-9a-f]{0,64}",
        "[a-z]{200,300}",
    ]
}

fn maybe<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 3 => s.prop_map(Some)]
}

fn container_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "(containerd|cri-o|docker)://[0-9a-f]{64}",
        "[0-9a-f]{8}",
        text(),
    ]
}

fn container_state() -> impl Strategy<Value = Value> {
    maybe(container_id()).prop_map(
        |id| json!({"terminated": {"exitCode": 137, "containerID": id, "reason": "Error"}}),
    )
}

fn container_status() -> impl Strategy<Value = Value> {
    (
        text(),
        maybe(container_id()),
        maybe(container_state()),
        maybe(container_state()),
    )
        .prop_map(|(name, id, state, last)| {
            json!({
                "name": name,
                "containerID": id,
                "state": state,
                "lastState": last,
                "image": "registry.example/app:1",
                "imageID": "",
                "ready": false,
                "restartCount": 3,
            })
        })
}

fn statuses(max: usize) -> impl Strategy<Value = Option<Vec<Value>>> {
    maybe(vec(container_status(), 0..max))
}

fn owner() -> impl Strategy<Value = Value> {
    (text(), text(), maybe(any::<bool>())).prop_map(|(kind, name, controller)| {
        json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u",
               "controller": controller})
    })
}

/// A pod as JSON, identity fields sometimes missing or empty, up to 40 containers per list.
fn pod() -> impl Strategy<Value = Value> {
    (
        (maybe(text()), maybe(text()), maybe(text())),
        maybe(vec(owner(), 0..3)),
        maybe(text()),
        statuses(40),
        statuses(5),
        statuses(3),
    )
        .prop_map(
            |((uid, name, ns), owners, hash, regular, init, ephemeral)| {
                json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "uid": uid, "name": name, "namespace": ns,
                        "ownerReferences": owners,
                        "labels": hash.map(|h| json!({"pod-template-hash": h})),
                    },
                    "spec": {"nodeName": "node-a", "containers": []},
                    "status": {
                        "phase": "Running",
                        "containerStatuses": regular,
                        "initContainerStatuses": init,
                        "ephemeralContainerStatuses": ephemeral,
                    },
                })
            },
        )
}

proptest! {
    #![proptest_config(crate::fuzzing::testing::config(256))]

    #[test]
    fn generated_pods_keep_their_identity_and_containers(pod in pod()) {
        let bytes = serde_json::to_vec(&pod).expect("JSON");
        let outcome = check(&bytes);
        let identified = ["uid", "name", "namespace"]
            .iter()
            .all(|f| pod["metadata"][f].as_str().is_some_and(|s| !s.is_empty()));
        prop_assert_eq!(identified, matches!(outcome, Outcome::Indexed { .. }), "{:?}", outcome);
    }

    #[test]
    fn cut_or_corrupted_pods_are_errors_or_pods(
        pod in pod(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = serde_json::to_vec(&pod).expect("JSON");
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let len = cut.index(bytes.len() + 1);
        check(&bytes[..len]);
    }

    #[test]
    fn arbitrary_bytes_are_not_a_pod_or_a_checked_one(bytes in vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn wrong_types_in_known_fields_are_errors(
        field in prop::sample::select(vec![
            "/metadata/uid", "/metadata/ownerReferences", "/status/containerStatuses",
            "/status/containerStatuses/0/containerID", "/status/containerStatuses/0/state",
            "/metadata/labels",
        ]),
        value in prop_oneof![
            Just(json!(7)), Just(json!([1, 2])), Just(json!({"a": 1})), Just(json!(true)),
            Just(json!("text")),
        ],
    ) {
        let mut pod = json!({
            "metadata": {"uid": "u1", "name": "web", "namespace": "shop"},
            "status": {"containerStatuses": [{
                "name": "app", "containerID": "containerd://abc", "image": "", "imageID": "",
                "ready": true, "restartCount": 0,
            }]},
        });
        if let Some(slot) = pod.pointer_mut(field) {
            *slot = value;
        }
        check(&serde_json::to_vec(&pod).expect("JSON"));
    }
}

/// A pod with hundreds of containers (hostile, but the API server accepts it): decoding, the
/// view and the index keep all of them: each is a current container, not an old id.
#[test]
fn a_pod_with_hundreds_of_containers() {
    let statuses: Vec<Value> = (0..300)
        .map(|i| {
            json!({"name": format!("c{i}"), "containerID": format!("containerd://{i:064x}"),
                   "image": "", "imageID": "", "ready": true, "restartCount": 0})
        })
        .collect();
    let pod = json!({
        "metadata": {"uid": "u-big", "name": "big", "namespace": "shop"},
        "status": {"containerStatuses": statuses},
    });
    let bytes = serde_json::to_vec(&pod).expect("JSON");
    let outcome = check(&bytes);
    assert_eq!(outcome, Outcome::Indexed { containers: 300 });
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_slice(&bytes).expect("a pod");
    let view = PodView::from_pod(&pod).expect("a view");
    let mut index = PodIndex::new(IndexLimits {
        max_pods: 4,
        deleted_retention: Duration::from_mins(5),
    });
    assert!(index.apply(view, Instant::now()));
    let lost: Vec<usize> = (0..300)
        .filter(|i| {
            !matches!(
                index.find("u-big", &format!("{i:064x}")),
                Found::Container(..)
            )
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of 300 current containers not found: {:?}…",
        lost.len(),
        &lost[..lost.len().min(8)]
    );
}

#[test]
fn an_empty_object_and_a_status_object_are_not_indexed() {
    assert_eq!(check(b"{}"), Outcome::Anonymous);
    assert_eq!(check(b"[]"), Outcome::NotAPod);
    // A Status where a Pod should be (what an API server error looks like) is refused.
    let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}"#;
    assert_eq!(check(status), Outcome::NotAPod);
    assert_eq!(
        check_pod(&k8s_openapi::api::core::v1::Pod::default()),
        Outcome::Anonymous
    );
}
