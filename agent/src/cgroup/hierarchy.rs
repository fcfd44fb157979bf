//! The memory cgroup hierarchy: where it is mounted, which version, and what its memory
//! files say.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::num::ParseIntError;
use std::path::{Component, Path, PathBuf};

use tracing::debug;

mod reader;
pub use reader::{MAX_OPEN_MEMCGS, MemoryReader};

/// v1's "no limit": `PAGE_COUNTER_MAX` pages, i.e. `i64::MAX` rounded down to the page size
/// (9223372036854771712 with 4 KiB pages). Rounding down to 1 MiB covers every page size.
const V1_UNLIMITED_FLOOR: u64 = (i64::MAX as u64) & !((1 << 20) - 1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The memory controller has its own hierarchy (`<cgroup root>/memory`).
    V1,
    /// The unified hierarchy, with the memory controller enabled at its root.
    V2,
}

/// A mounted memory cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryHierarchy {
    /// The directory of the hierarchy's root cgroup, e.g. `/sys/fs/cgroup/memory` (v1) or
    /// `/sys/fs/cgroup` (v2).
    pub root: PathBuf,
    pub version: CgroupVersion,
}

/// A memory cgroup's peak usage and limit; `None` where the kernel does not say or there is
/// no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerMemory {
    pub peak_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup root {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "no memory cgroup controller under {root}: no cgroup v1 memory hierarchy at \
         {root}/memory and {v2}"
    )]
    NoMemoryController { root: PathBuf, v2: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl MemoryHierarchy {
    /// Finds the memory hierarchy under `cgroup_root` (usually `/sys/fs/cgroup`): v1 when
    /// `<root>/memory` is a memory controller, else v2 when `<root>/cgroup.controllers` lists
    /// `memory`. A v1 memory hierarchy given directly as `cgroup_root` is accepted too.
    pub fn detect(cgroup_root: &Path) -> Result<Self, CgroupError> {
        if !cgroup_root.is_dir() {
            return Err(CgroupError::NotADirectory(cgroup_root.to_owned()));
        }
        let unified_controllers = cgroup_root.join("cgroup.controllers");
        let v1 = cgroup_root.join("memory");
        // `memory.limit_in_bytes` exists in every v1 memory cgroup and never in v2. A bare
        // `cgroup.procs` also marks a v1 hierarchy, unless `memory` is merely a child cgroup
        // of a v2 root.
        if v1.join("memory.limit_in_bytes").is_file()
            || (v1.join("cgroup.procs").is_file() && !unified_controllers.exists())
        {
            return Ok(Self::new(v1, CgroupVersion::V1));
        }
        let v2 = match fs::read_to_string(&unified_controllers) {
            Ok(controllers) if controllers.split_whitespace().any(|c| c == "memory") => {
                return Ok(Self::new(cgroup_root, CgroupVersion::V2));
            }
            Ok(controllers) => format!(
                "{} lists no `memory` (it lists: {:?})",
                unified_controllers.display(),
                controllers.trim()
            ),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                format!(
                    "no cgroup v2 root ({} is missing)",
                    unified_controllers.display()
                )
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    path: unified_controllers,
                    source,
                });
            }
        };
        if cgroup_root.join("memory.limit_in_bytes").is_file() {
            return Ok(Self::new(cgroup_root, CgroupVersion::V1));
        }
        Err(CgroupError::NoMemoryController {
            root: cgroup_root.to_owned(),
            v2,
        })
    }

    /// A hierarchy known without detection (tests, or a caller that already knows).
    pub fn new(root: impl Into<PathBuf>, version: CgroupVersion) -> Self {
        Self {
            root: root.into(),
            version,
        }
    }

    /// The directory of the cgroup at `rel` (relative to the hierarchy root, e.g.
    /// `/kubepods/…`). Only plain components are kept, so the result never leaves the root.
    #[must_use]
    pub fn absolute(&self, rel: &str) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(Path::new(rel).components().filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            Component::Prefix(_)
            | Component::RootDir
            | Component::CurDir
            | Component::ParentDir => None,
        }));
        path
    }

    /// The peak usage and limit of the cgroup at `rel`. Missing or unreadable files give
    /// `None`: the cgroup may already be gone, and v2 has `memory.peak` only since 5.19.
    /// Opens both files by path each time: for reads in bulk, [`MemoryReader`] keeps them open.
    #[must_use]
    pub fn memory(&self, rel: &str) -> ContainerMemory {
        let dir = self.absolute(rel);
        ContainerMemory {
            peak_bytes: read_bytes(&dir, self.version.peak_file()),
            limit_bytes: self.limit_in(&dir),
        }
    }

    /// The memory limit of the cgroup at `rel`, for "which memcg hit its limit"; `None`
    /// when unlimited or unreadable.
    #[must_use]
    pub fn limit_of(&self, rel: &str) -> Option<u64> {
        self.limit_in(&self.absolute(rel))
    }

    fn limit_in(&self, dir: &Path) -> Option<u64> {
        self.version
            .limit_from(read_bytes(dir, self.version.limit_file()))
    }
}

impl CgroupVersion {
    /// The file with the cgroup's peak memory usage.
    const fn peak_file(self) -> &'static str {
        match self {
            Self::V1 => "memory.max_usage_in_bytes",
            Self::V2 => "memory.peak",
        }
    }

    /// The file with the cgroup's memory limit.
    const fn limit_file(self) -> &'static str {
        match self {
            Self::V1 => "memory.limit_in_bytes",
            Self::V2 => "memory.max",
        }
    }

    /// A limit as read from [`Self::limit_file`], `None` for "unlimited": v2 spells it `max`
    /// (already `None` here), v1 writes a number near `i64::MAX`.
    fn limit_from(self, read: Option<u64>) -> Option<u64> {
        match self {
            Self::V1 => read.filter(|&limit| limit < V1_UNLIMITED_FLOOR),
            Self::V2 => read,
        }
    }
}

/// A byte count from a cgroup file; `max` (v2's "no limit") and anything unreadable → `None`.
fn read_bytes(dir: &Path, file: impl AsRef<OsStr>) -> Option<u64> {
    let path = dir.join(file.as_ref());
    match fs::read_to_string(&path) {
        Ok(text) => parse_bytes(&text).unwrap_or_else(|error| {
            debug!(path = %path.display(), text, %error, "cgroup memory file is not a byte count");
            None
        }),
        Err(error) => {
            if error.kind() != io::ErrorKind::NotFound {
                debug!(path = %path.display(), %error, "cannot read cgroup memory file");
            }
            None
        }
    }
}

/// The contents of a cgroup memory file as a byte count; `max` → `None`.
fn parse_bytes(text: &str) -> Result<Option<u64>, ParseIntError> {
    let value = text.trim();
    if value == "max" {
        return Ok(None);
    }
    value.parse().map(Some)
}

#[cfg(test)]
mod tests;
