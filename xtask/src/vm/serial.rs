//! What `/init` sends over the second serial port, one line at a time:
//!
//! ```text
//! @@uname 6.1.0-50-amd64
//! @@case NAME CGROUP          a staged container: its memory cgroup, relative to the root
//! @@pid LABEL PID             a process the expectations refer to as "$pid:LABEL"
//! @@lost N                    the sum of coroner_events_lost_total before the agent stopped
//! @@agent-exit STATUS         how the agent exited after its SIGTERM
//! @@note TEXT / @@error TEXT  progress, and what went wrong inside the guest
//! @@begin SECTION … @@end SECTION   "records" (the agent's JSON lines), "agent-log",
//!                             "kernel" (facts about the guest's kernel, one per line),
//!                             "kernel-oom" (the kernel log's `Killed process` lines)
//! @@done                      /init reached its end
//! ```
//!
//! The serial line discipline may turn `\n` into `\r\n`; carriage returns are dropped.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Report {
    pub uname: Option<String>,
    /// Case name → its container's memory cgroup path.
    pub cases: BTreeMap<String, String>,
    pub pids: BTreeMap<String, u64>,
    pub records: Vec<Value>,
    /// Lines of the records file that are not JSON objects.
    pub malformed: Vec<String>,
    pub agent_log: Vec<String>,
    pub kernel_facts: Vec<String>,
    /// What the kernel logged of each OOM kill.
    pub kernel_oom_kills: Vec<KernelOomKill>,
    pub lost_events: Option<u64>,
    pub agent_exit: Option<i32>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    pub done: bool,
}

impl Report {
    pub fn parse(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self::parse_text(&String::from_utf8_lossy(&bytes)))
    }

    pub fn parse_text(text: &str) -> Self {
        let mut report = Self::default();
        let mut section: Option<String> = None;
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            if let Some(open) = &section {
                if line.strip_prefix("@@end ") == Some(open.as_str()) {
                    section = None;
                } else {
                    report.section_line(open, line);
                }
                continue;
            }
            let Some(line) = line.strip_prefix("@@") else {
                continue;
            };
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "uname" => report.uname = Some(rest.to_owned()),
                "case" => {
                    if let Some((name, cgroup)) = rest.split_once(' ') {
                        report.cases.insert(name.to_owned(), cgroup.to_owned());
                    }
                }
                "pid" => {
                    if let Some((label, pid)) = rest.split_once(' ')
                        && let Ok(pid) = pid.trim().parse()
                    {
                        report.pids.insert(label.to_owned(), pid);
                    }
                }
                "lost" => report.lost_events = rest.trim().parse().ok(),
                "agent-exit" => report.agent_exit = rest.trim().parse().ok(),
                "note" => report.notes.push(rest.to_owned()),
                "error" => report.errors.push(rest.to_owned()),
                "begin" => section = Some(rest.to_owned()),
                "done" => report.done = true,
                _ => {}
            }
        }
        if let Some(open) = section {
            report
                .errors
                .push(format!("the {open} section was cut off (no @@end)"));
        }
        report
    }

    fn section_line(&mut self, section: &str, line: &str) {
        match section {
            "records" if !line.trim().is_empty() => match serde_json::from_str::<Value>(line) {
                Ok(record @ Value::Object(_)) => self.records.push(record),
                _ => self.malformed.push(line.to_owned()),
            },
            "agent-log" => self.agent_log.push(strip_ansi(line)),
            "kernel" => self.kernel_facts.push(line.to_owned()),
            "kernel-oom" => match KernelOomKill::parse(line) {
                Some(kill) => self.kernel_oom_kills.push(kill),
                None => self
                    .errors
                    .push(format!("an OOM line the test cannot read: {line}")),
            },
            _ => {}
        }
    }

    /// The agent's start-up lines that say how it met this kernel: layout, probes attached or
    /// not, what the kernel lacks, warnings.
    pub fn startup_lines(&self) -> Vec<&str> {
        const TELLING: [&str; 7] = [
            "layout", "attached", "lacks", "tracefs", "kallsyms", "cgroup", "WARN",
        ];
        self.agent_log
            .iter()
            .map(String::as_str)
            .filter(|l| !l.contains("coroner::kernel") && TELLING.iter().any(|t| l.contains(t)))
            .take(40)
            .collect()
    }
}

