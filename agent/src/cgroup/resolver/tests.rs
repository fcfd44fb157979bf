//! The resolver against plain directory trees: the walk and caches without cgroups.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;
use crate::cgroup::hierarchy::{CgroupVersion, ContainerMemory};
use crate::cgroup::{QosClass, Runtime};

const UID: &str = "0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70";
const UID_SYSTEMD: &str = "0f1d7c3a_4b6e_4d2a_9c1e_2b3c4d5e6f70";
const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

fn mkdir(root: &Path, rel: &str) -> u64 {
    let dir = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(&dir).unwrap();
    fs::metadata(&dir).unwrap().ino()
}

fn no_cooldown() -> ResolverLimits {
    ResolverLimits {
        min_walk_interval: Duration::ZERO,
        ..ResolverLimits::default()
    }
}

fn non_zero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

#[test]
fn resolves_v1_cgroupfs_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let container_rel = format!("/kubepods/burstable/pod{UID}/{ID}");
    let container_id = mkdir(root, &container_rel);
    let sub_id = mkdir(root, &format!("{container_rel}/sub"));
    let pod_id = mkdir(root, &format!("/kubepods/burstable/pod{UID}"));
    let host_id = mkdir(root, "/system.slice/containerd.service");
    fs::write(root.join("system.slice/memory.limit_in_bytes"), "1").unwrap();
    let file_id = fs::metadata(root.join("system.slice/memory.limit_in_bytes"))
        .unwrap()
        .ino();
    let root_id = fs::metadata(root).unwrap().ino();

    let mut resolver =
        CgroupResolver::with_limits(MemoryHierarchy::new(root, CgroupVersion::V1), no_cooldown());
    let info = resolver.resolve(container_id).expect("container cgroup");
    assert_eq!(info.path, container_rel);
    let container = info.container.expect("a container");
    assert_eq!(container.pod_uid, UID);
    assert_eq!(container.container_id, ID);
    assert_eq!(container.runtime, Runtime::Unknown);
    assert_eq!(container.qos, QosClass::Burstable);
    assert_eq!(resolver.stats().walks, 1);

    // One walk indexed everything: these are all cache hits.
    let sub = resolver.resolve(sub_id).unwrap();
    assert_eq!(sub.path, format!("{container_rel}/sub"));
    assert_eq!(sub.container.unwrap().container_id, ID);
    let pod = resolver.resolve(pod_id).unwrap();
    assert_eq!(
        (pod.path.as_str(), pod.container),
        (format!("/kubepods/burstable/pod{UID}").as_str(), None)
    );
    assert_eq!(
        resolver.resolve(host_id).unwrap().path,
        "/system.slice/containerd.service"
    );
    assert_eq!(resolver.resolve(root_id).unwrap().path, "/");
    assert_eq!(resolver.stats().walks, 1);
    assert_eq!(resolver.cached_cgroups(), 8);

    // Files are not cgroups.
    assert_eq!(resolver.resolve(file_id), None);
    assert_eq!(resolver.stats().walks, 2);
    assert_eq!(resolver.stats().unknown_ids, 1);

    // The cgroup is gone; what was seen is kept.
    fs::remove_dir_all(root.join("kubepods")).unwrap();
    assert_eq!(resolver.resolve(container_id).unwrap().path, container_rel);
}

#[test]
fn resolves_v2_systemd_tree_and_reads_its_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::write(root.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
    let hierarchy = MemoryHierarchy::detect(root).unwrap();
    assert_eq!(hierarchy.version, CgroupVersion::V2);
    let rel = format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"
    );
    let id = mkdir(root, &rel);
    let dir = root.join(rel.trim_start_matches('/'));
    fs::write(dir.join("memory.peak"), "4096\n").unwrap();
    fs::write(dir.join("memory.max"), "1048576\n").unwrap();
    let conmon = format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-conmon-{ID}.scope"
    );
    let conmon_id = mkdir(root, &conmon);

    let mut resolver = CgroupResolver::with_limits(hierarchy, no_cooldown());
    let info = resolver.resolve(id).unwrap();
    assert_eq!(info.path, rel);
    let container = info.container.unwrap();
    assert_eq!(
        (container.runtime, container.qos),
        (Runtime::CriO, QosClass::BestEffort)
    );
    assert_eq!(container.pod_uid, UID);
    assert_eq!(
        resolver.hierarchy().memory(&info.path),
        ContainerMemory {
            peak_bytes: Some(4096),
            limit_bytes: Some(1_048_576),
        }
    );
    assert_eq!(resolver.resolve(conmon_id).unwrap().container, None);
    assert_eq!(resolver.stats().unmatched_kubepods, 0);
}

