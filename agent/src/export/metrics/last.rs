//! The last termination of each container, in the shape kube-state-metrics gives its own
//! (`kube_pod_container_status_last_terminated_reason{namespace,pod,uid,container,reason}`), so
//! that a `group_left` join puts coroner's verdict, initiator and cause next to KSM's restart
//! counts: `coroner_container_last_termination_info` (1, one series per container) and
//! `coroner_container_last_termination_timestamp_seconds`.
//!
//! Only the death of a container's init (role `init`) is the container's termination. A
//! container's series live as long as its pod: removed once the pod has left the agent's pod
//! index (deleted, and the index's own retention over), checked at each sweep, as KSM drops its
//! own; without the API (or while the pod watch is down) the per-pod retention after the pod
//! was last known to exist, like the other per-pod series. At most `max` containers: the one
//! touched longest ago makes room.

use std::collections::HashMap;
use std::time::Instant;

use super::text::{Format, push_label, push_seconds, unix_seconds};
use crate::record::{Initiator, Reason, Role, TerminationRecord};

#[derive(Debug)]
struct Last {
    /// `namespace="…",pod="…",uid="…",container="…"`, escaped.
    labels: Box<str>,
    pod_uid: Box<str>,
    reason: Reason,
    initiator: Initiator,
    cause: Option<Reason>,
    /// Unix seconds, as the record dates the death.
    at: f64,
    touched: Instant,
    /// When the pod was last known to exist: the death, or a sweep that found it.
    seen: Instant,
}

#[derive(Debug)]
pub(super) struct LastTerminations {
    /// By the label block, which names the container.
    containers: HashMap<Box<str>, Last>,
    max: usize,
}

const INFO: &str = "coroner_container_last_termination_info";
const INFO_HELP: &str = "The last termination of a container's init: verdict, initiator and cause (the verdict of the descendant's death that explains it, or empty); always 1.";
const TIMESTAMP: &str = "coroner_container_last_termination_timestamp_seconds";
const TIMESTAMP_HELP: &str = "When the container's init last died, in Unix seconds.";

impl LastTerminations {
    pub fn new(max: usize) -> Self {
        Self {
            containers: HashMap::new(),
            max: max.max(1),
        }
    }

    /// Keeps the record if it is a named container's init death; returns how many containers
    /// were pushed out to make room.
    pub fn observe(&mut self, r: &TerminationRecord, now: Instant) -> usize {
        let (Role::Init, Some(namespace), Some(pod), Some(uid), Some(container)) = (
            r.role,
            r.namespace.as_deref(),
            r.pod.as_deref(),
            r.pod_uid.as_deref(),
            r.container.as_deref(),
        ) else {
            return 0;
        };
        let mut labels = String::new();
        for (i, (key, value)) in [
            ("namespace", namespace),
            ("pod", pod),
            ("uid", uid),
            ("container", container),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                labels.push(',');
            }
            push_label(&mut labels, key, value);
        }
        let mut evicted = 0;
        if !self.containers.contains_key(labels.as_str()) {
            while self.containers.len() >= self.max {
                let Some(oldest) = self
                    .containers
                    .iter()
                    .min_by_key(|(_, l)| l.touched)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.containers.remove(&oldest);
                evicted += 1;
            }
        }
        let at = unix_seconds(r);
        self.containers.insert(
            labels.clone().into_boxed_str(),
            Last {
                labels: labels.into_boxed_str(),
                pod_uid: uid.into(),
                reason: r.reason,
                initiator: r.initiator,
                cause: r.cause.as_ref().map(|c| c.reason),
                at,
                touched: now,
                seen: now,
            },
        );
        evicted
    }

    /// A sweep at `now`: drops the containers of pods gone; `present(uid)` says whether the
    /// pod is still there (`None`: cannot tell, then those not known to exist since `cutoff`
    /// go). Returns how many went.
    pub fn sweep(
        &mut self,
        present: &dyn Fn(&str) -> Option<bool>,
        now: Instant,
        cutoff: Option<Instant>,
    ) -> usize {
        let before = self.containers.len();
        self.containers.retain(|_, l| match present(&l.pod_uid) {
            Some(true) => {
                l.seen = l.seen.max(now);
                true
            }
            Some(false) => false,
            None => cutoff.is_none_or(|cutoff| l.seen >= cutoff),
        });
        before - self.containers.len()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// A scrape of the containers that have series now.
    pub fn cursor(&self) -> LastCursor {
        let mut keys: Vec<Box<str>> = self.containers.keys().cloned().collect();
        keys.sort();
        LastCursor {
            keys,
            family: 0,
            next: 0,
            started: false,
        }
    }

    /// Writes on from `cursor` until `out` holds `limit` bytes or both families are written;
    /// a family's metadata before its first sample, none for a family without samples. A
    /// container forgotten between pieces is skipped.
    pub fn encode(&self, cursor: &mut LastCursor, out: &mut String, format: Format, limit: usize) {
        while cursor.family < 2 {
            while let Some(key) = cursor.keys.get(cursor.next) {
                if out.len() >= limit {
                    return;
                }
                cursor.next += 1;
                let Some(l) = self.containers.get(key) else {
                    continue;
                };
                if !cursor.started {
                    cursor.started = true;
                    match cursor.family {
                        0 => header(out, INFO, INFO_HELP, None, format),
                        _ => header(out, TIMESTAMP, TIMESTAMP_HELP, Some("seconds"), format),
                    }
                }
                if cursor.family == 0 {
                    out.extend([INFO, "{", &l.labels, ",reason=\"", l.reason.as_str()]);
                    out.extend(["\",initiator=\"", l.initiator.as_str(), "\",cause=\""]);
                    out.push_str(l.cause.map_or("", Reason::as_str));
                    out.push_str("\"} 1\n");
                } else {
                    out.extend([TIMESTAMP, "{", &l.labels, "} "]);
                    push_seconds(out, l.at);
                    out.push('\n');
                }
            }
            cursor.family += 1;
            cursor.next = 0;
            cursor.started = false;
        }
    }
}

