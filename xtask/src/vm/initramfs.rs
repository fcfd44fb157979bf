//! The guest's whole root file system: busybox, `/init` (tests/vm/init.sh), the host-built
//! `coroner` and `coroner-victim`, and the shared libraries `ldd` says they load — the very
//! files of this machine, so the guest runs the same binaries against the same glibc.

use std::collections::BTreeSet;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::cpio;

pub struct Contents<'a> {
    pub busybox: &'a Path,
    pub init: &'a Path,
    pub agent: &'a Path,
    pub victim: &'a Path,
}

/// Mount points and scratch directories `/init` expects to exist.
const EMPTY_DIRS: [&str; 6] = ["/proc", "/sys", "/dev", "/tmp", "/run", "/etc"];

pub fn write(out: &Path, contents: &Contents) -> Result<()> {
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![
        ("/init".into(), 0o755, read(contents.init)?),
        ("/bin/busybox".into(), 0o755, read(contents.busybox)?),
        (
            "/usr/local/bin/coroner".into(),
            0o755,
            without_debug_info(contents.agent, out)?,
        ),
        (
            "/usr/local/bin/coroner-victim".into(),
            0o755,
            without_debug_info(contents.victim, out)?,
        ),
    ];
    let mut libraries = BTreeSet::new();
    for binary in [contents.agent, contents.victim] {
        libraries.extend(shared_libraries(binary)?);
    }
    for library in libraries {
        let data = read(Path::new(&library))?;
        files.push((library, 0o755, data));
    }

    let mut dirs = BTreeSet::new();
    for dir in EMPTY_DIRS {
        dirs.insert(dir.to_owned());
    }
    for (name, ..) in &files {
        let mut parent = Path::new(name).parent();
        while let Some(dir) = parent.filter(|d| *d != Path::new("/")) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }

    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cpio = cpio::Writer::new(BufWriter::new(file));
    // A BTreeSet lists "/a" before "/a/b": every parent precedes its children.
    for dir in &dirs {
        cpio.dir(dir)?;
    }
    for (name, mode, data) in &files {
        cpio.file(name, *mode, data)?;
    }
    // The kernel runs /init with its shebang's interpreter; busybox is every command.
    cpio.symlink("/bin/sh", "busybox")?;
    cpio.finish()
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// The binary without its DWARF sections (≈67 of the agent’s ≈85 MB): the guest keeps its
/// whole root file system in RAM, and a smaller RAM makes the node-wide OOM come sooner. Code,
/// data and the embedded eBPF object are untouched. Without `objcopy`, the binary as it is.
fn without_debug_info(binary: &Path, beside: &Path) -> Result<Vec<u8>> {
    let name = binary.file_name().unwrap_or_default().to_string_lossy();
    let slim = beside.with_file_name(format!("{name}.nodebug"));
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&slim)
        .status()
        .is_ok_and(|s| s.success());
    let data = read(if stripped { &slim } else { binary })?;
    let _ = std::fs::remove_file(&slim);
    Ok(data)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Absolute paths of the libraries (and the dynamic loader) `binary` needs, from `ldd`.
fn shared_libraries(binary: &Path) -> Result<Vec<String>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // A static binary needs nothing; say so rather than guess.
        if text.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, `/lib64/ld-linux-x86-64.so.2 (0x…)`,
/// and `linux-vdso.so.1 (0x…)` (in the kernel: nothing to copy).
fn parse_ldd(text: &str) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("=> not found") {
            bail!("a library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            paths.push(path.to_owned());
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::parse_ldd;

    #[test]
    fn ldd_output_gives_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }
}
