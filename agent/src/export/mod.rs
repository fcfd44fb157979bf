//! What leaves the agent: Prometheus metrics, the HTTP server, JSON lines.
//!
//! Every death goes through [`Metrics::observe`], [`RecentRecords::push`] and, when
//! `--events-json` is set, [`JsonLines::write`]; the HTTP server ([`serve`]) reads the first two.

pub mod http;
pub mod json_lines;
pub mod metrics;
pub mod recent;

pub use http::access::{Access, AccessConfig, AuthMode, KubeReviewer, PROXY_AUTHORIZATION};
pub use http::health::Heartbeat;
pub use http::{HttpLimits, HttpState, Readiness, serve, serve_guarded, serve_with_limits};
pub use json_lines::{ExportError, JsonLines};
pub use metrics::{
    EventCounts, EventKind, FilteredKind, KernelCounters, KernelStageStats, LossStage, Metrics,
    MetricsConfig, ReaderStats,
};
pub use recent::{RecentFilter, RecentRecords};
