//! This node's pods by uid and by container id. Deleted pods stay for a retention so that a
//! record written after the deletion still gets its labels; everything is bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::view::{ContainerSeen, OwnerRef, PodView};
use crate::kube::kubelet::PodTermination;

/// How many container ids a pod remembers: a crash-looping container gets a new id per restart
/// and the status only shows the last two, but a record may name an older one.
const IDS_PER_POD: usize = 32;

#[derive(Clone, Copy, Debug)]
pub struct IndexLimits {
    pub max_pods: usize,
    pub deleted_retention: Duration,
}

#[derive(Debug)]
struct Slot {
    namespace: String,
    name: String,
    owner: Option<OwnerRef>,
    template_hash: Option<String>,
    /// Oldest first.
    containers: VecDeque<ContainerSeen>,
    termination: Arc<PodTermination>,
    ignored: bool,
    deleted_at: Option<Instant>,
}

/// A pod as a lookup sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub owner: Option<OwnerRef>,
    pub template_hash: Option<String>,
    pub deleted: bool,
    pub termination: Arc<PodTermination>,
    /// Annotated `coroner.io/ignore: "true"`: no record, metric or Event for its deaths.
    pub ignored: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Container(PodFacts, ContainerSeen),
    /// The pod is known, the container id is not (yet) in its status.
    Pod(PodFacts),
    Unknown,
}

#[derive(Debug)]
pub struct PodIndex {
    limits: IndexLimits,
    pods: HashMap<String, Slot>,
    /// container id → pod uid
    containers: HashMap<String, String>,
    /// (deleted at, uid), in deletion order; entries of pods that came back are skipped.
    deleted: VecDeque<(Instant, String)>,
    /// uids listed since the last `Init`, while a relist is under way.
    relisting: Option<HashSet<String>>,
}

impl PodIndex {
    #[must_use]
    pub fn new(limits: IndexLimits) -> Self {
        Self {
            limits,
            pods: HashMap::new(),
            containers: HashMap::new(),
            deleted: VecDeque::new(),
            relisting: None,
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Adds or updates a live pod. `false` when the index is full of live pods and it was not
    /// added.
    pub fn apply(&mut self, view: PodView, now: Instant) -> bool {
        self.expire(now);
        if let Some(seen) = &mut self.relisting {
            seen.insert(view.uid.clone());
        }
        if !self.pods.contains_key(&view.uid) && !self.make_room() {
            return false;
        }
        let slot = self.pods.entry(view.uid.clone()).or_insert_with(|| Slot {
            namespace: String::new(),
            name: String::new(),
            owner: None,
            template_hash: None,
            containers: VecDeque::new(),
            termination: Arc::default(),
            ignored: false,
            deleted_at: None,
        });
        slot.namespace = view.namespace;
        slot.name = view.name;
        slot.owner = view.owner;
        slot.template_hash = view.template_hash;
        slot.termination = view.termination;
        slot.ignored = view.ignored;
        slot.deleted_at = None;
        // Every id the status shows now, plus up to IDS_PER_POD older ones: a pod with
        // hundreds of containers keeps them all.
        let cap = view.containers.len() + IDS_PER_POD;
        for seen in view.containers {
            if let Some(at) = slot.containers.iter().position(|c| c.id == seen.id) {
                // Still in the status: the most recent again, so that older ids go first.
                if let Some(known) = slot.containers.remove(at) {
                    slot.containers.push_back(known);
                }
                continue;
            }
            if slot.containers.len() >= cap
                && let Some(old) = slot.containers.pop_front()
                && self.containers.get(&old.id) == Some(&view.uid)
            {
                self.containers.remove(&old.id);
            }
            self.containers.insert(seen.id.clone(), view.uid.clone());
            slot.containers.push_back(seen);
        }
        true
    }

    /// The pod is gone from the API server; its last state (which may carry the dead
    /// container's id) is applied first, then it is kept for the retention.
    pub fn delete(&mut self, view: PodView, now: Instant) {
        let uid = view.uid.clone();
        if self.apply(view, now) {
            self.mark_deleted(&uid, now);
        }
    }

    /// A relist starts: pods not listed again until [`Self::end_relist`] were deleted meanwhile.
    pub fn begin_relist(&mut self) {
        self.relisting = Some(HashSet::new());
    }

    pub fn end_relist(&mut self, now: Instant) {
        let Some(seen) = self.relisting.take() else {
            return;
        };
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, slot)| slot.deleted_at.is_none() && !seen.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.mark_deleted(&uid, now);
        }
    }

    /// `pod_uid` may be empty when only the container id is known.
    #[must_use]
    pub fn find(&self, pod_uid: &str, container_id: &str) -> Found {
        let by_container = self
            .containers
            .get(container_id)
            .filter(|uid| pod_uid.is_empty() || uid.as_str() == pod_uid);
        let uid = by_container.map_or(pod_uid, String::as_str);
        let Some(slot) = self.pods.get(uid) else {
            return Found::Unknown;
        };
        let facts = PodFacts {
            uid: uid.to_owned(),
            namespace: slot.namespace.clone(),
            name: slot.name.clone(),
            owner: slot.owner.clone(),
            template_hash: slot.template_hash.clone(),
            deleted: slot.deleted_at.is_some(),
            termination: Arc::clone(&slot.termination),
            ignored: slot.ignored,
        };
        match slot.containers.iter().find(|c| c.id == container_id) {
            Some(c) if !container_id.is_empty() => Found::Container(facts, c.clone()),
            _ => Found::Pod(facts),
        }
    }

