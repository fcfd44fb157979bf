//! What the workspace claims, checked: formatting, clippy with `-D warnings` on the host
//! crates and on the eBPF crate for its real target, and the dependency policy (cargo-deny,
//! in tests/tests/security.rs). `cargo xtask test` runs these first, so CI fails on a
//! formatting slip or a clippy warning as it fails on a test.

use anyhow::{Result, bail};

use crate::{cargo, prereq, run};

/// A check and what it is called in the log.
type Check = (&'static str, fn() -> Result<()>);

/// Every check, all of them even when one fails, so one run shows every slip.
pub fn lint() -> Result<()> {
    prereq::ensure_build_tools()?;
    let checks: [Check; 3] = [
        ("cargo fmt --check", fmt),
        ("clippy, host crates", clippy_host),
        ("clippy, eBPF crate (bpfel-unknown-none)", clippy_ebpf),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        eprintln!("xtask lint: {name}");
        if let Err(e) = check() {
            eprintln!("xtask lint: {name} FAILED: {e:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join("; "));
    }
    Ok(())
}

fn fmt() -> Result<()> {
    // The eBPF crate is a workspace member: `--all` covers it too.
    run(cargo().args(["fmt", "--all", "--check"]))
}

fn clippy_host() -> Result<()> {
    // The release profile, like every other build here: clippy then shares the build's
    // dependency metadata instead of checking the dependency tree a second time in debug.
    run(cargo().args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// The kernel programs as the BPF target sees them (`--features programs`): on the host,
/// agent-ebpf is only the ABI library, so host clippy never reads the programs.
fn clippy_ebpf() -> Result<()> {
    let toolchain = prereq::ebpf_toolchain()?;
    let target_dir = crate::workspace_root().join("target/lint-ebpf");
    let mut cmd = std::process::Command::new("rustup");
    cmd.current_dir(crate::workspace_root())
        .env("PATH", prereq::path_with_tools())
        .args(["run", &toolchain, "cargo", "clippy"])
        .args(["--package", "agent-ebpf", "--bins", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--features", "programs", "--target-dir"])
        .arg(&target_dir)
        .args(["--", "-D", "warnings"])
        // What aya-build passes when it builds the same crate (agent/build.rs).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
        );
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "CARGO"] {
        cmd.env_remove(key);
    }
    run(&mut cmd)
}
