//! What a user would run instead of coroner: libbpf-tools' `exitsnoop`, `sigsnoop` and
//! `execsnoop` (Debian's `libbpf-tools`, which `cargo xtask bench` installs), all three at
//! once, their output to `/dev/null`. A storm is measured only once every tool has attached:
//! each holds a link per program it loaded, and `bpftool prog show` lists those programs.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::procfs;

/// The tools, where Debian installs them.
pub const TOOLS: [&str; 3] = [
    "/usr/sbin/exitsnoop",
    "/usr/sbin/sigsnoop",
    "/usr/sbin/execsnoop",
];
const ATTACH_LIMIT: Duration = Duration::from_secs(20);

/// The BPF descriptors a process holds, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfFds {
    pub programs: usize,
    pub links: usize,
}

impl BpfFds {
    /// A tool has attached once it has programs and a link (or perf event link) for each.
    #[must_use]
    pub fn attached(self) -> bool {
        self.programs > 0 && self.links >= self.programs
    }
}

fn bpf_fds(pid: u32) -> BpfFds {
    let mut fds = BpfFds::default();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return fds;
    };
    for entry in entries.flatten() {
        match fs::read_link(entry.path())
            .ok()
            .as_deref()
            .and_then(Path::to_str)
        {
            Some("anon_inode:bpf-prog") => fds.programs += 1,
            Some("anon_inode:bpf_link") => fds.links += 1,
            _ => {}
        }
    }
    fds
}

struct Tool {
    path: &'static str,
    child: Child,
    stderr: PathBuf,
}

impl Tool {
    fn stderr_tail(&self) -> String {
        let text = fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }
}

/// The three tools running; dropping this kills them (their programs go with them).
pub struct Trio {
    tools: Vec<Tool>,
}

impl Trio {
    /// Starts the three and returns once each has attached.
    pub fn start(dir: &Path) -> Result<Self> {
        let mut trio = Self { tools: Vec::new() };
        for path in TOOLS {
            if !Path::new(path).exists() {
                bail!("{path} is missing: Debian's libbpf-tools (`cargo xtask bench` installs it)");
            }
            let name = Path::new(path)
                .file_name()
                .map_or_else(|| "tool".into(), |n| n.to_string_lossy().into_owned());
            let stderr = dir.join(format!("{name}.stderr"));
            let mut cmd = Command::new(path);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&stderr)?);
            // SAFETY: prctl(2) only, async-signal-safe: the tools must not outlive the bench.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().with_context(|| format!("starting {path}"))?;
            trio.tools.push(Tool {
                path,
                child,
                stderr,
            });
        }
        trio.wait_attached()?;
        Ok(trio)
    }

    fn wait_attached(&mut self) -> Result<()> {
        let deadline = Instant::now() + ATTACH_LIMIT;
        loop {
            let mut all = true;
            for tool in &mut self.tools {
                if let Some(status) = tool.child.try_wait()? {
                    bail!(
                        "{} exited before it attached ({status}): {}",
                        tool.path,
                        tool.stderr_tail()
                    );
                }
                all &= bpf_fds(tool.child.id()).attached();
            }
            if all && self.listed()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the libbpf-tools trio did not attach within {ATTACH_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every program the tools hold is in `bpftool prog show`: loaded, as the kernel says.
    fn listed(&self) -> Result<bool> {
        let shown = procfs::prog_names()?;
        for tool in &self.tools {
            let held = procfs::prog_runs(tool.child.id())?;
            if held.is_empty() || !held.keys().all(|id| shown.contains_key(id)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Drop for Trio {
    fn drop(&mut self) {
        for tool in &mut self.tools {
            let _ = tool.child.kill();
        }
        for tool in &mut self.tools {
            let _ = tool.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_only_with_a_link_per_program() {
        let fds = |programs, links| BpfFds { programs, links };
        assert!(!fds(0, 0).attached());
        assert!(!fds(2, 1).attached());
        assert!(fds(1, 1).attached());
        assert!(fds(2, 2).attached());
    }
}