#[test]
fn unknown_ids_are_rate_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let known = mkdir(root, "/a");
    let interval = Duration::from_millis(300);
    let limits = ResolverLimits {
        min_walk_interval: interval,
        negative_ttl: Duration::from_millis(600),
        ..ResolverLimits::default()
    };
    let mut resolver =
        CgroupResolver::with_limits(MemoryHierarchy::new(root, CgroupVersion::V1), limits);
    let unknown = u64::MAX - 1;
    assert_eq!(resolver.resolve(unknown), None);
    assert_eq!(resolver.stats().walks, 1);

    // Asked again: the negative cache answers, no walk, no wait.
    let started = Instant::now();
    for _ in 0..1000 {
        assert_eq!(resolver.resolve(unknown), None);
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(resolver.stats().walks, 1);
    assert_eq!(resolver.stats().unknown_ids, 1001);

    // Ids below the newest seen, during the cool-down: unknown at once, no walk.
    let started = Instant::now();
    for id in 1..=known.min(500) {
        if id != known {
            assert_eq!(resolver.resolve(id), None);
        }
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(resolver.stats().walks, 1);

    // A new id during the cool-down waits for the next walk.
    let late = u64::MAX - 2;
    let started = Instant::now();
    assert_eq!(resolver.resolve(late), None);
    assert!(
        started.elapsed() >= interval.saturating_sub(Duration::from_millis(150)),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resolver.stats().walks, 2);

    // Once the negative entry expires, the id is worth another walk.
    thread::sleep(Duration::from_millis(650));
    assert_eq!(resolver.resolve(unknown), None);
    assert_eq!(resolver.stats().walks, 3);
    assert_eq!(resolver.resolve(known).unwrap().path, "/a");
}

#[test]
fn caches_stay_bounded_under_churn() {
    let tmp = tempfile::tempdir().unwrap();
    let root = &tmp.path().join("root");
    // Removed trees go here instead of away, so that the file system cannot hand their inode
    // numbers to new directories (cgroupfs never reuses ids; ext4 does reuse inodes).
    let graveyard = tmp.path().join("graveyard");
    fs::create_dir_all(&graveyard).unwrap();
    let limits = ResolverLimits {
        max_cached_cgroups: non_zero(32),
        max_unknown_ids: non_zero(16),
        max_warned_prefixes: non_zero(4),
        max_walk_dirs: non_zero(1000),
        ..no_cooldown()
    };
    let mut resolver =
        CgroupResolver::with_limits(MemoryHierarchy::new(root, CgroupVersion::V1), limits);
    for round in 0..20 {
        let mut seen = Vec::new();
        for i in 0..5 {
            // Broken layouts, each under its own prefix: counted, and warned about in bounds.
            let rel = format!("/r{round}-{i}/kubepods/weird/x");
            seen.push((mkdir(root, &rel), rel));
        }
        for (id, rel) in &seen {
            let info = resolver.resolve(*id).unwrap();
            assert_eq!(&info.path, rel);
            assert_eq!(info.container, None);
        }
        assert!(
            resolver.cached_cgroups() <= 32,
            "{}",
            resolver.cached_cgroups()
        );
        assert!(resolver.warned_prefixes() <= 4);
        for i in 0..5 {
            let name = format!("r{round}-{i}");
            fs::rename(root.join(&name), graveyard.join(&name)).unwrap();
        }
        // Gone, but seen: still resolves.
        assert_eq!(resolver.resolve(seen[0].0).unwrap().path, seen[0].1);
    }
    assert_eq!(resolver.stats().walks, 20);
    // `weird` and `x` of every tree, each counted once.
    assert_eq!(resolver.stats().unmatched_kubepods, 20 * 5 * 2);
    assert_eq!(resolver.warned_prefixes(), 4);
    for id in 0..1000 {
        assert_eq!(resolver.resolve(u64::MAX - id), None);
        assert!(resolver.unknown_ids() <= 16);
    }
    assert_eq!(resolver.unknown_ids(), 16);
    assert_eq!(resolver.cached_cgroups(), 32);
}

/// A churn of short-lived cgroups (each noted from its `cgroup_mkdir`) pushes a long-lived
/// host cgroup, seen only by a walk, out of the cache; a death in it must still resolve — as
/// a host cgroup, not as an id of a cgroup that is gone (a loss). A cgroup that really went
/// stays unknown without a walk during the cool-down.
#[test]
fn a_cgroup_the_cache_let_go_of_is_walked_for_not_declared_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let host = mkdir(root, "/process_api/session");
    let gone = mkdir(root, "/process_api/done");
    let limits = ResolverLimits {
        max_cached_cgroups: non_zero(8),
        max_walk_dirs: non_zero(8),
        min_walk_interval: Duration::from_millis(300),
        ..ResolverLimits::default()
    };
    let mut resolver =
        CgroupResolver::with_limits(MemoryHierarchy::new(root, CgroupVersion::V1), limits);
    resolver.refresh();
    fs::remove_dir(root.join("process_api/done")).unwrap();
    assert_eq!(resolver.resolve(gone).unwrap().path, "/process_api/done");
    for i in 0..20 {
        resolver.note_created(
            u64::MAX / 2 + i,
            &format!("/kubepods/burstable/pod{UID}/c{i}"),
        );
    }
    let walks = resolver.stats().walks;
    // Both were pushed out. The live one is walked for, after the cool-down.
    let info = resolver
        .resolve(host)
        .expect("a live cgroup the cache let go of");
    assert_eq!(info.path, "/process_api/session");
    assert_eq!(info.container, None);
    assert_eq!(resolver.stats().walks, walks + 1);
    // The removed one: one more walk (it too was only pushed out, as far as anyone knew),
    // then unknown, and no further walk while it is remembered as such.
    assert_eq!(resolver.resolve(gone), None);
    assert_eq!(resolver.stats().walks, walks + 2);
    assert_eq!(resolver.resolve(gone), None);
    assert_eq!(resolver.stats().walks, walks + 2);
}

