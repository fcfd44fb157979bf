//! coroner: the cause of death of every container process on a node.

pub mod cgroup;
pub mod events;
pub mod kube;
pub mod probes;
pub mod record;
