//! One walk over a cgroup hierarchy's directories, kubepods subtrees first.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use tracing::debug;

/// What one walk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct WalkSummary {
    /// Directories visited (the root included).
    pub dirs: usize,
    /// The walk stopped at its directory bound, or reached its depth bound (below which it
    /// does not look).
    pub truncated: bool,
    /// Directories that could not be listed for another reason than being gone.
    pub unreadable: usize,
}

struct Pending {
    abs: PathBuf,
    /// Relative to the hierarchy root, `/`-separated; lossy where a name is not UTF-8.
    rel: String,
    id: u64,
    depth: usize,
}

/// Calls `visit(id, rel_path)` for `root` (as `/`) and every directory below it, at most
/// `max_dirs` of them and `max_depth` levels deep. A directory's id is its inode number,
/// which on cgroupfs is the kernfs id the kernel reports; it comes with the directory entry
/// (no `stat` per cgroup). Subtrees whose name mentions `kubepods` go first, so that a
/// truncated walk still covers containers.
pub(super) fn walk(
    root: &Path,
    max_dirs: usize,
    max_depth: usize,
    mut visit: impl FnMut(u64, &str),
) -> io::Result<WalkSummary> {
    let mut summary = WalkSummary::default();
    let mut pending = VecDeque::from([Pending {
        abs: root.to_owned(),
        rel: "/".to_owned(),
        id: fs::metadata(root)?.ino(),
        depth: 0,
    }]);
    while let Some(dir) = pending.pop_front() {
        visit(dir.id, &dir.rel);
        summary.dirs += 1;
        if dir.depth >= max_depth {
            summary.truncated = true;
            continue;
        }
        let entries = match fs::read_dir(&dir.abs) {
            Ok(entries) => entries,
            Err(error) => {
                // Cgroups come and go during a walk; only other failures are worth a word.
                if error.kind() != io::ErrorKind::NotFound {
                    summary.unreadable += 1;
                    debug!(dir = %dir.abs.display(), %error, "cannot list cgroup directory");
                }
                continue;
            }
        };
        for entry in entries.flatten() {
            // `file_type` does not follow symlinks, so the walk cannot loop through one.
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            if summary.dirs + pending.len() >= max_dirs {
                summary.truncated = true;
                break;
            }
            let name = entry.file_name();
            let name_lossy = name.to_string_lossy();
            let mut rel = String::with_capacity(dir.rel.len() + 1 + name_lossy.len());
            rel.push_str(&dir.rel);
            if !rel.ends_with('/') {
                rel.push('/');
            }
            rel.push_str(&name_lossy);
            let child = Pending {
                abs: dir.abs.join(&name),
                rel,
                id: entry.ino(),
                depth: dir.depth + 1,
            };
            if child.rel.contains("kubepods") {
                pending.push_front(child);
            } else {
                pending.push_back(child);
            }
        }
    }
    Ok(summary)
}
