//! A containerd of the test's own: its root, state, sockets and config in a temporary directory,
//! never the system's. The CRI plugin is on with runc and crun as runtime handlers (both through
//! the runc v2 shim, cgroupfs driver) and the offline pause image as sandbox image; no CNI, so
//! pods use the host network as hostNetwork pods do.
//!
//! Dropping it (also while a test panics) stops every container it ran, its shims and itself,
//! unmounts what it mounted under its directory and removes the directory.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::host::{descendants, processes, unescape_mount};
use crate::cgroups::unique_hex;

/// How long containerd may take until its socket answers (it is up in well under a second
/// here; the CRI plugin loads with it).
const READY_LIMIT: Duration = Duration::from_secs(20);
/// SIGTERM → exit of containerd before SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The runtime handlers this containerd offers (`runtime_handler` of `RunPodSandbox`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    Runc,
    Crun,
}

impl Handler {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Runc => "runc",
            Self::Crun => "crun",
        }
    }
}

/// The binaries the real-runtime tests need, with the Debian package that has each.
pub const BINARIES: [(&str, &str); 6] = [
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/bin/crun", "crun"),
    ("/usr/bin/busybox", "busybox-static"),
];

/// Fails, naming what is missing and how to get it, when a binary of [`BINARIES`] is absent.
pub fn require_binaries() -> Result<()> {
    let missing: Vec<String> = BINARIES
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(path, package)| format!("{path} (Debian package {package})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "the real container runtime is missing: {}; run `cargo xtask test`, which installs it",
            missing.join(", ")
        )
    }
}

/// The running containerd.
pub struct Containerd {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
    /// Keep the directory (log, container logs) for a person: something failed.
    pub keep: bool,
}