#[test]
fn truncated_walk_covers_kubepods_first() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for i in 0..50 {
        mkdir(root, &format!("/aaa/host{i}"));
    }
    let rel = format!("/kubepods/pod{UID}/{ID}");
    let id = mkdir(root, &rel);
    let limits = ResolverLimits {
        max_walk_dirs: non_zero(10),
        ..no_cooldown()
    };
    let mut resolver =
        CgroupResolver::with_limits(MemoryHierarchy::new(root, CgroupVersion::V1), limits);
    assert_eq!(resolver.resolve(id).unwrap().path, rel);
    assert_eq!(resolver.stats().truncated_walks, 1);
    assert!(resolver.cached_cgroups() <= 10);
}

#[test]
fn noted_cgroups_resolve_without_walking() {
    let tmp = tempfile::tempdir().unwrap();
    let mut resolver = CgroupResolver::new(MemoryHierarchy::new(tmp.path(), CgroupVersion::V2));
    let rel = format!("kubepods/besteffort/pod{UID}/crio-{ID}");
    resolver.note_created(7, &rel);
    let info = resolver.resolve(7).unwrap();
    assert_eq!(info.path, format!("/{rel}"));
    assert_eq!(info.container.unwrap().runtime, Runtime::CriO);
    assert_eq!(resolver.stats().walks, 0);
}

#[test]
fn refresh_indexes_ahead_of_need() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let rel = format!("/kubepods/pod{UID}/{ID}");
    let id = mkdir(root, &rel);
    // A long cool-down: refresh ignores it, resolve would have to wait for it.
    let limits = ResolverLimits {
        min_walk_interval: Duration::from_mins(1),
        ..ResolverLimits::default()
    };
    let mut resolver =
        CgroupResolver::with_limits(MemoryHierarchy::new(root, CgroupVersion::V1), limits);
    resolver.refresh();
    resolver.refresh();
    assert_eq!(resolver.stats().walks, 2);
    fs::remove_dir_all(root.join("kubepods")).unwrap();
    assert_eq!(resolver.resolve(id).unwrap().path, rel);
    assert_eq!(resolver.stats().walks, 2);
}

#[test]
fn missing_root_fails_walks_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("gone");
    let mut resolver = CgroupResolver::with_limits(
        MemoryHierarchy::new(&gone, CgroupVersion::V1),
        no_cooldown(),
    );
    assert_eq!(resolver.resolve(1), None);
    assert_eq!(
        (resolver.stats().walks, resolver.stats().failed_walks),
        (1, 1)
    );
}

#[test]
fn truncate_respects_char_boundaries() {
    assert_eq!(truncate("abc", 2), "ab");
    assert_eq!(truncate("é", 1), "");
    assert_eq!(truncate("aé", 2), "a");
    assert_eq!(truncate("", 5), "");
}
