//! A container's peak and limit at every death, without walking its cgroup path each time:
//! the memory files of the cgroups read lately stay open and are read again at offset 0.
//!
//! A read at offset 0 makes the kernel's `seq_file` start over (`seq_read_iter` resets its
//! iterator when the position is 0), so `pread(fd, 0)` returns the value as of now — not a
//! copy from when the file was opened. Opening, reading and closing both files by a kubelet
//! path costs ≈20–40 µs on the project's 2-core VMs; the two `pread`s ≈1.5–4 µs. Opening
//! the directory once and the files relative to it (`openat`) saves only ≈15% of a miss:
//! misses are not where the time goes, so the files are opened by path.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;

use lru::LruCache;
use tracing::debug;

use super::{CgroupVersion, ContainerMemory, MemoryHierarchy, parse_bytes};

/// How many memory cgroups keep their files open, two descriptors each.
///
/// What an open cgroup file pins: its `struct file`, dentry and inode, the `kernfs_node`s of
/// the file and of its directory (kernfs nodes hold their parents), a `kernfs_open_file`
/// with its `seq_file` and that file's buffer (a page once read), and `cgroup_file_open`'s
/// small context holding a reference on the opener's cgroup namespace. It does **not** pin
/// the `struct cgroup` or the `mem_cgroup`: removing the cgroup deactivates its kernfs nodes
/// without waiting for open files, and reads then fail with `ENODEV` (`kernfs_seq_start`).
/// So a removed container's entry costs a few KiB of kernel memory until it is read (then
/// dropped) or evicted; the cap bounds that to ≈1–2 MiB, and 256 descriptors stay well below
/// any sane `RLIMIT_NOFILE`. A death storm hits a few containers, not 128.
pub const MAX_OPEN_MEMCGS: usize = 128;

/// The memory files of recently read cgroups, kept open; least recently read closed first.
pub struct MemoryReader {
    hierarchy: MemoryHierarchy,
    open: LruCache<String, OpenMemcg>,
    /// Inside a batch, its number: a cgroup read once in it is not read again.
    batch: Option<u64>,
    batches: u64,
}

/// One cgroup's memory files; a file this kernel does not have (v2 `memory.peak` before
/// 5.19) is `None`.
struct OpenMemcg {
    peak: Option<File>,
    limit: Option<File>,
    /// The reading made in batch `.0`.
    memo: Option<(u64, ContainerMemory)>,
}

impl MemoryReader {
    #[must_use]
    pub fn new(hierarchy: MemoryHierarchy) -> Self {
        Self::with_capacity(
            hierarchy,
            NonZeroUsize::new(MAX_OPEN_MEMCGS).unwrap_or(NonZeroUsize::MIN),
        )
    }

    #[must_use]
    pub fn with_capacity(hierarchy: MemoryHierarchy, max_open_memcgs: NonZeroUsize) -> Self {
        Self {
            hierarchy,
            open: LruCache::new(max_open_memcgs),
            batch: None,
            batches: 0,
        }
    }

    /// The peak usage and limit of the cgroup at `rel`, as [`MemoryHierarchy::memory`] reads
    /// them (the same values, read now), from files kept open. Inside a batch the first
    /// reading of a cgroup stands for the rest of the batch.
    pub fn memory(&mut self, rel: &str) -> ContainerMemory {
        let version = self.hierarchy.version;
        let batch = self.batch;
        if let Some(open) = self.open.get_mut(rel) {
            if let (Some(current), Some((read_in, memory))) = (batch, open.memo)
                && current == read_in
            {
                return memory;
            }
            match open.read(version, rel) {
                Ok(memory) => {
                    open.memo = batch.map(|b| (b, memory));
                    return memory;
                }
                Err(error) => {
                    // ENODEV: the cgroup was removed. Whatever is at the path now (nothing,
                    // or a new cgroup of the same name) is opened afresh.
                    debug!(cgroup = rel, %error, "cgroup memory file no longer readable: closed");
                    self.open.pop(rel);
                }
            }
        }
        self.open_and_read(rel)
    }

    /// Starts a batch of readings that may share one reading per cgroup: records written
    /// together, microseconds apart, after every death they describe has happened. Ended
    /// by [`Self::end_batch`]; outside a batch every call reads.
    pub fn begin_batch(&mut self) {
        self.batches += 1;
        self.batch = Some(self.batches);
    }

    pub fn end_batch(&mut self) {
        self.batch = None;
    }

    /// How many cgroups have their files open now.
    #[must_use]
    pub fn open_memcgs(&self) -> usize {
        self.open.len()
    }

    fn open_and_read(&mut self, rel: &str) -> ContainerMemory {
        let dir = self.hierarchy.absolute(rel);
        let version = self.hierarchy.version;
        let mut complete = true;
        let mut value = |file: &str| -> (Option<File>, Option<u64>) {
            let path = dir.join(file);
            let opened = match File::open(&path) {
                Ok(opened) => opened,
                Err(error) => {
                    if error.kind() != io::ErrorKind::NotFound {
                        debug!(path = %path.display(), %error, "cannot open cgroup memory file");
                        complete = false;
                    }
                    return (None, None);
                }
            };
            match read_value(&opened, rel, file) {
                Ok(value) => (Some(opened), value),
                Err(error) => {
                    debug!(path = %path.display(), %error, "cannot read cgroup memory file");
                    complete = false;
                    (None, None)
                }
            }
        };
        let (peak, peak_bytes) = value(version.peak_file());
        let (limit, limit_bytes) = value(version.limit_file());
        let memory = ContainerMemory {
            peak_bytes,
            limit_bytes: version.limit_from(limit_bytes),
        };
        // Kept only when everything there is was read: a cgroup removed between the opens
        // and the reads, or a descriptor refused, is not remembered as "has no files".
        if complete && (peak.is_some() || limit.is_some()) {
            let open = OpenMemcg {
                peak,
                limit,
                memo: self.batch.map(|b| (b, memory)),
            };
            self.open.push(rel.to_owned(), open);
        }
        memory
    }
}

impl OpenMemcg {
    /// Both values, read now; an error when either open file can no longer be read.
    fn read(&self, version: CgroupVersion, rel: &str) -> io::Result<ContainerMemory> {
        let read = |file: Option<&File>, name: &str| match file {
            Some(file) => read_value(file, rel, name),
            None => Ok(None),
        };
        Ok(ContainerMemory {
            peak_bytes: read(self.peak.as_ref(), version.peak_file())?,
            limit_bytes: version.limit_from(read(self.limit.as_ref(), version.limit_file())?),
        })
    }
}

/// A byte count from an open cgroup memory file, read at offset 0; `max` and garbage → `None`.
/// `rel` and `name` are for the log only.
fn read_value(file: &File, rel: &str, name: &str) -> io::Result<Option<u64>> {
    // The longest byte count is 20 digits and a newline; anything filling the buffer is not one.
    let mut buf = [0_u8; 32];
    let len = file.read_at(&mut buf, 0)?;
    let parsed = match std::str::from_utf8(&buf[..len]) {
        Ok(text) if len < buf.len() => parse_bytes(text).map_err(|e| e.to_string()),
        Ok(_) => Err("longer than a byte count".to_owned()),
        Err(error) => Err(error.to_string()),
    };
    Ok(parsed.unwrap_or_else(|error| {
        debug!(cgroup = rel, file = name, %error, "cgroup memory file is not a byte count");
        None
    }))
}

#[cfg(test)]
mod tests;
