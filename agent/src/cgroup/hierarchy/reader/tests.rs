//! The reader over hand-made hierarchies in temporary directories; on a real memory cgroup
//! (root, cgroup v1): `tests/tests/cgroup_files.rs`.

use std::fs;
use std::path::Path;

use super::*;

fn write(dir: &Path, file: &str, contents: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file), contents).unwrap();
}

fn reader(root: &Path, version: CgroupVersion, cap: usize) -> MemoryReader {
    MemoryReader::with_capacity(
        MemoryHierarchy::new(root, version),
        NonZeroUsize::new(cap).unwrap(),
    )
}

fn memory(peak: Option<u64>, limit: Option<u64>) -> ContainerMemory {
    ContainerMemory {
        peak_bytes: peak,
        limit_bytes: limit,
    }
}

#[test]
fn reads_what_the_hierarchy_reads_and_sees_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kubepods/pod1/c1");
    write(&dir, "memory.max_usage_in_bytes", "2173693952\n");
    write(&dir, "memory.limit_in_bytes", "67108864\n");
    let mut reader = reader(tmp.path(), CgroupVersion::V1, 4);
    let rel = "/kubepods/pod1/c1";
    let uncached = MemoryHierarchy::new(tmp.path(), CgroupVersion::V1).memory(rel);
    assert_eq!(uncached, memory(Some(2_173_693_952), Some(64 << 20)));
    assert_eq!(reader.memory(rel), uncached);
    assert_eq!(reader.open_memcgs(), 1);

    // The same descriptors, read again at offset 0, give what the files say now.
    write(&dir, "memory.max_usage_in_bytes", "3000\n");
    write(&dir, "memory.limit_in_bytes", "9223372036854771712\n");
    assert_eq!(reader.memory(rel), memory(Some(3000), None));
    write(&dir, "memory.limit_in_bytes", "4096\n");
    assert_eq!(reader.memory(rel), memory(Some(3000), Some(4096)));
    assert_eq!(reader.open_memcgs(), 1);
}

#[test]
fn v2_files_and_a_kernel_without_memory_peak() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kubepods.slice/c1.scope");
    write(&dir, "memory.peak", "12345\n");
    write(&dir, "memory.max", "max\n");
    write(&dir, "memory.limit_in_bytes", "1");
    let mut reader = reader(tmp.path(), CgroupVersion::V2, 4);
    assert_eq!(
        reader.memory("/kubepods.slice/c1.scope"),
        memory(Some(12_345), None)
    );

    // Before 5.19 there is no memory.peak: the limit alone is kept open.
    let old = tmp.path().join("old.scope");
    write(&old, "memory.max", "268435456\n");
    assert_eq!(reader.memory("/old.scope"), memory(None, Some(256 << 20)));
    write(&old, "memory.max", "1024\n");
    assert_eq!(reader.memory("/old.scope"), memory(None, Some(1024)));
    assert_eq!(reader.open_memcgs(), 2);
}

#[test]
fn missing_and_garbage_files_are_none() {
    let tmp = tempfile::tempdir().unwrap();
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let mut reader = reader(tmp.path(), version, 4);
        assert_eq!(reader.memory("/gone"), ContainerMemory::default());
        assert_eq!(
            reader.open_memcgs(),
            0,
            "nothing to keep open for a missing cgroup"
        );
    }
    let dir = tmp.path().join("odd");
    write(&dir, "memory.max", "lots\n");
    write(&dir, "memory.peak", "-1\n");
    write(&dir, "memory.max_usage_in_bytes", "\u{fffd}");
    write(&dir, "memory.limit_in_bytes", &"9".repeat(40));
    for version in [CgroupVersion::V1, CgroupVersion::V2] {
        let mut reader = reader(tmp.path(), version, 4);
        for _ in 0..2 {
            assert_eq!(
                reader.memory("/odd"),
                ContainerMemory::default(),
                "{version:?}"
            );
        }
    }
    // A directory where a file should be cannot be read: nothing is kept for it.
    fs::create_dir_all(tmp.path().join("dir/memory.max")).unwrap();
    write(&tmp.path().join("dir"), "memory.peak", "7\n");
    let mut reader = reader(tmp.path(), CgroupVersion::V2, 4);
    assert_eq!(reader.memory("/dir"), memory(Some(7), None));
    assert_eq!(reader.open_memcgs(), 0);
}

#[test]
fn keeps_at_most_its_cap_least_recently_read_closed_first() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..10 {
        write(
            &tmp.path().join(format!("c{i}")),
            "memory.peak",
            &format!("{i}\n"),
        );
        write(&tmp.path().join(format!("c{i}")), "memory.max", "max\n");
    }
    let mut reader = reader(tmp.path(), CgroupVersion::V2, 3);
    for i in 0..10 {
        assert_eq!(reader.memory(&format!("/c{i}")).peak_bytes, Some(i));
        // c0 is read again and again: it stays.
        assert_eq!(reader.memory("/c0").peak_bytes, Some(0));
        assert!(reader.open_memcgs() <= 3);
    }
    assert_eq!(reader.open_memcgs(), 3);
    assert!(reader.open.contains("/c0"));
    assert!(reader.open.contains("/c9"));
    assert!(reader.open.contains("/c8"));
    // An evicted cgroup is simply opened again.
    write(&tmp.path().join("c1"), "memory.peak", "100\n");
    assert_eq!(reader.memory("/c1").peak_bytes, Some(100));
    assert_eq!(reader.open_memcgs(), 3);
}

#[test]
fn a_batch_reads_each_cgroup_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    write(&dir, "memory.peak", "1\n");
    write(&dir, "memory.max", "max\n");
    let mut reader = reader(tmp.path(), CgroupVersion::V2, 4);

    reader.begin_batch();
    assert_eq!(reader.memory("/c").peak_bytes, Some(1));
    write(&dir, "memory.peak", "2\n");
    assert_eq!(
        reader.memory("/c").peak_bytes,
        Some(1),
        "one reading per batch"
    );
    reader.end_batch();
    assert_eq!(
        reader.memory("/c").peak_bytes,
        Some(2),
        "outside a batch every call reads"
    );
    write(&dir, "memory.peak", "3\n");
    assert_eq!(reader.memory("/c").peak_bytes, Some(3));

    // The next batch reads again; a cgroup first opened inside a batch is memoized too.
    reader.begin_batch();
    assert_eq!(reader.memory("/c").peak_bytes, Some(3));
    write(&dir, "memory.peak", "4\n");
    write(&tmp.path().join("d"), "memory.peak", "10\n");
    assert_eq!(reader.memory("/d").peak_bytes, Some(10));
    write(&tmp.path().join("d"), "memory.peak", "11\n");
    assert_eq!(reader.memory("/d").peak_bytes, Some(10));
    assert_eq!(reader.memory("/c").peak_bytes, Some(3));
    reader.end_batch();
    reader.begin_batch();
    assert_eq!(reader.memory("/c").peak_bytes, Some(4));
    assert_eq!(reader.memory("/d").peak_bytes, Some(11));
    reader.end_batch();
}
