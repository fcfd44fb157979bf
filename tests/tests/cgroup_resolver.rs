//! The resolver against real cgroup v1 memory cgroups made under
//! `/sys/fs/cgroup/memory/coroner-test-<random>/` (PLATFORM.md: root, cgroup v1). Needs root:
//! an integration test, run by `cargo xtask test`.

use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use coroner::cgroup::{
    CgroupInfo, CgroupResolver, CgroupVersion, MemoryHierarchy, QosClass, ResolverLimits, Runtime,
};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const UID: &str = "7c0e2a51-93d4-4f0b-8a6e-1d2c3b4a5f60";
const UID_SYSTEMD: &str = "7c0e2a51_93d4_4f0b_8a6e_1d2c3b4a5f60";
const ID: &str = "aa11bb22cc33dd44ee55ff66778899001122334455667788990011aabbccddee";

/// Real cgroups made by a test, removed (deepest first) when it ends, pass or fail.
struct Cgroups {
    hierarchy: MemoryHierarchy,
    /// Relative to the hierarchy root, in creation order.
    made: Vec<String>,
    top: String,
}

impl Cgroups {
    fn new() -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let hierarchy =
            MemoryHierarchy::detect(Path::new(CGROUP_ROOT)).expect("a memory cgroup hierarchy");
        assert_eq!(
            hierarchy.version,
            CgroupVersion::V1,
            "these tests make cgroup v1 directories"
        );
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let top = format!(
            "/coroner-test-{}-{nanos:08x}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut cgroups = Self {
            hierarchy,
            made: Vec::new(),
            top: top.clone(),
        };
        cgroups.make(&top);
        cgroups
    }

    /// Makes the cgroup at `rel` below this test's top cgroup, with any missing parents;
    /// returns its path and memcg id.
    fn make_below(&mut self, rel: &str) -> (String, u64) {
        let path = format!("{}{rel}", self.top);
        let mut partial = String::new();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            partial.push('/');
            partial.push_str(component);
            if !self.made.contains(&partial) {
                self.make(&partial.clone());
            }
        }
        let id = self.id_of(&path);
        (path, id)
    }

    fn make(&mut self, rel: &str) {
        fs::create_dir(self.hierarchy.absolute(rel)).unwrap_or_else(|e| panic!("mkdir {rel}: {e}"));
        self.made.push(rel.to_owned());
    }

    fn id_of(&self, rel: &str) -> u64 {
        fs::metadata(self.hierarchy.absolute(rel)).unwrap().ino()
    }

    /// Removes the cgroup at `rel` and everything made below it.
    fn remove(&mut self, rel: &str) {
        let below = format!("{rel}/");
        let mut doomed: Vec<String> = self
            .made
            .iter()
            .filter(|m| *m == rel || m.starts_with(&below))
            .cloned()
            .collect();
        doomed.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for path in &doomed {
            rmdir(&self.hierarchy.absolute(path)).unwrap_or_else(|e| panic!("rmdir {path}: {e}"));
        }
        self.made.retain(|m| !doomed.contains(m));
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        // Children before parents: cgroupfs only removes empty cgroups, one at a time.
        for path in self.made.iter().rev() {
            if let Err(error) = rmdir(&self.hierarchy.absolute(path)) {
                eprintln!("cannot remove test cgroup {path}: {error}");
            }
        }
    }
}