/// How far a scrape got through the two families.
#[derive(Debug)]
pub(super) struct LastCursor {
    keys: Vec<Box<str>>,
    family: u8,
    next: usize,
    started: bool,
}

impl LastCursor {
    pub fn done(&self) -> bool {
        self.family >= 2
    }
}

fn header(out: &mut String, name: &str, help: &str, unit: Option<&str>, format: Format) {
    out.extend(["# HELP ", name, " ", help, "\n# TYPE ", name, " gauge\n"]);
    if let (Some(unit), Format::OpenMetrics) = (unit, format) {
        out.extend(["# UNIT ", name, " ", unit, "\n"]);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::export::recent::tests::record;

    fn death(pod: &str, container: &str) -> TerminationRecord {
        let mut r = record(Some("shop"), Some(pod), 1);
        r.pod_uid = Some(format!("uid-{pod}"));
        r.container = Some(container.into());
        r.reason = Reason::Error;
        r
    }

    #[test]
    fn one_series_per_container_with_the_last_death() {
        let t0 = Instant::now();
        let mut last = LastTerminations::new(10);
        last.observe(&death("p", "app"), t0);
        let mut again = death("p", "app");
        again.reason = Reason::OomKilled;
        again.initiator = Initiator::OomKiller;
        last.observe(&again, t0);
        let mut child = death("p", "app");
        child.role = Role::Child;
        child.reason = Reason::Crashed;
        last.observe(&child, t0);
        let mut out = String::new();
        last.encode(&mut last.cursor(), &mut out, Format::Classic, usize::MAX);
        let info: Vec<&str> = out.lines().filter(|l| l.starts_with(INFO)).collect();
        assert_eq!(
            info,
            [
                "coroner_container_last_termination_info{namespace=\"shop\",pod=\"p\",\
                 uid=\"uid-p\",container=\"app\",reason=\"OOMKilled\",initiator=\"oom_killer\",\
                 cause=\"\"} 1"
            ]
        );
        assert!(out.contains("} 1700000000.123\n"), "{out}");
    }

    #[test]
    fn a_pods_containers_go_with_the_pod_and_survive_an_unknown_index() {
        let t0 = Instant::now();
        let mut last = LastTerminations::new(10);
        last.observe(&death("gone", "app"), t0);
        last.observe(&death("here", "app"), t0);
        let present = |uid: &str| Some(uid == "uid-here");
        // An hour after the deaths: the pod still there keeps its series.
        let hour = t0 + Duration::from_hours(1);
        assert_eq!(last.sweep(&present, hour, Some(t0)), 1);
        assert_eq!(last.len(), 1);
        // The watch is down: the retention runs from when the pod was last seen, not from its
        // death an hour ago.
        let unknown = |_: &str| None;
        assert_eq!(last.sweep(&unknown, hour, Some(hour)), 0);
        let later = hour + Duration::from_secs(1);
        assert_eq!(last.sweep(&unknown, later, Some(later)), 1);
    }

    #[test]
    fn the_containers_are_bounded() {
        let t0 = Instant::now();
        let mut last = LastTerminations::new(2);
        last.observe(&death("a", "app"), t0);
        last.observe(&death("b", "app"), t0 + Duration::from_secs(1));
        assert_eq!(
            last.observe(&death("c", "app"), t0 + Duration::from_secs(2)),
            1
        );
        assert_eq!(last.len(), 2);
    }
}
