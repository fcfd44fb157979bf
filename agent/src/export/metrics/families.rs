//! The registry's metric families: names, types, units and help. The per-pod families are not
//! here but in `text` (written by hand, for their cardinality).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::labels::{ProbeLabels, SignalLabels, VersionLabels};

/// SIGTERM→SIGKILL: Kubernetes' default grace is 30 s; 30 and 35 tell "the default expired"
/// from "it took a little longer", the tail reaches long `terminationGracePeriodSeconds`.
const GRACE_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CauseLabels {
    pub cause: &'static str,
}

/// `coroner_http_auth_cache_total`: which review, and whether the cache answered it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AuthCacheLabels {
    pub review: &'static str,
    pub result: &'static str,
}

/// `coroner_http_auth_decisions_total`: which guarded path, and what the guard decided.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AuthDecisionLabels {
    pub endpoint: &'static str,
    pub decision: &'static str,
}

pub(super) struct Families {
    pub grace_period: Histogram,
    pub signals: Family<SignalLabels, Counter>,
    pub probe_attached: Family<ProbeLabels, Gauge>,
    pub build_info: Family<VersionLabels, Gauge>,
    pub pod_series_dropped: Family<CauseLabels, Counter>,
    pub http_auth_cache: Family<AuthCacheLabels, Counter>,
    pub http_auth_decisions: Family<AuthDecisionLabels, Counter>,
}

impl Families {
    pub fn new() -> Self {
        Self {
            grace_period: Histogram::new(GRACE_BUCKETS),
            signals: Family::default(),
            probe_attached: Family::default(),
            build_info: Family::default(),
            pod_series_dropped: Family::default(),
            http_auth_cache: Family::default(),
            http_auth_decisions: Family::default(),
        }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "grace_period",
            "Time from the first SIGTERM to the SIGKILL of processes killed after a SIGTERM",
            Unit::Seconds,
            self.grace_period.clone(),
        );
        r.register(
            "signals",
            "Fatal signals that killed recorded processes, by who sent them",
            self.signals.clone(),
        );
        r.register(
            "probe_attached",
            "1 when the kernel probe is attached, else 0",
            self.probe_attached.clone(),
        );
        r.register(
            "build_info",
            "The agent's version; always 1",
            self.build_info.clone(),
        );
        r.register(
            "pod_series_dropped",
            "Pods whose series were removed: expired after the retention, or pushed out by the cap",
            self.pod_series_dropped.clone(),
        );
        r.register(
            "http_auth_cache",
            "TokenReview and SubjectAccessReview answers taken from the cache (hit) or asked of the API server (miss)",
            self.http_auth_cache.clone(),
        );
        r.register(
            "http_auth_decisions",
            "Requests to a guarded path by what the guard decided: allowed, unauthenticated, forbidden, unavailable",
            self.http_auth_decisions.clone(),
        );
    }
}