impl Containerd {
    /// Starts containerd with `sandbox_image` as the pod sandbox image and waits until its API
    /// answers. The image must be imported before the first `RunPodSandbox`.
    pub fn start(sandbox_image: &str) -> Result<Self> {
        require_binaries()?;
        // Short: unix socket paths are limited to 108 bytes.
        let dir = PathBuf::from(format!("/tmp/coroner-ctrd-{}", unique_hex(10)));
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let socket = dir.join("containerd.sock");
        let crun = crun_binary(&dir)?;
        fs::write(
            dir.join("config.toml"),
            config(&dir, &socket, sandbox_image, &crun),
        )?;
        let log = fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        let mut containerd = Self {
            child: Some(child),
            dir,
            socket,
            keep: false,
        };
        containerd.wait_ready()?;
        Ok(containerd)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                self.keep = true;
                bail!("containerd exited with {status}:\n{}", self.log_tail());
            }
            if self.socket.exists() && self.ctr(&["version"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.keep = true;
                bail!(
                    "containerd did not answer on {} within {READY_LIMIT:?}:\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gRPC socket (containerd's API and the CRI services).
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory everything of this containerd lives in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `ctr --address SOCK -n k8s.io ARGS` (the CRI plugin's namespace); its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("/usr/bin/ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running ctr")?;
        if !out.status.success() {
            bail!(
                "ctr {}: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The last lines of containerd's log, for failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The shims this containerd started: `containerd-shim-runc-v2 … -address SOCK`.
    fn shims(&self) -> Vec<u32> {
        let socket = self.socket.to_string_lossy();
        processes()
            .into_iter()
            .filter(|p| {
                p.argv
                    .first()
                    .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"))
                    && p.argv
                        .windows(2)
                        .any(|w| w[0] == "-address" && w[1] == *socket)
            })
            .map(|p| p.pid)
            .collect()
    }

    /// Kills the shims and everything under them (the containers' processes are the shims'
    /// children: the shim is their subreaper), containers first so no shim reaps in between.
    fn kill_shims(&self) {
        for _ in 0..50 {
            let shims = self.shims();
            if shims.is_empty() {
                return;
            }
            let all = processes();
            for shim in &shims {
                for pid in descendants(&all, *shim) {
                    // SAFETY: kill(2) on a process under a shim of this containerd.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
            for shim in shims {
                // SAFETY: kill(2) on a shim of this containerd.
                unsafe { libc::kill(shim as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the containerd this guard started and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Unmounts everything mounted under the directory (container root filesystems, the
    /// sandboxes' shm), deepest first, so removing the directory removes only this test's files.
    fn unmount_all(&self) {
        let prefix = self.dir.to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mount)
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let Ok(c) = std::ffi::CString::new(point) else {
                continue;
            };
            // SAFETY: umount2 on a mount point under this containerd's own directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The containers first: containerd forgets nothing on SIGTERM, but the shims outlive
        // it and so would their containers.
        self.kill_shims();
        self.stop_daemon();
        self.kill_shims();
        self.unmount_all();
        if std::thread::panicking() || self.keep {
            eprintln!("containerd's files are kept in {}", self.dir.display());
            // Whatever the containers wrote stays; their mounts are gone.
            return;
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The v2 hierarchy of a hybrid cgroup layout (v1 controllers, plus cgroup2 beside them).
const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";

/// What the crun handler runs: `/usr/bin/crun`, or on a hybrid host whose cgroup2 tree holds a
/// controller (these machines: `hugetlb`) a wrapper that runs it without that tree. crun refuses
/// such hosts ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2");
/// the wrapper hides the v2 mount in a private mount namespace of crun's own (the host's mounts
/// are untouched) and then executes crun itself, so the process the shim runs is still `crun`.
fn crun_binary(dir: &Path) -> Result<PathBuf> {
    let controllers = fs::read_to_string(Path::new(HYBRID_UNIFIED).join("cgroup.controllers"))
        .unwrap_or_default();
    if controllers.trim().is_empty() {
        return Ok(PathBuf::from("/usr/bin/crun"));
    }
    let wrapper = dir.join("crun-hybrid");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# crun without the cgroup2 tree of this hybrid host (see containerd.rs).\n\
             exec unshare --mount --propagation private /bin/sh -c \
             'umount -l {HYBRID_UNIFIED} && exec /usr/bin/crun \"$@\"' crun \"$@\"\n"
        ),
    )?;
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    Ok(wrapper)
}

/// The config: every path containerd writes under `dir`; CRI with runc and crun handlers.
fn config(dir: &Path, socket: &Path, sandbox_image: &str, crun: &Path) -> String {
    let d = dir.display();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let mut c = format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Plugins this machine cannot use, off so their errors do not hide real ones in the log.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{d}/containerd-ttrpc.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{sandbox_image}"
  # The sandbox asks for oom_score_adj -998, and lowering it needs CAP_SYS_RESOURCE, which these
  # machines do not give (runc's bootstrap dies: "can't get final child's PID from pipe"):
  # keep every score at or above containerd's own.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

# No CNI: host-network pods only (the plugin warns that no network config exists).
[{cri}.cni]
  bin_dir = "{d}/cni/bin"
  conf_dir = "{d}/cni/conf"
"#,
        socket = socket.display(),
    );
    let crun = crun.display().to_string();
    for (handler, binary) in [("runc", "/usr/sbin/runc"), ("crun", crun.as_str())] {
        let _ = write!(
            c,
            r#"
[{cri}.containerd.runtimes.{handler}]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.{handler}.options]
  BinaryName = "{binary}"
  # The OCI runtime's state, not the system's /run/containerd/runc.
  Root = "{d}/{handler}"
  # The kubelet's cgroupfs driver: cgroup_parent is a path, not a systemd slice.
  SystemdCgroup = false
"#
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_in_the_directory() {
        let c = config(
            Path::new("/tmp/x"),
            Path::new("/tmp/x/s.sock"),
            "p:1",
            Path::new("/usr/bin/crun"),
        );
        assert!(c.contains("address = \"/tmp/x/s.sock\""));
        assert!(c.contains("BinaryName = \"/usr/bin/crun\""));
        assert!(c.contains("Root = \"/tmp/x/runc\""));
        assert!(c.contains("sandbox_image = \"p:1\""));
        for line in c.lines().filter(|l| l.contains("= \"/")) {
            assert!(
                line.contains("\"/tmp/x/") || line.contains("/usr/"),
                "{line}"
            );
        }
    }
}
