//! Builds the kernel programs (agent-ebpf, for the BPF target) and embeds the object.
//! The nightly toolchain, rust-src and bpf-linker are installed by `cargo xtask build`.

fn main() -> anyhow::Result<()> {
    let package = aya_build::Package {
        name: "agent-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf"),
        no_default_features: false,
        features: &["programs"],
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