/// `[ 10.07] Memory cgroup out of memory: Killed process 157 (coroner-victim) total-vm:265140kB,
/// anon-rss:65144kB, file-rss:4kB, shmem-rss:1812kB, UID:0 …` — "Out of memory:" alone is a
/// node-wide OOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelOomKill {
    pub pid: u64,
    /// `memcg` or `global`, as RECORD.md spells the scope.
    pub scope: &'static str,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
}

impl KernelOomKill {
    fn parse(line: &str) -> Option<Self> {
        let (before, after) = line.split_once("Killed process ")?;
        let scope = if before.contains("Memory cgroup out of memory") {
            "memcg"
        } else {
            "global"
        };
        let kib = |name: &str| -> Option<u64> {
            let (_, rest) = after.split_once(name)?;
            rest.split_once("kB")?.0.parse().ok()
        };
        Some(Self {
            pid: after.split_whitespace().next()?.parse().ok()?,
            scope,
            anon_kib: kib("anon-rss:")?,
            file_kib: kib("file-rss:")?,
            shmem_kib: kib("shmem-rss:")?,
        })
    }
}

/// Drops terminal colour sequences (`ESC [ … letter`), in case the agent's logger adds them.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_tags_are_read_and_carriage_returns_dropped() {
        let text = "boot noise\r\n@@uname 6.1.0-50-amd64\r\n@@case exit0 /kubepods/burstable/podx/abc\r\n\
                    @@pid exit0 42\r\n@@lost 0\r\n@@agent-exit 0\r\n@@begin records\r\n{\"pid\":42,\"reason\":\"Completed\"}\r\nnot json\r\n\
                    @@end records\r\n@@begin agent-log\r\n\u{1b}[32m INFO\u{1b}[0m attached\r\n@@end agent-log\r\n@@done\r\n";
        let report = Report::parse_text(text);
        assert_eq!(report.uname.as_deref(), Some("6.1.0-50-amd64"));
        assert_eq!(report.cases["exit0"], "/kubepods/burstable/podx/abc");
        assert_eq!(report.pids["exit0"], 42);
        assert_eq!((report.lost_events, report.agent_exit), (Some(0), Some(0)));
        assert_eq!(report.records.len(), 1);
        assert_eq!(report.records[0]["reason"], "Completed");
        assert_eq!(report.malformed, ["not json"]);
        assert_eq!(report.agent_log, [" INFO attached"]);
        assert!(report.done && report.errors.is_empty());
    }

    #[test]
    fn the_kernels_oom_lines_give_victim_scope_and_rss() {
        let report = Report::parse_text(
            "@@begin kernel-oom\n\
             [   10.07] Memory cgroup out of memory: Killed process 157 (coroner-victim) total-vm:265140kB, anon-rss:65144kB, file-rss:4kB, shmem-rss:1812kB, UID:0 pgtables:180kB oom_score_adj:0\n\
             [   17.66] Out of memory: Killed process 238 (coroner-victim) total-vm:2100148kB, anon-rss:195032kB, file-rss:0kB, shmem-rss:1828kB, UID:0\n\
             [   18.00] Killed process garbage\n\
             @@end kernel-oom\n",
        );
        let memcg = KernelOomKill {
            pid: 157,
            scope: "memcg",
            anon_kib: 65144,
            file_kib: 4,
            shmem_kib: 1812,
        };
        let global = KernelOomKill {
            pid: 238,
            scope: "global",
            anon_kib: 195_032,
            file_kib: 0,
            shmem_kib: 1828,
        };
        assert_eq!(report.kernel_oom_kills, [memcg, global]);
        assert_eq!(
            report.errors.len(),
            1,
            "the unreadable line is an error: {:?}",
            report.errors
        );
    }

    #[test]
    fn a_cut_off_section_is_an_error() {
        let report = Report::parse_text("@@begin records\n{\"pid\":1}\n");
        assert!(!report.done);
        assert_eq!(report.errors.len(), 1);
    }
}