fn rmdir(path: &PathBuf) -> io::Result<()> {
    match fs::remove_dir(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[test]
fn resolves_real_cgroups_to_paths_and_containers() {
    let mut cgroups = Cgroups::new();
    let (cgroupfs_path, cgroupfs_id) =
        cgroups.make_below(&format!("/kubepods/burstable/pod{UID}/{ID}"));
    let (sub, sub_id) = cgroups.make_below(&format!("/kubepods/burstable/pod{UID}/{ID}/inner"));
    let (systemd, systemd_id) = cgroups.make_below(&format!(
        "/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
    ));
    let (pod, pod_id) = cgroups.make_below(&format!("/kubepods/burstable/pod{UID}"));
    let (top, top_id) = (cgroups.top.clone(), cgroups.id_of(&cgroups.top.clone()));

    let mut resolver = CgroupResolver::new(cgroups.hierarchy.clone());
    let info = resolver
        .resolve(cgroupfs_id)
        .expect("the cgroupfs-style cgroup");
    assert_eq!(info.path, cgroupfs_path);
    let container = info.container.expect("a container below a prefix");
    assert_eq!(
        (container.pod_uid.as_str(), container.container_id.as_str()),
        (UID, ID)
    );
    assert_eq!(
        (container.qos, container.runtime),
        (QosClass::Burstable, Runtime::Unknown)
    );

    let info = resolver.resolve(systemd_id).unwrap();
    assert_eq!(info.path, systemd);
    let container = info.container.unwrap();
    assert_eq!(
        (container.qos, container.runtime),
        (QosClass::Guaranteed, Runtime::Containerd)
    );
    assert_eq!(container.pod_uid, UID);

    assert_eq!(resolver.resolve(sub_id).unwrap().path, sub);
    assert_eq!(
        resolver
            .resolve(sub_id)
            .unwrap()
            .container
            .unwrap()
            .container_id,
        ID
    );
    assert_eq!(
        resolver.resolve(pod_id),
        Some(CgroupInfo {
            path: pod,
            container: None
        })
    );
    assert_eq!(resolver.resolve(top_id).unwrap().path, top);
    let root_id = fs::metadata(&cgroups.hierarchy.root).unwrap().ino();
    assert_eq!(resolver.resolve(root_id).unwrap().path, "/");
    // One walk found them all: the directory entry's inode is the cgroup's.
    assert_eq!(resolver.stats().walks, 1);

    // The runtime removes the cgroup; the id still resolves.
    cgroups.remove(&format!("{top}/kubepods"));
    assert!(!cgroups.hierarchy.absolute(&cgroupfs_path).exists());
    assert_eq!(resolver.resolve(cgroupfs_id).unwrap().path, cgroupfs_path);
}

#[test]
fn reads_real_memory_files() {
    let mut cgroups = Cgroups::new();
    let (rel, _) = cgroups.make_below(&format!("/kubepods/pod{UID}/{ID}"));
    let hierarchy = cgroups.hierarchy.clone();
    let fresh = hierarchy.memory(&rel);
    assert_eq!(fresh.limit_bytes, None, "a new v1 cgroup is unlimited");
    assert!(fresh.peak_bytes.is_some());
    fs::write(
        hierarchy.absolute(&rel).join("memory.limit_in_bytes"),
        "64M",
    )
    .unwrap();
    assert_eq!(hierarchy.limit_of(&rel), Some(64 << 20));
    assert_eq!(hierarchy.memory(&rel).limit_bytes, Some(64 << 20));
}

#[test]
fn churn_of_real_cgroups_keeps_caches_bounded() {
    let mut cgroups = Cgroups::new();
    let limits = ResolverLimits {
        max_cached_cgroups: NonZeroUsize::new(256).unwrap(),
        max_unknown_ids: NonZeroUsize::new(8).unwrap(),
        min_walk_interval: Duration::ZERO,
        ..ResolverLimits::default()
    };
    let mut resolver = CgroupResolver::with_limits(cgroups.hierarchy.clone(), limits);
    let mut never_seen = Vec::new();
    for round in 0..15 {
        let pod_dir = format!("/kubepods/besteffort/pod{UID}");
        let mut live = Vec::new();
        for i in 0..20u32 {
            let id = format!("{:0>64x}", round * 1000 + i);
            live.push(cgroups.make_below(&format!("{pod_dir}/{id}")));
        }
        for (rel, memcg_id) in &live {
            let info = resolver
                .resolve(*memcg_id)
                .unwrap_or_else(|| panic!("{rel} unresolved"));
            assert_eq!(&info.path, rel);
            assert_eq!(info.container.unwrap().qos, QosClass::BestEffort);
        }
        // A container that came and went between two walks.
        let (gone, gone_id) = cgroups.make_below(&format!(
            "/kubepods/besteffort/pod{UID}/{:0>64x}",
            999_999 - round
        ));
        cgroups.remove(&gone);
        never_seen.push(gone_id);
        for (rel, _) in &live {
            cgroups.remove(rel);
        }
        assert!(
            resolver.cached_cgroups() <= 256,
            "{}",
            resolver.cached_cgroups()
        );
    }
    for memcg_id in never_seen {
        assert_eq!(resolver.resolve(memcg_id), None);
        assert!(resolver.unknown_ids() <= 8);
    }
    assert_eq!(resolver.unknown_ids(), 8);
    // Every walk covered the whole (small) test tree, but the caches did not grow with it.
    assert!(resolver.cached_cgroups() <= 256);
    assert!(resolver.stats().walks >= 15);
}
