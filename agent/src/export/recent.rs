//! The most recent termination records, for `/v1/terminations`: a bounded ring, oldest first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;

use crate::record::TerminationRecord;

/// How many records the ring keeps by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Which records to return: every given field must equal the record's (docs/plugin.md, "The
/// agent's `/v1/terminations`"). A record with unknown metadata has the empty string there, as
/// in the metrics' labels: `?namespace=` selects the records no pod could be found for. The
/// workload (`owner_kind` + `owner_name`) finds the deaths of a Deployment's pods that were
/// replaced since (`kubectl coroner why deployment/NAME`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RecentFilter {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub owner_kind: Option<String>,
    pub owner_name: Option<String>,
}

impl RecentFilter {
    /// Whether `record` is one this filter selects.
    #[must_use]
    pub fn matches(&self, record: &TerminationRecord) -> bool {
        let is = |want: &Option<String>, have: &Option<String>| {
            want.as_deref()
                .is_none_or(|w| w == have.as_deref().unwrap_or(""))
        };
        is(&self.namespace, &record.namespace)
            && is(&self.pod, &record.pod)
            && is(&self.pod_uid, &record.pod_uid)
            && is(&self.container, &record.container)
            && is(&self.owner_kind, &record.owner_kind)
            && is(&self.owner_name, &record.owner_name)
    }
}

/// A bounded ring of records; clones share one ring.
#[derive(Clone, Debug)]
pub struct RecentRecords {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Debug)]
struct Ring {
    records: VecDeque<TerminationRecord>,
    capacity: usize,
}

impl Default for RecentRecords {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl RecentRecords {
    /// A ring of at most `capacity` records (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(Ring {
                records: VecDeque::with_capacity(capacity),
                capacity,
            })),
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `record`, dropping the oldest one when full.
    pub fn push(&self, record: TerminationRecord) {
        let mut ring = self.ring();
        if ring.records.len() >= ring.capacity {
            ring.records.pop_front();
        }
        ring.records.push_back(record);
    }

    /// The records that match `filter`, oldest first.
    #[must_use]
    pub fn snapshot(&self, filter: &RecentFilter) -> Vec<TerminationRecord> {
        self.ring()
            .records
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.ring().records.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::record::Reason;

    /// A plain record of a main process that exited 0; tests change what they need.
    pub(crate) fn record(
        namespace: Option<&str>,
        pod: Option<&str>,
        pid: u32,
    ) -> TerminationRecord {
        TerminationRecord {
            time: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                .expect("valid timestamp"),
            node: "node-1".into(),
            pid,
            ppid: 1,
            comm: "app".into(),
            main_process: true,
            cgroup: "/kubepods/burstable/pod1/abc".into(),
            pod_uid: Some("1".into()),
            container_id: Some("abc".into()),
            namespace: namespace.map(str::to_owned),
            pod: pod.map(str::to_owned),
            container: pod.map(|_| "app".to_owned()),
            owner_kind: None,
            owner_name: None,
            exit_code: Some(0),
            signal: None,
            core_dumped: false,
            reason: Reason::Completed,
            sender: None,
            sigterm_time: None,
            sigkill_time: None,
            grace_seconds: None,
            oom: None,
            peak_rss_bytes: 4096,
            container_memory_peak_bytes: None,
            container_memory_limit_bytes: None,
            exec_failure: None,
            exit_status: 0,
            role: crate::record::Role::Init,
            message: None,
            initiator: crate::record::Initiator::Unknown,
            grace_allowed_seconds: None,
            cause: None,
            stop_signal_ignored: false,
            uptime_seconds: None,
        }
    }

    fn pids(records: &[TerminationRecord]) -> Vec<u32> {
        records.iter().map(|r| r.pid).collect()
    }

    #[test]
    fn keeps_the_newest_records_oldest_first() {
        let ring = RecentRecords::new(3);
        for pid in 1..=5 {
            ring.push(record(Some("ns"), Some("p"), pid));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(pids(&ring.snapshot(&RecentFilter::default())), [3, 4, 5]);
    }

    #[test]
    fn filters_by_namespace_and_pod() {
        let ring = RecentRecords::new(16);
        ring.push(record(Some("a"), Some("web"), 1));
        ring.push(record(Some("b"), Some("web"), 2));
        ring.push(record(Some("a"), Some("db"), 3));
        ring.push(record(None, None, 4));
        ring.push(record(Some("a"), Some("web"), 5));

        let only = |namespace: Option<&str>, pod: Option<&str>| {
            pids(&ring.snapshot(&RecentFilter {
                namespace: namespace.map(str::to_owned),
                pod: pod.map(str::to_owned),
                ..RecentFilter::default()
            }))
        };
        assert_eq!(only(Some("a"), None), [1, 3, 5]);
        assert_eq!(only(None, Some("web")), [1, 2, 5]);
        assert_eq!(only(Some("a"), Some("web")), [1, 5]);
        assert_eq!(only(Some(""), None), [4]);
        assert_eq!(only(Some("nope"), None), Vec::<u32>::new());
        assert_eq!(only(None, None), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn filters_by_pod_uid_container_and_workload() {
        let ring = RecentRecords::new(16);
        let mut api = record(Some("a"), Some("api-1"), 1);
        api.owner_kind = Some("Deployment".into());
        api.owner_name = Some("api".into());
        let mut sidecar = api.clone();
        sidecar.pid = 2;
        sidecar.container = Some("proxy".into());
        let mut replaced = api.clone();
        replaced.pid = 3;
        replaced.pod = Some("api-0".into());
        replaced.pod_uid = Some("0".into());
        let mut other = record(Some("a"), Some("db-0"), 4);
        other.owner_kind = Some("StatefulSet".into());
        other.owner_name = Some("api".into());
        for r in [api, sidecar, replaced, other] {
            ring.push(r);
        }
        let only = |filter: RecentFilter| pids(&ring.snapshot(&filter));
        let workload = RecentFilter {
            namespace: Some("a".into()),
            owner_kind: Some("Deployment".into()),
            owner_name: Some("api".into()),
            ..RecentFilter::default()
        };
        assert_eq!(only(workload.clone()), [1, 2, 3]);
        assert_eq!(
            only(RecentFilter {
                container: Some("proxy".into()),
                ..workload
            }),
            [2]
        );
        assert_eq!(
            only(RecentFilter {
                pod_uid: Some("0".into()),
                ..RecentFilter::default()
            }),
            [3]
        );
        assert_eq!(
            only(RecentFilter {
                owner_name: Some("api".into()),
                ..RecentFilter::default()
            }),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_last_record() {
        let ring = RecentRecords::new(0);
        ring.push(record(Some("ns"), Some("p"), 1));
        ring.push(record(Some("ns"), Some("p"), 2));
        assert_eq!(pids(&ring.snapshot(&RecentFilter::default())), [2]);
    }
}
