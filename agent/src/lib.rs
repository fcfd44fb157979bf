//! coroner: the cause of death of every container process on a node.
//!
//! The data path, one module per stage:
//! `probes` (load + attach the kernel programs) → `events` (ring buffer → typed events) →
//! `correlate` (events → one [`record::TerminationRecord`] per death), enriched by `cgroup`
//! (container identity) and `kube` (pod metadata) → `export` (Prometheus, JSON lines, HTTP).
//! `plugin` is the other binary, `kubectl-coroner`, which reads the agents' records.

pub mod cgroup;
pub mod cli;
pub mod correlate;
pub mod events;
pub mod export;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod kube;
pub mod pipeline;
pub mod plugin;
pub mod probes;
pub mod record;
