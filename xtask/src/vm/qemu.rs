//! One guest: QEMU in software emulation (KVM hangs at boot on these machines), no disk, no
//! network device. The first serial port is the console (kernel and agent chatter); the second
//! carries only what `/init` reports, so kernel messages — a global OOM prints pages of them —
//! never interleave with the records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

pub const CONSOLE_LOG: &str = "console.log";
pub const RESULTS_LOG: &str = "results.log";
const QEMU_STDERR: &str = "qemu.stderr";

pub struct Guest<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub memory_mib: u32,
    pub timeout: Duration,
    /// Where the serial logs go (created, emptied).
    pub dir: &'a Path,
    /// Appended to the kernel command line (what `/init` reads its configuration from).
    pub cmdline: &'a str,
}

pub struct Logs {
    pub results: PathBuf,
}

/// Kills QEMU whatever way the boot ends: a timeout, an error, a panic in the caller.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Guest<'_> {
    /// Boots, waits until the guest powers off, and returns its logs.
    pub fn boot(&self) -> Result<Logs> {
        let _ = std::fs::remove_dir_all(self.dir);
        std::fs::create_dir_all(self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let console = self.dir.join(CONSOLE_LOG);
        let results = self.dir.join(RESULTS_LOG);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-nodefaults", "-display", "none", "-no-reboot"])
            .args(["-machine", "q35", "-cpu", "max", "-smp", "1"])
            .args(["-m", &format!("{}M", self.memory_mib)])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            // panic=-1 with -no-reboot: a kernel panic ends QEMU at once instead of hanging
            // until the timeout.
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 loglevel=4 {}",
                self.cmdline
            ))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("file:{}", results.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(QEMU_STDERR))?);
        let mut guest = Running(cmd.spawn().context("starting qemu-system-x86_64")?);
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = guest.0.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the guest ran past {:?} (see {})",
                    self.timeout,
                    console.display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        if !status.success() {
            let stderr = std::fs::read_to_string(self.dir.join(QEMU_STDERR)).unwrap_or_default();
            bail!("qemu exited with {status}: {}", stderr.trim());
        }
        Ok(Logs { results })
    }
}
