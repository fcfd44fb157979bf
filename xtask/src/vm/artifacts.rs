//! What the guests are made of, fetched from Debian's archive once and cached under
//! `~/.cache/coroner/vm`: the kernels (extracted from their packages, never installed on this
//! machine) and busybox-static. QEMU itself comes from the system's package manager.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// A Debian kernel to boot, and the file in its package that is the kernel image.
#[derive(Debug)]
pub struct Kernel {
    /// How the reports name it.
    pub label: &'static str,
    pub package: &'static str,
    /// Path of the image inside the package.
    pub image: &'static str,
}

/// Both carry BTF and boot with a cgroup v2 memory controller; 6.1 predates the per-CPU
/// `rss_stat` counters (6.2) and has no `group_dead` in `sched_process_exit`.
pub const KERNELS: [Kernel; 2] = [
    Kernel {
        label: "6.1.0-50",
        package: "linux-image-6.1.0-50-amd64-unsigned",
        image: "./boot/vmlinuz-6.1.0-50-amd64",
    },
    Kernel {
        label: "6.12.111",
        package: "linux-image-6.12.111+deb12-amd64-unsigned",
        image: "./boot/vmlinuz-6.12.111+deb12-amd64",
    },
];

const BUSYBOX_PACKAGE: &str = "busybox-static";
const BUSYBOX_PATH: &str = "./bin/busybox";

pub fn ensure_qemu() -> Result<()> {
    if quiet(Command::new("qemu-system-x86_64").arg("--version")) {
        return Ok(());
    }
    eprintln!("xtask: installing qemu-system-x86 from Debian's packages");
    let noninteractive = [("DEBIAN_FRONTEND", "noninteractive")];
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .envs(noninteractive))?;
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "qemu-system-x86",
        ])
        .envs(noninteractive))?;
    if !quiet(Command::new("qemu-system-x86_64").arg("--version")) {
        bail!("qemu-system-x86 was installed but qemu-system-x86_64 does not run");
    }
    Ok(())
}

pub fn kernel_image(cache: &Path, kernel: &Kernel) -> Result<PathBuf> {
    extract_once(cache, kernel.package, kernel.image)
}

pub fn busybox(cache: &Path) -> Result<PathBuf> {
    extract_once(cache, BUSYBOX_PACKAGE, BUSYBOX_PATH)
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `<cache>/<package>/<member>`, downloaded and extracted on the first call only. Only the one
/// member is kept: a kernel package is ≈400 MB unpacked, almost all of it modules the guest
/// does not load.
fn extract_once(cache: &Path, package: &str, member: &str) -> Result<PathBuf> {
    let dir = cache.join(package);
    let target = dir.join(member);
    if target.is_file() {
        return Ok(target);
    }
    eprintln!("xtask: fetching {member} from Debian's {package} (once)");
    let staging = cache.join(format!("{package}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let deb = download(&staging, package)?;
    untar_member(&deb, &staging.join("root"), member)?;
    std::fs::remove_file(&deb)?;
    let _ = std::fs::remove_dir_all(&dir);
    // Renamed into place whole, so an interrupted run never leaves a half-extracted cache.
    std::fs::rename(staging.join("root"), &dir)
        .with_context(|| format!("moving the extracted {package} to {}", dir.display()))?;
    std::fs::remove_dir_all(&staging)?;
    if !target.is_file() {
        bail!("{package} has no {member}");
    }
    Ok(target)
}

/// `apt-get download` into `dir`; refreshes the package lists once if apt does not know it.
fn download(dir: &Path, package: &str) -> Result<PathBuf> {
    let fetch = || {
        Command::new("apt-get")
            // apt's download sandbox user cannot write to root's cache: download as root.
            .args(["download", "-qq", "-o", "APT::Sandbox::User=root", package])
            .current_dir(dir)
            .status()
            .with_context(|| format!("running apt-get download {package}"))
    };
    if !fetch()?.success() {
        run(Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        if !fetch()?.success() {
            bail!("apt-get download {package} failed");
        }
    }
    std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x MEMBER`: what `dpkg -x` does, for one file.
fn untar_member(deb: &Path, into: &Path, member: &str) -> Result<()> {
    std::fs::create_dir_all(into)?;
    let mut unpack = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let tar_input = unpack.stdout.take().context("dpkg-deb's stdout")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .arg(member)
        .stdin(tar_input)
        .status();
    let unpacked = unpack.wait()?;
    let tar = tar.context("running tar")?;
    if !unpacked.success() || !tar.success() {
        bail!(
            "extracting {member} from {}: dpkg-deb {unpacked}, tar {tar}",
            deb.display()
        );
    }
    Ok(())
}
