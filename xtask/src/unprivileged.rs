//! Plain `cargo test` must pass on any Linux machine: not root, no bpftool, no promtool, no
//! container runtime. The suite runs as root with all of them, so it would not notice a unit
//! test that needs one; here the unit tests (the lib and bin targets of every crate) run once
//! more as `nobody`, without capabilities, with those tools hidden by a private mount
//! namespace. What needs them belongs in tests/ (integration tests, run as root).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Tools a unit test must not need. Hidden when the machine has them.
const HIDDEN_TOOLS: [&str; 8] = [
    "bpftool",
    "promtool",
    "prometheus",
    "containerd",
    "runc",
    "crun",
    "kubectl",
    "qemu-system-x86_64",
];

/// The unit-test executables of the release build, as cargo reports them (already built by
/// the suite's `cargo build --all-targets`: nothing is compiled here).
fn unit_test_binaries() -> Result<Vec<(PathBuf, PathBuf)>> {
    let out = super::cargo()
        .args([
            "test",
            "--release",
            "--workspace",
            "--all-targets",
            "--no-run",
            "--message-format=json",
        ])
        .output()
        .context("cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "cargo test --no-run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let unit = message["profile"]["test"].as_bool() == Some(true)
            && message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "lib" || k == "bin"));
        let package_dir = message["manifest_path"]
            .as_str()
            .and_then(|m| Path::new(m).parent())
            .map(Path::to_path_buf);
        if let (true, Some(exe), Some(dir)) = (unit, message["executable"].as_str(), package_dir) {
            // cargo runs a crate's tests in its package directory.
            binaries.push((PathBuf::from(exe), dir));
        }
    }
    if binaries.is_empty() {
        bail!("cargo reported no unit-test executables");
    }
    Ok(binaries)
}

/// Where `tool` is on this machine's usual paths.
fn installed(tool: &str) -> Vec<String> {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|dir| format!("{dir}/{tool}"))
    .filter(|path| std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_symlink()))
    .collect()
}

pub fn unit_tests_unprivileged() -> Result<()> {
    let binaries = unit_test_binaries()?;
    let hide: Vec<String> = HIDDEN_TOOLS.iter().flat_map(|t| installed(t)).collect();
    let mut failed = Vec::new();
    for (binary, dir) in &binaries {
        // The shell runs as root inside its own mount namespace, covers each tool with an
        // empty file, then drops to nobody with no capability left, for good.
        let mut script = String::from("set -e; mount --make-rprivate /; ");
        for path in &hide {
            let _ = write!(script, "mount --bind /dev/null '{path}'; ");
        }
        script.push_str(
            "cd \"$1\"; exec setpriv --reuid=65534 --regid=65534 --clear-groups \
             --inh-caps=-all --bounding-set=-all --no-new-privs -- \"$0\" --test-threads=2",
        );
        println!(
            "xtask: unit tests as nobody, without {}: {}",
            HIDDEN_TOOLS.join(", "),
            binary.display()
        );
        let status = Command::new("unshare")
            .args(["--mount", "--", "sh", "-c", &script])
            .arg(binary)
            .arg(dir)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("TMPDIR", "/tmp")
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        if !status.success() {
            failed.push(binary.display().to_string());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "unit tests that fail without root or without an external tool (move them to \
             tests/): {}",
            failed.join(", ")
        )
    }
}
