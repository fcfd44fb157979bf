//! The real container runtime in the suite: a containerd of the test's own with runc and crun
//! ([`containerd`]), the images it runs, built offline ([`images`]), a kubelet double that drives
//! it through the CRI ([`kubelet`]) and tells the API server double what the kubelet would
//! ([`publish`]); a node with the API server double and the agent watching it ([`cluster`]),
//! and what the kubelet and the controllers publish about a pod it runs ([`stage`]).

pub mod cluster;
pub mod containerd;
pub mod host;
pub mod images;
pub mod kubelet;
pub mod publish;
pub mod spec;
pub mod stage;

pub use cluster::Cluster;
pub use containerd::Handler;
pub use kubelet::Kubelet;
pub use spec::{ContainerSpec, ExecResult, Pod, PodOptions, Qos, Status};

/// Whether a real-runtime test can run: root is needed (containerd, cgroups, BPF). Prints why
/// not and returns false when not root; fails when root but the runtime is missing (`cargo xtask
/// test` installs it), so a machine without it never passes by skipping.
#[must_use]
pub fn available(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED {test}: the real-runtime tests need root (containerd, cgroups, BPF)");
        return false;
    }
    if let Err(e) = containerd::require_binaries() {
        panic!("{test}: {e:#}");
    }
    true
}

/// Each listed test once with runc and once with crun: `fn NAME(handler: Handler)` in the
/// calling file becomes the tests `runc::NAME` and `crun::NAME`.
#[macro_export]
macro_rules! with_both_runtimes {
    ($($test:ident),* $(,)?) => {
        mod runc {
            $( #[test] fn $test() { super::$test($crate::runtime::Handler::Runc) } )*
        }
        mod crun {
            $( #[test] fn $test() { super::$test($crate::runtime::Handler::Crun) } )*
        }
    };
}