    fn mark_deleted(&mut self, uid: &str, now: Instant) {
        if let Some(slot) = self.pods.get_mut(uid)
            && slot.deleted_at.is_none()
        {
            slot.deleted_at = Some(now);
            self.deleted.push_back((now, uid.to_owned()));
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.deleted.front() {
            if now.saturating_duration_since(*at) < self.limits.deleted_retention {
                break;
            }
            self.evict_oldest_deleted();
        }
    }

    /// Frees a place for a new pod: the oldest deleted pod goes first; live pods never do.
    fn make_room(&mut self) -> bool {
        while self.pods.len() >= self.limits.max_pods {
            if !self.evict_oldest_deleted() {
                return false;
            }
        }
        true
    }

    fn evict_oldest_deleted(&mut self) -> bool {
        while let Some((at, uid)) = self.deleted.pop_front() {
            let still_deleted = self
                .pods
                .get(&uid)
                .is_some_and(|slot| slot.deleted_at == Some(at));
            if still_deleted {
                self.remove(&uid);
                return true;
            }
        }
        false
    }

    fn remove(&mut self, uid: &str) {
        if let Some(slot) = self.pods.remove(uid) {
            for c in slot.containers {
                if self.containers.get(&c.id).map(String::as_str) == Some(uid) {
                    self.containers.remove(&c.id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::pods::ContainerKind;

    fn view(uid: &str, ids: &[&str]) -> PodView {
        PodView {
            uid: uid.into(),
            namespace: "ns".into(),
            name: format!("pod-{uid}"),
            owner: None,
            template_hash: None,
            termination: Arc::default(),
            ignored: false,
            containers: ids
                .iter()
                .map(|id| ContainerSeen {
                    id: (*id).into(),
                    name: "c".into(),
                    kind: ContainerKind::Regular,
                    terminated_message: None,
                })
                .collect(),
        }
    }

    fn limits(max_pods: usize) -> IndexLimits {
        IndexLimits {
            max_pods,
            deleted_retention: Duration::from_mins(5),
        }
    }

    #[test]
    fn finds_by_container_and_by_pod() {
        let now = Instant::now();
        let mut index = PodIndex::new(limits(10));
        assert!(index.apply(view("u1", &["a"]), now));
        assert!(matches!(index.find("u1", "a"), Found::Container(_, c) if c.id == "a"));
        assert!(matches!(index.find("", "a"), Found::Container(p, _) if p.uid == "u1"));
        assert!(matches!(index.find("u1", "b"), Found::Pod(p) if !p.deleted));
        assert_eq!(index.find("u2", "a"), Found::Unknown);
    }

    #[test]
    fn old_container_ids_survive_restarts() {
        let now = Instant::now();
        let mut index = PodIndex::new(limits(10));
        index.apply(view("u1", &["a"]), now);
        index.apply(view("u1", &["b", "a"]), now);
        index.apply(view("u1", &["c", "b"]), now);
        assert!(matches!(index.find("u1", "a"), Found::Container(..)));
        for i in 0..=IDS_PER_POD {
            index.apply(view("u1", &[&format!("x{i}")]), now);
        }
        assert!(matches!(index.find("u1", "a"), Found::Pod(_)));
        // The one id the status shows now, and IDS_PER_POD older ones.
        assert_eq!(index.containers.len(), IDS_PER_POD + 1);
    }

    #[test]
    fn deleted_pods_stay_for_the_retention() {
        let t0 = Instant::now();
        let mut index = PodIndex::new(limits(10));
        index.apply(view("u1", &[]), t0);
        // The final state in the DELETED event names the container that died.
        index.delete(view("u1", &["dead"]), t0);
        assert!(matches!(index.find("u1", "dead"), Found::Container(p, _) if p.deleted));
        index.apply(view("u2", &[]), t0 + Duration::from_secs(299));
        assert!(matches!(index.find("u1", "dead"), Found::Container(..)));
        index.apply(view("u2", &[]), t0 + Duration::from_mins(5));
        assert_eq!(index.find("u1", "dead"), Found::Unknown);
        assert!(!index.containers.contains_key("dead"));
    }

    #[test]
    fn bounded_deleted_go_first_live_never() {
        let now = Instant::now();
        let mut index = PodIndex::new(limits(2));
        index.apply(view("u1", &["a"]), now);
        index.apply(view("u2", &["b"]), now);
        assert!(!index.apply(view("u3", &["c"]), now), "full of live pods");
        index.delete(view("u1", &["a"]), now);
        assert!(index.apply(view("u3", &["c"]), now));
        assert_eq!(index.len(), 2);
        assert_eq!(index.find("u1", "a"), Found::Unknown);
        assert!(matches!(index.find("u2", "b"), Found::Container(..)));
    }

    #[test]
    fn a_relist_marks_missing_pods_deleted_not_gone() {
        let now = Instant::now();
        let mut index = PodIndex::new(limits(10));
        index.apply(view("u1", &["a"]), now);
        index.apply(view("u2", &["b"]), now);
        index.begin_relist();
        index.apply(view("u2", &["b"]), now);
        index.apply(view("u3", &["c"]), now);
        index.end_relist(now);
        assert!(matches!(index.find("u1", "a"), Found::Container(p, _) if p.deleted));
        assert!(matches!(index.find("u2", "b"), Found::Container(p, _) if !p.deleted));
        assert!(matches!(index.find("u3", "c"), Found::Container(..)));
    }
}
