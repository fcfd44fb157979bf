use super::*;

fn write(dir: &Path, file: &str, contents: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file), contents).unwrap();
}

#[test]
fn detects_v1_memory_controller() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("memory"),
        "memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    // A hybrid host: the unified hierarchy is mounted too, without the memory controller.
    write(
        &tmp.path().join("unified"),
        "cgroup.controllers",
        "hugetlb\n",
    );
    let found = MemoryHierarchy::detect(tmp.path()).unwrap();
    assert_eq!(
        found,
        MemoryHierarchy::new(tmp.path().join("memory"), CgroupVersion::V1)
    );
}

#[test]
fn detects_v1_by_cgroup_procs_alone() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("memory"), "cgroup.procs", "");
    let found = MemoryHierarchy::detect(tmp.path()).unwrap();
    assert_eq!(found.version, CgroupVersion::V1);
    assert_eq!(found.root, tmp.path().join("memory"));
}

#[test]
fn detects_v2_with_memory() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    // A v2 child cgroup that happens to be called `memory` is not a v1 hierarchy.
    write(&tmp.path().join("memory"), "cgroup.procs", "");
    let found = MemoryHierarchy::detect(tmp.path()).unwrap();
    assert_eq!(found, MemoryHierarchy::new(tmp.path(), CgroupVersion::V2));
}

#[test]
fn accepts_a_v1_memory_hierarchy_as_root() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "memory.limit_in_bytes", "9223372036854771712\n");
    let found = MemoryHierarchy::detect(tmp.path()).unwrap();
    assert_eq!(found, MemoryHierarchy::new(tmp.path(), CgroupVersion::V1));
}

