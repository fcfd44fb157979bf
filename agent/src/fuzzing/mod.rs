//! What must hold of the agent's parsers for any input, as functions that panic when it does
//! not: the cargo-fuzz targets in `fuzz/` call them with libFuzzer's bytes, and the proptests
//! (`cargo test`) with generated ones, so both check the same promises.
//!
//! - [`ring_buffer`]: ring-buffer records → [`agent_ebpf::KernelEvent::decode`] → the
//!   correlator, with bounded tables and well-formed records whatever the kernel side sends.
//! - [`cgroup_path`]: [`crate::cgroup::classify`] and [`crate::cgroup::parse_container`].
//! - `crate::kube::object_checks` (re-exported as [`pod_object`]): API server bytes → `Pod`
//!   → the index's view of it.
//!
//! Compiled for tests and with the `fuzzing` feature only.
#![expect(
    clippy::must_use_candidate,
    reason = "the checks are called for their panics; what they return is for tests that want more"
)]

pub mod cgroup_path;
pub mod ring_buffer;

pub use crate::kube::object_checks as pod_object;

#[cfg(test)]
pub(crate) mod testing;
