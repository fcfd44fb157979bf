//! API server bytes → `Pod` → [`PodView`] → the index: whatever the bytes, decoding is a
//! clear error or a pod; the view keeps exactly the pod's identity and container ids; the
//! index finds what it was given. Called by the cargo-fuzz target `pod_object` and by the
//! proptests below; compiled for tests and with the `fuzzing` feature only.
#![expect(
    clippy::must_use_candidate,
    reason = "the checks are called for their panics; what they return is for tests that want more"
)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::index::{Found, IndexLimits, PodIndex};
use super::view::{PodView, strip_runtime_prefix};

/// Container ids a pod's index entry remembers (`index::IDS_PER_POD`).
const IDS_PER_POD: usize = 32;

/// What [`check`] made of the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a `Pod`.
    NotAPod,
    /// A `Pod` without uid, name or namespace: ignored.
    Anonymous,
    /// Indexed, with this many container ids.
    Indexed { containers: usize },
}

/// Every container id the pod's status carries, prefix stripped, empty ones left out.
fn status_ids(pod: &Pod) -> Vec<(String, String)> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let terminated = |s: &Option<k8s_openapi::api::core::v1::ContainerState>| {
        s.as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.container_id.clone())
    };
    [
        &status.container_statuses,
        &status.init_container_statuses,
        &status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flat_map(|list| list.iter().flatten())
    .flat_map(|cs| {
        [
            cs.container_id.clone(),
            terminated(&cs.state),
            terminated(&cs.last_state),
        ]
        .into_iter()
        .flatten()
        .map(|raw| (strip_runtime_prefix(&raw).to_owned(), cs.name.clone()))
    })
    .filter(|(id, _)| !id.is_empty())
    .collect()
}

/// Panics if a promise breaks for `bytes` (one object as the API server would send it).
pub fn check(bytes: &[u8]) -> Outcome {
    let Ok(pod) = serde_json::from_slice::<Pod>(bytes) else {
        return Outcome::NotAPod;
    };
    check_pod(&pod)
}

/// [`check`] of a decoded pod.
pub fn check_pod(pod: &Pod) -> Outcome {
    let Some(view) = PodView::from_pod(pod) else {
        let meta = &pod.metadata;
        let named = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        assert!(
            !(named(&meta.uid) && named(&meta.name) && named(&meta.namespace)),
            "a pod with an identity was refused"
        );
        return Outcome::Anonymous;
    };
    assert_eq!(Some(&view.uid), pod.metadata.uid.as_ref());
    assert_eq!(Some(&view.name), pod.metadata.name.as_ref());
    assert_eq!(Some(&view.namespace), pod.metadata.namespace.as_ref());

    // The view keeps each id once, with the name of the first status that carried it.
    let ids = status_ids(pod);
    let mut expected: Vec<(String, String)> = Vec::new();
    for (id, name) in ids {
        if !expected.iter().any(|(seen, _)| *seen == id) {
            expected.push((id, name));
        }
    }
    let kept: Vec<(String, String)> = view
        .containers
        .iter()
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();
    assert_eq!(kept, expected);

    // Through the wire and back, the view is the same.
    let again: Pod = serde_json::from_slice(&serde_json::to_vec(pod).expect("a pod serialises"))
        .expect("a serialised pod decodes");
    assert_eq!(PodView::from_pod(&again).as_ref(), Some(&view));

    let now = Instant::now();
    let mut index = PodIndex::new(IndexLimits {
        max_pods: 4,
        deleted_retention: Duration::from_mins(5),
    });
    assert!(index.apply(view.clone(), now), "an empty index takes a pod");
    let n = view.containers.len();
    // The ids a pod keeps are bounded (a crash-looping container gets a new one per restart):
    // the latest ones are found, by pod and container and by container alone. (That a pod
    // with more containers than the bound loses current ones is pinned by
    // `proptests::a_pod_with_hundreds_of_containers`, not here, so that the fuzzer looks
    // past it.)
    for seen in view.containers.iter().skip(n.saturating_sub(IDS_PER_POD)) {
        for uid in [view.uid.as_str(), ""] {
            match index.find(uid, &seen.id) {
                Found::Container(facts, found) => {
                    assert_eq!(facts.uid, view.uid);
                    assert_eq!(found.id, seen.id);
                }
                other => panic!("container {:?} of {:?}: {other:?}", seen.id, view.uid),
            }
        }
    }
    // Any other id of the pod still finds the pod.
    if !view.containers.iter().any(|c| c.id == "not-an-id") {
        assert!(matches!(index.find(&view.uid, "not-an-id"), Found::Pod(_)));
    }
    index.delete(view.clone(), now);
    assert!(matches!(index.find(&view.uid, ""), Found::Pod(p) if p.deleted));
    Outcome::Indexed { containers: n }
}

#[cfg(test)]
mod proptests;
