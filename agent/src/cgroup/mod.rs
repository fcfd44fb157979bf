//! Container identity: memory cgroup id → path → (pod uid, container id).
//! cgroup v1 and v2, cgroupfs and systemd drivers, containerd / CRI-O / docker.
//!
//! [`MemoryHierarchy::detect`] finds the memory hierarchy, [`CgroupResolver`] turns the
//! kernel's memcg ids into [`CgroupInfo`], [`classify`] tells containers from pods and host
//! cgroups by path alone.

mod hierarchy;
mod layout;
mod resolver;
mod running;
mod walk;

pub use hierarchy::{
    CgroupError, CgroupVersion, ContainerMemory, MAX_OPEN_MEMCGS, MemoryHierarchy, MemoryReader,
};
pub use layout::{CgroupClass, classify, parse_container};
pub use resolver::{
    CgroupResolver, MAX_CACHED_CGROUPS, MAX_UNKNOWN_IDS, MAX_WARNED_PREFIXES, MIN_WALK_INTERVAL,
    NEGATIVE_TTL, ResolverCacheSizes, ResolverLimits, ResolverStats,
};
pub use running::{RunningContainer, running_containers};

/// Which container runtime named the cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    /// cgroupfs driver: the leaf is the bare container id, the runtime is not named.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// A container, as its memory cgroup path names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// The pod's UID with dashes, as the API server spells it.
    pub pod_uid: String,
    /// The runtime's container id (64 hex digits), without any `containerd://` style prefix.
    pub container_id: String,
    pub runtime: Runtime,
    pub qos: QosClass,
}

/// What a memory cgroup id stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Path relative to the memory hierarchy's root, starting with `/`.
    pub path: String,
    /// `Some` when the path matches a kubelet layout for a container.
    pub container: Option<ContainerRef>,
}
