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
    /// The Debian suite it comes from when the machine's own sources do not carry it, read
    /// through a private apt state (never added to the machine's sources).
    pub suite: Option<&'static str>,
    /// Whether it has the cgroup v1 memory controller: Debian builds 6.12 without it
    /// (`CONFIG_MEMCG_V1` is off; mounting it fails with "Unknown subsys name 'memory'").
    pub memcg_v1: bool,
}

/// All carry BTF and boot with cgroup v1 or v2. 5.10 (Debian 11, the oldest in fleets):
/// `mark_victim(int pid)` with no RSS fields, no `memory.peak`; 6.1 predates the per-CPU
/// `rss_stat` counters (6.2) and has no `group_dead` in `sched_process_exit`.
pub const KERNELS: [Kernel; 3] = [
    Kernel {
        label: "5.10.0-32",
        package: "linux-image-5.10.0-32-amd64-unsigned",
        image: "./boot/vmlinuz-5.10.0-32-amd64",
        suite: Some("bullseye"),
        memcg_v1: true,
    },
    Kernel {
        label: "6.1.0-50",
        package: "linux-image-6.1.0-50-amd64-unsigned",
        image: "./boot/vmlinuz-6.1.0-50-amd64",
        suite: None,
        memcg_v1: true,
    },
    Kernel {
        label: "6.12.111",
        package: "linux-image-6.12.111+deb12-amd64-unsigned",
        image: "./boot/vmlinuz-6.12.111+deb12-amd64",
        suite: None,
        memcg_v1: false,
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
    let apt = match kernel.suite {
        Some(suite) => Apt::Suite(private_apt(cache, suite)?),
        None => Apt::Machine,
    };
    extract_once(cache, kernel.package, kernel.image, &apt)
}

pub fn busybox(cache: &Path) -> Result<PathBuf> {
    extract_once(cache, BUSYBOX_PACKAGE, BUSYBOX_PATH, &Apt::Machine)
}

/// Which package lists `apt-get download` reads.
enum Apt {
    /// The machine's own sources.
    Machine,
    /// A private state: `-o` options naming a sources list and lists/cache directories of
    /// its own.
    Suite(Vec<String>),
}

impl Apt {
    fn options(&self) -> &[String] {
        match self {
            Apt::Machine => &[],
            Apt::Suite(options) => options,
        }
    }
}

/// An apt state under `<cache>/apt-<suite>` whose sources list names `suite` and
/// `suite-security` on the mirrors the machine's own Debian sources use.
fn private_apt(cache: &Path, suite: &str) -> Result<Vec<String>> {
    let root = cache.join(format!("apt-{suite}"));
    for dir in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let (main, security) = machine_mirrors();
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let list = root.join("sources.list");
    std::fs::write(
        &list,
        format!(
            "deb [signed-by={keyring}] {main} {suite} main\n\
             deb [signed-by={keyring}] {security} {suite}-security main\n"
        ),
    )?;
    let option = |key: &str, path: &Path| format!("{key}={}", path.display());
    Ok(vec![
        "-o".into(),
        option("Dir::Etc::SourceList", &list),
        "-o".into(),
        "Dir::Etc::SourceParts=/dev/null".into(),
        "-o".into(),
        option("Dir::State::Lists", &root.join("lists")),
        "-o".into(),
        option("Dir::Cache", &root.join("cache")),
    ])
}

/// The Debian and Debian security mirrors of the machine's sources (deb822 or one-line
/// format), else Debian's own.
fn machine_mirrors() -> (String, String) {
    let mut uris = Vec::new();
    for file in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().map(str::trim) {
            if let Some(uri) = line.strip_prefix("URIs:") {
                uris.push(uri.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("deb ") {
                let uri = rest.split_whitespace().find(|w| w.contains("://"));
                uris.extend(uri.map(str::to_owned));
            }
        }
    }
    let debian = |security: bool| {
        uris.iter()
            .find(|u| u.contains("debian") && u.contains("security") == security)
            .cloned()
    };
    (
        debian(false).unwrap_or_else(|| "http://deb.debian.org/debian".into()),
        debian(true).unwrap_or_else(|| "http://deb.debian.org/debian-security".into()),
    )
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
fn extract_once(cache: &Path, package: &str, member: &str, apt: &Apt) -> Result<PathBuf> {
    let dir = cache.join(package);
    let target = dir.join(member);
    if target.is_file() {
        return Ok(target);
    }
    eprintln!("xtask: fetching {member} from Debian's {package} (once)");
    let staging = cache.join(format!("{package}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let deb = download(&staging, package, apt)?;
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
fn download(dir: &Path, package: &str, apt: &Apt) -> Result<PathBuf> {
    let fetch = || {
        Command::new("apt-get")
            .args(apt.options())
            // apt's download sandbox user cannot write to root's cache: download as root.
            .args(["download", "-qq", "-o", "APT::Sandbox::User=root", package])
            .current_dir(dir)
            .status()
            .with_context(|| format!("running apt-get download {package}"))
    };
    if !fetch()?.success() {
        run(Command::new("apt-get")
            .args(apt.options())
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