#[test]
fn refuses_v2_without_memory_and_empty_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let error = MemoryHierarchy::detect(tmp.path()).unwrap_err();
    assert!(
        matches!(error, CgroupError::NoMemoryController { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("cgroup.controllers is missing"),
        "{error}"
    );

    write(tmp.path(), "cgroup.controllers", "cpu io pids\n");
    let error = MemoryHierarchy::detect(tmp.path()).unwrap_err();
    assert!(
        matches!(error, CgroupError::NoMemoryController { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("lists no `memory`"), "{error}");
    // `memory_foo` or similar must not count as `memory`.
    write(tmp.path(), "cgroup.controllers", "memoryx cpu\n");
    assert!(MemoryHierarchy::detect(tmp.path()).is_err());

    let missing = tmp.path().join("nope");
    let error = MemoryHierarchy::detect(&missing).unwrap_err();
    assert!(matches!(error, CgroupError::NotADirectory(_)), "{error}");
}

#[test]
fn absolute_stays_below_the_root() {
    let hierarchy = MemoryHierarchy::new("/sys/fs/cgroup/memory", CgroupVersion::V1);
    assert_eq!(
        hierarchy.absolute("/"),
        PathBuf::from("/sys/fs/cgroup/memory")
    );
    assert_eq!(
        hierarchy.absolute(""),
        PathBuf::from("/sys/fs/cgroup/memory")
    );
    assert_eq!(
        hierarchy.absolute("/kubepods/burstable/pod1"),
        PathBuf::from("/sys/fs/cgroup/memory/kubepods/burstable/pod1")
    );
    assert_eq!(
        hierarchy.absolute("kubepods"),
        PathBuf::from("/sys/fs/cgroup/memory/kubepods")
    );
    assert_eq!(
        hierarchy.absolute("/../../etc/./passwd"),
        PathBuf::from("/sys/fs/cgroup/memory/etc/passwd")
    );
}

#[test]
fn v1_memory_files() {
    let tmp = tempfile::tempdir().unwrap();
    let hierarchy = MemoryHierarchy::new(tmp.path(), CgroupVersion::V1);
    let dir = tmp.path().join("kubepods/pod1/c1");
    write(&dir, "memory.max_usage_in_bytes", "2173693952\n");
    write(&dir, "memory.limit_in_bytes", "67108864\n");
    let expected = ContainerMemory {
        peak_bytes: Some(2_173_693_952),
        limit_bytes: Some(67_108_864),
    };
    assert_eq!(hierarchy.memory("/kubepods/pod1/c1"), expected);
    assert_eq!(hierarchy.limit_of("/kubepods/pod1/c1"), Some(67_108_864));

    // Unlimited, for 4 KiB and 64 KiB pages.
    for unlimited in [
        "9223372036854771712",
        "9223372036854710272",
        "9223372036854775807",
    ] {
        write(&dir, "memory.limit_in_bytes", unlimited);
        assert_eq!(hierarchy.limit_of("/kubepods/pod1/c1"), None, "{unlimited}");
    }
    // Just below the unlimited floor is still a (huge) limit.
    write(&dir, "memory.limit_in_bytes", "9223372036853723136");
    assert_eq!(
        hierarchy.limit_of("/kubepods/pod1/c1"),
        Some(9_223_372_036_853_723_136)
    );
}

#[test]
fn v2_memory_files() {
    let tmp = tempfile::tempdir().unwrap();
    let hierarchy = MemoryHierarchy::new(tmp.path(), CgroupVersion::V2);
    let dir = tmp.path().join("kubepods.slice/c1.scope");
    write(&dir, "memory.peak", "12345\n");
    write(&dir, "memory.max", "max\n");
    // v1 names in a v2 hierarchy are ignored.
    write(&dir, "memory.limit_in_bytes", "1");
    let rel = "/kubepods.slice/c1.scope";
    assert_eq!(
        hierarchy.memory(rel),
        ContainerMemory {
            peak_bytes: Some(12_345),
            limit_bytes: None,
        }
    );
    write(&dir, "memory.max", "268435456\n");
    assert_eq!(hierarchy.limit_of(rel), Some(268_435_456));
    // Before 5.19 there is no memory.peak.
    fs::remove_file(dir.join("memory.peak")).unwrap();
    assert_eq!(hierarchy.memory(rel).peak_bytes, None);
}

#[test]
fn missing_and_garbage_files_are_none() {
    let tmp = tempfile::tempdir().unwrap();
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let hierarchy = MemoryHierarchy::new(tmp.path(), version);
        assert_eq!(hierarchy.memory("/gone"), ContainerMemory::default());
        assert_eq!(hierarchy.limit_of("/gone"), None);
    }
    let dir = tmp.path().join("odd");
    write(&dir, "memory.max", "lots\n");
    write(&dir, "memory.peak", "-1\n");
    write(&dir, "memory.max_usage_in_bytes", "\u{fffd}");
    write(&dir, "memory.limit_in_bytes", "");
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let hierarchy = MemoryHierarchy::new(tmp.path(), version);
        assert_eq!(
            hierarchy.memory("/odd"),
            ContainerMemory::default(),
            "{version:?}"
        );
    }
    // A directory where a file should be.
    fs::create_dir_all(tmp.path().join("dir/memory.max")).unwrap();
    assert_eq!(
        MemoryHierarchy::new(tmp.path(), CgroupVersion::V2).limit_of("/dir"),
        None
    );
}

/// The machine's own hierarchy (PLATFORM.md: cgroup v1, memory at /sys/fs/cgroup/memory).
#[test]
fn detects_this_machine() {
    let root = Path::new("/sys/fs/cgroup");
    let Ok(hierarchy) = MemoryHierarchy::detect(root) else {
        panic!("no memory hierarchy under {}", root.display());
    };
    match hierarchy.version {
        CgroupVersion::V1 => {
            assert_eq!(hierarchy.root, root.join("memory"));
            // The root memory cgroup is never limited; it has a peak.
            let memory = hierarchy.memory("/");
            assert_eq!(memory.limit_bytes, None);
            assert!(memory.peak_bytes.is_some_and(|peak| peak > 0), "{memory:?}");
        }
        CgroupVersion::V2 => assert_eq!(hierarchy.root, root),
    }
}
