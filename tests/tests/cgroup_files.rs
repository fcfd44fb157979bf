//! The memory cgroup files on a real memory cgroup this test makes below
//! `/sys/fs/cgroup/memory` (PLATFORM.md: root, cgroup v1), as the agent's reader keeps them
//! open: fresh values after each change, closed when the cgroup is removed, and a new cgroup
//! at the same path read as the new one. Needs root; run through `cargo xtask test`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use coroner::cgroup::{CgroupVersion, ContainerMemory, MemoryHierarchy, MemoryReader};

fn memory(peak: Option<u64>, limit: Option<u64>) -> ContainerMemory {
    ContainerMemory {
        peak_bytes: peak,
        limit_bytes: limit,
    }
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
