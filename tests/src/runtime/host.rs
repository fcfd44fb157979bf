//! The machine around the runtime: its processes (to find a containerd's shims and what runs
//! under them), its mounts (to unmount what a containerd mounted under its directory) and its
//! cgroup hierarchies (to remove a pod's cgroups in each of them, v1 or v2).

use std::fs;
use std::path::Path;
use std::time::Duration;

/// A mount point as mountinfo writes it: space, tab, newline and backslash octal-escaped.
#[must_use]
pub fn unescape_mount(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        if let Some(b) = code {
            out.push(char::from(b));
            rest = &rest[i + 4..];
        } else {
            out.push('\\');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// A process of the machine: pid, parent and command line.
#[derive(Clone, Debug)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub argv: Vec<String>,
}

/// Every process of the machine (one that exits while it is read is left out).
#[must_use]
pub fn processes() -> Vec<Process> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent = after.split(' ').nth(1)?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let argv = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Process {
                pid,
                ppid: parent,
                argv,
            })
        })
        .collect()
}

/// The descendants of `root` in `all`, deepest last.
#[must_use]
pub fn descendants(all: &[Process], root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            out.push(p.pid);
            frontier.push(p.pid);
        }
    }
    out
}

/// Removes `cgroup_parent` (and the containers' directories left in it) in every mounted
/// cgroup hierarchy, v1 controllers and the v2 unified tree alike. The kubepods and `QoS` levels
/// stay, as on a node: other tests' pods may be starting under them.
pub fn remove_pod_cgroups(cgroup_parent: &str) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        if !(after.starts_with("cgroup ") || after.starts_with("cgroup2 ")) {
            continue;
        }
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let dir = Path::new(point).join(cgroup_parent.trim_start_matches('/'));
        remove_empty_tree(&dir);
    }
}

fn remove_empty_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&e.path());
            }
        }
    }
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
