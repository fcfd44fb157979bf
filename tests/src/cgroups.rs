//! Memory cgroups the tests create — kubelet-style paths, real directories in the memory
//! hierarchy — and remove again, killing only processes inside them.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result, bail};

/// The memory hierarchy of this machine: cgroup v1 `memory` controller or the v2 unified one.
#[derive(Clone, Debug)]
pub struct MemoryRoot {
    pub root: PathBuf,
    pub v2: bool,
}

impl MemoryRoot {
    pub fn detect() -> Result<Self> {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() || v1.join("cgroup.procs").exists() {
            return Ok(Self {
                root: v1.into(),
                v2: false,
            });
        }
        let v2 = Path::new("/sys/fs/cgroup");
        if fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            return Ok(Self {
                root: v2.into(),
                v2: true,
            });
        }
        bail!("no memory cgroup hierarchy under /sys/fs/cgroup")
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A short random-looking hex string, unique per call within and across test processes.
pub fn unique_hex(len: usize) -> String {
    let seed = u64::from(std::process::id()) << 32
        ^ SEQ.fetch_add(1, Ordering::Relaxed) << 20
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut out = String::with_capacity(len);
    let mut x = seed | 1;
    while out.len() < len {
        // xorshift64*: enough spread for names, no dependency.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let _ = write!(out, "{:016x}", x.wrapping_mul(0x2545_f491_4f6c_dd1d));
    }
    out.truncate(len);
    out
}

/// A pod UID in the API server's spelling.
#[must_use]
pub fn pod_uid() -> String {
    let h = unique_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Kubelet cgroup layouts the tests stage.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// `kubepods/burstable/pod<uid>/<id>`
    CgroupfsBurstable,
    /// `kubepods/pod<uid>/<id>` (guaranteed)
    CgroupfsGuaranteed,
    /// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope`
    SystemdContainerd,
    /// the same with `crio-<id>.scope`
    SystemdCrio,
}

/// Where the test's kubepods trees go: a private top so nothing real is touched.
#[must_use]
pub fn kubepods_top() -> String {
    format!("coroner-test-{}", unique_hex(8))
}

#[must_use]
pub fn container_path(layout: Layout, top: &str, pod_uid: &str, container_id: &str) -> String {
    let uid_ = pod_uid.replace('-', "_");
    match layout {
        Layout::CgroupfsBurstable => {
            format!("{top}/kubepods/burstable/pod{pod_uid}/{container_id}")
        }
        Layout::CgroupfsGuaranteed => format!("{top}/kubepods/pod{pod_uid}/{container_id}"),
        Layout::SystemdContainerd => format!(
            "{top}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{container_id}.scope"
        ),
        Layout::SystemdCrio => format!(
            "{top}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{container_id}.scope"
        ),
    }
}

/// A cgroup (and the parents it had to create), removed on drop after killing what is
/// left inside — only processes in cgroups this guard created.
pub struct TestCgroup {
    pub root: MemoryRoot,
    /// Relative to the hierarchy root, without a leading `/`.
    pub rel: String,
    created: Vec<PathBuf>,
}

impl TestCgroup {
    pub fn create(rel: &str) -> Result<Self> {
        let root = MemoryRoot::detect()?;
        let mut created = Vec::new();
        let mut dir = root.root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if root.v2 {
                // Children only get a memory controller when the parent delegates it.
                let _ = fs::write(dir.join("cgroup.subtree_control"), "+memory");
            }
            dir.push(part);
            if !dir.exists() {
                fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
                created.push(dir.clone());
            }
        }
        Ok(Self {
            root,
            rel: rel.trim_start_matches('/').to_string(),
            created,
        })
    }

    #[must_use]
    pub fn dir(&self) -> PathBuf {
        self.root.root.join(&self.rel)
    }

    /// The cgroup's memory cgroup id: its directory's inode.
    #[must_use]
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(self.dir()).map_or(0, |m| m.ino())
    }

    /// `/`-rooted path as the agent reports it.
    #[must_use]
    pub fn path(&self) -> String {
        format!("/{}", self.rel)
    }

    pub fn set_limit(&self, bytes: u64) -> Result<()> {
        let file = if self.root.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        fs::write(self.dir().join(file), bytes.to_string())
            .with_context(|| format!("setting {file}"))
    }

    #[must_use]
    pub fn procs_file(&self) -> PathBuf {
        self.dir().join("cgroup.procs")
    }

    fn kill_all(dir: &Path) {
        for _ in 0..50 {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2); these pids are in a cgroup this guard created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // Sub-cgroups a test made inside (a container's own children) go first.
            remove_tree(dir);
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    TestCgroup::kill_all(dir);
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
