//! Builds the kernel programs (agent-ebpf, for the BPF target) and embeds the object.
//! They build with the dated nightly of rust-toolchain-ebpf.toml, installed by `cargo xtask
//! build` with its rust-src, as is bpf-linker.

use std::process::Command;

use anyhow::{Context as _, bail};

const PIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rust-toolchain-ebpf.toml");

fn pinned(text: &str, key: &str) -> anyhow::Result<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .with_context(|| format!("{PIN} has no {key}"))
}

fn commit_of(toolchain: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "-vV"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))
        .map(str::to_owned)
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed={PIN}");
    let pin = std::fs::read_to_string(PIN).with_context(|| format!("reading {PIN}"))?;
    let channel = pinned(&pin, "channel")?;
    let commit = pinned(&pin, "commit-hash")?;
    // The pinned build under its own name, or the machine's undated `nightly` when it is
    // that build (rustup cannot link a toolchain under an official channel's name).
    let toolchain = [channel.as_str(), "nightly"]
        .into_iter()
        .find(|t| commit_of(t).as_deref() == Some(commit.as_str()))
        .map(str::to_owned);
    let Some(toolchain) = toolchain else {
        bail!("neither {channel} nor `nightly` is rustc {commit}: run `cargo xtask build`");
    };
    let package = aya_build::Package {
        name: "agent-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf"),
        no_default_features: false,
        features: &["programs"],
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain))
}
