//! Containers that were running before the agent started: which of their processes is the
//! init and which are exec sessions, so that the kernel's role rules (which learn an init
//! when it executes its command) also hold for them.
//!
//! In a container's memory cgroup, the processes whose parent is not in the same cgroup were
//! started by the runtime; the one that started first is the init, the others exec sessions.
//! Membership, not path, decides "the same cgroup": `cgroup.procs` lists the pids, and the
//! parent is outside when it is not among them (no cgroup-namespace path translation).
//! Pids are those of this process's PID namespace: the agent needs the host's (`hostPID`).

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use tracing::{debug, warn};

use super::hierarchy::MemoryHierarchy;
use super::layout::parse_container;
use super::walk::walk;

/// How many cgroup directories the start-up walk visits at most (a node has a few thousand).
const MAX_DIRS: usize = 65_536;
const MAX_DEPTH: usize = 8;

/// One running container's processes that entered it from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningContainer {
    pub memcg_id: u64,
    pub init_tgid: u32,
    pub exec_tgids: Vec<u32>,
}

/// What a process's `/proc/<pid>/stat` says that matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcStat {
    ppid: u32,
    /// Clock ticks after boot.
    start_ticks: u64,
}

/// `pid (comm) S ppid … starttime …`: the comm may hold spaces and parentheses, so fields
/// are counted from the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(ProcStat {
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// The init and exec sessions among a cgroup's processes, from each one's stat (`None`:
/// gone or unreadable).
fn roles_of(procs: &[(u32, Option<ProcStat>)]) -> Option<(u32, Vec<u32>)> {
    let members: HashSet<u32> = procs.iter().map(|&(pid, _)| pid).collect();
    let mut entered: Vec<(u64, u32)> = procs
        .iter()
        .filter_map(|&(pid, stat)| stat.map(|s| (pid, s)))
        .filter(|(_, stat)| !members.contains(&stat.ppid))
        .map(|(pid, stat)| (stat.start_ticks, pid))
        .collect();
    entered.sort_unstable();
    let (&(_, init), rest) = entered.split_first()?;
    Some((init, rest.iter().map(|&(_, pid)| pid).collect()))
}

/// Every container cgroup under `hierarchy` with its init and exec sessions, read from
/// `cgroup.procs` and `proc_root` (normally `/proc`).
#[must_use]
pub fn running_containers(hierarchy: &MemoryHierarchy, proc_root: &Path) -> Vec<RunningContainer> {
    let mut found = Vec::new();
    let mut unreadable_pids = 0usize;
    let walked = walk(&hierarchy.root, MAX_DIRS, MAX_DEPTH, |memcg_id, rel| {
        if parse_container(rel).is_none() {
            return;
        }
        let Ok(list) = fs::read_to_string(hierarchy.absolute(rel).join("cgroup.procs")) else {
            return;
        };
        let procs: Vec<(u32, Option<ProcStat>)> = list
            .lines()
            .filter_map(|line| line.trim().parse::<u32>().ok())
            .map(|pid| {
                let stat = fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))
                    .ok()
                    .and_then(|text| parse_stat(&text));
                if stat.is_none() {
                    unreadable_pids += 1;
                }
                (pid, stat)
            })
            .collect();
        if let Some((init_tgid, exec_tgids)) = roles_of(&procs) {
            found.push(RunningContainer {
                memcg_id,
                init_tgid,
                exec_tgids,
            });
        }
    });
    if let Err(error) = walked {
        warn!(%error, "cannot walk the memory cgroups: roles of running containers unknown");
    }
    if unreadable_pids > 0 {
        warn!(
            unreadable_pids,
            "processes of running containers are not in this PID namespace's /proc (the agent needs the host's PID namespace): their roles are learnt only from their next start"
        );
    }
    debug!(containers = found.len(), "roles of running containers");
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(
        clippy::unnecessary_wraps,
        reason = "the shape /proc reads give: None is a process gone"
    )]
    fn stat(ppid: u32, start_ticks: u64) -> Option<ProcStat> {
        Some(ProcStat { ppid, start_ticks })
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (we) ird (name)) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                ppid: 17,
                start_ticks: 987_654
            })
        );
        assert_eq!(parse_stat("12 (sh) S"), None);
    }

    #[test]
    fn the_first_process_started_from_outside_is_the_init() {
        // 10: init (parent 1, the shim, outside); 11: its child; 20: an exec session that
        // started later; 21: the session's child; 30: gone.
        let procs = [
            (11, stat(10, 105)),
            (20, stat(1, 500)),
            (10, stat(1, 100)),
            (21, stat(20, 501)),
            (30, None),
        ];
        assert_eq!(roles_of(&procs), Some((10, vec![20])));
    }

    #[test]
    fn no_process_from_outside_no_roles() {
        assert_eq!(roles_of(&[(5, stat(6, 1)), (6, stat(5, 2))]), None);
        assert_eq!(roles_of(&[]), None);
    }
}
