//! coroner: the cause of death of every container process on a node.
//!
//! The data path, one module per stage:
//! `probes` (load + attach the kernel programs) → `events` (ring buffer → typed events) →
//! `correlate` (events → one [`record::TerminationRecord`] per death), enriched by `cgroup`
//! (container identity) and `kube` (pod metadata) → `export` (Prometheus, JSON lines, HTTP).

pub mod cgroup;
pub mod kube;
pub mod record;
