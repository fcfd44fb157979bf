use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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

/// A real v1 memory cgroup of this test's own below `/sys/fs/cgroup/memory` (PLATFORM.md:
/// root, cgroup v1), removed when the test ends, pass or fail.
struct RealCgroup {
    hierarchy: MemoryHierarchy,
    rel: String,
}

impl RealCgroup {
    fn new(what: &str) -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let hierarchy = MemoryHierarchy::detect(Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(
            hierarchy.version,
            CgroupVersion::V1,
            "this machine has cgroup v1"
        );
        let rel = format!(
            "/coroner-test-reader-{what}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = Self { hierarchy, rel };
        fs::create_dir(cgroup.dir()).unwrap();
        cgroup
    }

    fn dir(&self) -> PathBuf {
        self.hierarchy.absolute(&self.rel)
    }

    fn set_limit(&self, limit: &str) {
        fs::write(self.dir().join("memory.limit_in_bytes"), limit).unwrap();
    }
}

impl Drop for RealCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(self.dir());
    }
}

#[test]
fn real_cgroup_fresh_values_and_removal() {
    let cgroup = RealCgroup::new("fresh");
    let rel = cgroup.rel.clone();
    let mut reader = MemoryReader::new(cgroup.hierarchy.clone());
    let first = reader.memory(&rel);
    assert_eq!(first, cgroup.hierarchy.memory(&rel));
    assert_eq!(first.limit_bytes, None, "a new v1 cgroup is unlimited");
    assert_eq!(reader.open_memcgs(), 1);

    cgroup.set_limit("64M");
    assert_eq!(reader.memory(&rel).limit_bytes, Some(64 << 20));
    cgroup.set_limit("32M");
    assert_eq!(reader.memory(&rel).limit_bytes, Some(32 << 20));

    // Charge 8 MiB of tmpfs pages to the cgroup: the open peak file shows it.
    let shm = format!("/dev/shm/{}", rel.trim_start_matches('/'));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && head -c 8M /dev/zero > {shm}",
            cgroup.dir().display()
        ))
        .status()
        .unwrap();
    let _ = fs::remove_file(&shm);
    assert!(status.success());
    let peak = reader.memory(&rel).peak_bytes.unwrap();
    assert!(peak >= 8 << 20, "peak {peak} after 8 MiB were charged");
    assert_eq!(reader.memory(&rel), cgroup.hierarchy.memory(&rel));
    assert_eq!(reader.open_memcgs(), 1);

    // Removed: the open files fail (ENODEV), are closed, and nothing is read.
    fs::remove_dir(cgroup.dir()).unwrap();
    assert_eq!(reader.memory(&rel), ContainerMemory::default());
    assert_eq!(reader.open_memcgs(), 0);

    // A new cgroup at the same path is a different cgroup: its own values.
    fs::create_dir(cgroup.dir()).unwrap();
    assert_eq!(reader.memory(&rel), memory(Some(0), None));
    assert_eq!(reader.open_memcgs(), 1);
    fs::remove_dir(cgroup.dir()).unwrap();
    fs::create_dir(cgroup.dir()).unwrap();
    cgroup.set_limit("16M");
    // The cached descriptors are of the removed cgroup: read fails, the new one is opened.
    assert_eq!(reader.memory(&rel), memory(Some(0), Some(16 << 20)));
    assert_eq!(reader.open_memcgs(), 1);
}

/// Per-call cost, by path and kept open, on a real cgroup at the depth of a kubelet one.
/// `cargo test --release -p coroner --lib cgroup::hierarchy::reader -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_memory_reads() {
    let top = RealCgroup::new("measure");
    let deep = format!(
        "{}/kubepods/burstable/pod7c0e2a51-93d4-4f0b-8a6e-1d2c3b4a5f60",
        top.rel
    );
    let leaf = format!("{deep}/{}", "ab".repeat(32));
    let mut made = Vec::new();
    let mut partial = top.rel.clone();
    for part in leaf
        .trim_start_matches(&top.rel)
        .split('/')
        .filter(|p| !p.is_empty())
    {
        partial = format!("{partial}/{part}");
        fs::create_dir(top.hierarchy.absolute(&partial)).unwrap();
        made.push(partial.clone());
    }
    let n: u32 = 100_000;
    let hierarchy = top.hierarchy.clone();
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(hierarchy.memory(&leaf));
    }
    let by_path = started.elapsed() / n;
    let mut reader = MemoryReader::new(hierarchy.clone());
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(reader.memory(&leaf));
    }
    let kept_open = started.elapsed() / n;
    reader.begin_batch();
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(reader.memory(&leaf));
    }
    let in_batch = started.elapsed() / n;
    reader.end_batch();
    drop(reader);
    println!(
        "memory() per call, {n} calls: by path {by_path:?}, kept open {kept_open:?}, \
         within one batch {in_batch:?}"
    );
    for dir in made.iter().rev() {
        fs::remove_dir(hierarchy.absolute(dir)).unwrap();
    }
}
