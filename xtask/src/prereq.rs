//! Prerequisites a fresh machine lacks, installed once and cached under
//! `~/.cache/coroner` (bpf-linker) or by the system's package manager.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// bpf-linker must match the LLVM of the toolchain that compiles the programs; 0.13.0 with
/// LLVM 22 is the pair verified on these machines (shared/PLATFORM.md).
const BPF_LINKER_VERSION: &str = "0.13.0";
const HOST_TOOLCHAIN: &str = "1.95.0";
/// The dependency policy check (`deny.toml`); 0.20.2 builds with the host toolchain.
const CARGO_DENY_VERSION: &str = "0.20.2";

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

fn cache_dir() -> PathBuf {
    home().join(".cache/coroner")
}

/// Where this project installs bpf-linker: a root of its own, so nothing else is touched.
fn tools_root() -> PathBuf {
    cache_dir().join("tools")
}

/// PATH with the project's tools first.
pub fn path_with_tools() -> OsString {
    let mut paths = vec![tools_root().join("bin"), home().join(".cargo/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).expect("PATH entries are valid")
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn ensure_build_tools() -> Result<()> {
    ensure_ebpf_toolchain()?;
    ensure_bpf_linker()?;
    // The kubelet double's CRI client (k8s-cri, tests/) generates its gRPC code at build time.
    ensure_debian(&[("/usr/bin/protoc", "protobuf-compiler")])
}

/// The dated nightly the kernel programs build with, and its rustc's commit, from
/// rust-toolchain-ebpf.toml (agent/build.rs reads the channel from the same file).
fn ebpf_pin(key: &str) -> Result<String> {
    let path = crate::workspace_root().join("rust-toolchain-ebpf.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .with_context(|| format!("{} has no {key}", path.display()))
}

/// The toolchain that is the pinned build: the pinned channel, or the machine's undated
/// `nightly` when it is that build (agent/build.rs chooses the same way).
pub fn ebpf_toolchain() -> Result<String> {
    let channel = ebpf_pin("channel")?;
    let commit = ebpf_pin("commit-hash")?;
    [channel.clone(), "nightly".to_owned()]
        .into_iter()
        .find(|t| rustc_commit(t).as_deref() == Some(commit.as_str()))
        .with_context(|| format!("neither {channel} nor `nightly` is rustc {commit}"))
}

fn rustc_commit(toolchain: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "-vV"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))
        .map(str::to_owned)
}

/// The pinned nightly with rust-src and clippy: the machines here come with an undated
/// `nightly` that is the pinned build; elsewhere the pinned channel is installed.
fn ensure_ebpf_toolchain() -> Result<()> {
    if let Ok(toolchain) = ebpf_toolchain() {
        return add_components(&toolchain);
    }
    let channel = ebpf_pin("channel")?;
    eprintln!("xtask: installing {channel} (the eBPF programs build with it)");
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        &channel,
        "--profile",
        "minimal",
        "--component",
        "rust-src,clippy",
    ]))?;
    ebpf_toolchain().map(drop)
}

/// rust-src (for `-Z build-std=core`) and clippy (for `cargo xtask lint`) on `toolchain`.
fn add_components(toolchain: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", toolchain])
        .output()
        .context("rustup is needed to build the eBPF programs")?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    for component in ["rust-src", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("xtask: adding {component} to the {toolchain} toolchain");
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                toolchain,
            ]))?;
        }
    }
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    let linker = tools_root().join("bin/bpf-linker");
    if quiet(Command::new(&linker).arg("--version")) {
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the toolchain's LLVM (≈1 min, once)"
    );
    // The toolchain ships libLLVM; bpf-linker links against it via an LLVM_PREFIX holding
    // `lib/libLLVM.so`. The file in the sysroot is a linker script, hence both links.
    let sysroot = Command::new("rustc")
        .args([&format!("+{HOST_TOOLCHAIN}"), "--print", "sysroot"])
        .output()?;
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim());
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so") || n.starts_with("libLLVM-"))
        })
        .context("the host toolchain ships no libLLVM")?;
    let prefix = cache_dir().join("llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for name in [
        OsString::from("libLLVM.so"),
        lib.file_name().unwrap_or_default().to_owned(),
    ] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args([
            &format!("+{HOST_TOOLCHAIN}"),
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22", "--root"])
        .arg(tools_root())
        .env("LLVM_PREFIX", &prefix))?;
    if !quiet(Command::new(&linker).arg("--version")) {
        bail!(
            "bpf-linker was built but does not run: {}",
            linker.display()
        );
    }
    Ok(())
}

pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!("{what} needs root (CAP_BPF, CAP_PERFMON and cgroup writes): run as root");
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Installs the package of every path in `wanted` that does not exist (nothing when all do),
/// without Debian's recommended extras.
fn ensure_debian(wanted: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = wanted
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!(
        "xtask: installing {} from Debian's packages",
        packages.join(", ")
    );
    let noninteractive = [("DEBIAN_FRONTEND", "noninteractive")];
    run(Command::new("apt-get")
        .arg("update")
        .arg("-qq")
        .envs(noninteractive))?;
    run(Command::new("apt-get")
        // Recommends pull in unrelated packages (prometheus's bring a desktop's worth); apt
        // waits for a lock another install holds.
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=300",
        ])
        .args(packages)
        .envs(noninteractive))
}

/// What the end-to-end tests drive: Prometheus/promtool (real ones), tracefs.
pub fn ensure_test_tools() -> Result<()> {
    // Prometheus and promtool (real ones, for the end-to-end and alert tests), bpftool (an
    // independent reader of BTF for the offset tests), jq and yq (the manifest checks).
    let wanted = [
        ("/usr/bin/prometheus", "prometheus"),
        ("/usr/bin/promtool", "prometheus"),
        ("/usr/sbin/bpftool", "bpftool"),
        ("/usr/bin/jq", "jq"),
        ("/usr/bin/yq", "yq"),
        // kubectl's kustomize renders deploy/ and its overlays for the manifest test. The
        // overlays use kustomize Components (kubectl >= 1.21): Debian bookworm's
        // kubernetes-client (1.20, kustomize v2.0.3) renders deploy/base only, and
        // deploy/test/manifests.sh then fails naming the version. The image of these machines
        // has kubectl 1.32 (kustomize v5.5) at /usr/bin/kubectl: nothing is installed.
        ("/usr/bin/kubectl", "kubernetes-client"),
    ];
    ensure_debian(&wanted)?;
    // The real container runtime of tests/src/runtime: containerd (with ctr and the runc v2
    // shim), runc and crun as its two handlers, busybox-static for the test image; the tests
    // start a containerd of their own, never the system's (the package starts none here: PID 1
    // is not systemd).
    ensure_debian(&[
        ("/usr/bin/containerd", "containerd"),
        ("/usr/bin/ctr", "containerd"),
        ("/usr/bin/containerd-shim-runc-v2", "containerd"),
        ("/usr/sbin/runc", "runc"),
        ("/usr/bin/crun", "crun"),
        ("/usr/bin/busybox", "busybox-static"),
        ("/usr/bin/gcc", "gcc"),
        ("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
    ])?;
    ensure_cargo_deny()?;
    // cargo-deny runs offline in the suite and reads every crate of the lock file, also those
    // of other platforms and targets no build here downloads: fetch them all first.
    run(crate::cargo().args(["fetch", "--locked"]))?;
    ensure_tracefs("exec-failure tests will fail");
    Ok(())
}

/// The syscall tracepoints (coroner's exec-failure probes, the bench's floor) are tracefs
/// events: mounted here if the machine has not.
fn ensure_tracefs(otherwise: &str) {
    if !Path::new("/sys/kernel/tracing/events").is_dir() {
        let _ = std::fs::create_dir_all("/sys/kernel/tracing");
        if !quiet(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])) {
            eprintln!("xtask: could not mount tracefs; {otherwise}");
        }
    }
}

/// What the bench drives besides the agent: bpftool (BTF ids for the floor's programs,
/// program names) and what a user would run instead of coroner, libbpf-tools' exitsnoop,
/// sigsnoop and execsnoop (Debian's `libbpf-tools`, 0.26 on bookworm).
pub fn ensure_bench_tools() -> Result<()> {
    ensure_debian(&[
        ("/usr/sbin/bpftool", "bpftool"),
        ("/usr/sbin/exitsnoop", "libbpf-tools"),
        ("/usr/sbin/sigsnoop", "libbpf-tools"),
        ("/usr/sbin/execsnoop", "libbpf-tools"),
    ])?;
    ensure_tracefs("the floor's syscall tracepoints will be left out");
    Ok(())
}

/// cargo-deny for the dependency policy test (tests/tests/security.rs), in the project's own
/// tools root like bpf-linker; built from crates.io once (≈3 min).
fn ensure_cargo_deny() -> Result<()> {
    let deny = tools_root().join("bin/cargo-deny");
    if quiet(Command::new(&deny).arg("--version")) {
        return Ok(());
    }
    eprintln!("xtask: building cargo-deny {CARGO_DENY_VERSION} (≈3 min, once)");
    run(Command::new("cargo")
        .args([
            &format!("+{HOST_TOOLCHAIN}"),
            "install",
            "cargo-deny",
            "--locked",
            "--version",
            CARGO_DENY_VERSION,
            "--root",
        ])
        .arg(tools_root()))
}
