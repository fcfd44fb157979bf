//! Starting the test's own helper (`coroner-victim`) inside a cgroup the way a runtime shim
//! does: the parent (the test) stays outside, the child joins the cgroup before exec.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result};

use crate::cgroups::TestCgroup;

/// The helper binary, built next to the test binaries.
#[must_use]
pub fn victim_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_coroner-victim") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/coroner-victim
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("coroner-victim")
}

/// Starts `coroner-victim <args>` as a process of `cgroup`.
pub fn spawn_in(cgroup: &TestCgroup, args: &[&str]) -> Result<Child> {
    let procs = File::options()
        .write(true)
        .open(cgroup.procs_file())
        .context("opening cgroup.procs")?;
    let mut cmd = Command::new(victim_bin());
    cmd.args(args);
    spawn_joining(&mut cmd, &procs)
        .with_context(|| format!("spawning {} {args:?}", victim_bin().display()))
}

/// Starts `cmd` (stdin from /dev/null) in the cgroup whose `cgroup.procs` is open as `procs`:
/// the child joins it between fork and exec, so everything it execs runs there.
pub fn spawn_joining(cmd: &mut Command, procs: &File) -> Result<Child> {
    let fd = procs.as_raw_fd();
    cmd.stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls (write(2)) between fork and exec; "0" moves the
    // writing process itself, so nothing is formatted after the fork. `procs` outlives the
    // spawn, so `fd` is open in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// What `wait4` says of a child: its status and peak RSS in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Reaped {
    pub status: i32,
    pub maxrss_kib: i64,
}

impl Reaped {
    #[must_use]
    pub fn exit_code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    #[must_use]
    pub fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }
}

/// Waits for `child` with `wait4`, which also reports its peak RSS.
pub fn reap(child: Child) -> Result<Reaped> {
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    if rc != pid {
        anyhow::bail!("wait4({pid}): {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child);
    Ok(Reaped {
        status,
        maxrss_kib: usage.ru_maxrss,
    })
}

/// Sends `sig` to `pid`; whether it arrived is for the test to observe.
pub fn signal_pid(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid the test started.
    unsafe { libc::kill(pid as i32, sig) };
}
