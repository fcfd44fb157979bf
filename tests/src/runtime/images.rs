//! The two images the real-runtime tests run, built offline (no registry is reachable) as
//! docker-archive tars and imported into the test's containerd with `ctr images import`:
//!
//! - [`PAUSE`]: the pod sandbox, a static C program that sleeps until SIGTERM/SIGINT and reaps
//!   the orphans of a shared PID namespace, as the kubelet's pause does;
//! - [`TEST`]: busybox (static) with its applets in `/bin`, `/bin/hog` (a static C program that
//!   allocates and touches N MiB: an OOM at a limit), `/bin/relay` (a tini-style init whose
//!   child crashes with SIGSEGV) and `/bin/not-executable` (a file without the x bit: an
//!   entrypoint execve refuses).
//!
//! The tars are cached under `target/coroner-images/`, named by a hash of what goes in, so a
//! second run only imports them.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::containerd::Containerd;
use crate::cgroups::unique_hex;

/// The pod sandbox image (the containerd config's `sandbox_image`).
pub const PAUSE: &str = "coroner.test/pause:1";
/// The containers' image.
pub const TEST: &str = "coroner.test/busybox:1";

/// Bump when the layout of the images changes in a way the hashed inputs do not show.
const FORMAT: &str = "1";

const PAUSE_C: &str = r"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
";

const HOG_C: &str = r"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* hog MIB: allocates and touches MIB MiB one at a time, then exits 0. */
int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 0;
    for (long i = 0; i < mib; i++) {
        char *p = malloc(1 << 20);
        if (!p) return 2;
        memset(p, 1, 1 << 20);
    }
    return 0;
}
";

const RELAY_C: &str = r"
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
/* relay: a tini-style init. Forks a child that crashes with SIGSEGV a second later (no core
   file), waits for it and exits 128 + its signal, or its exit code, as tini and dumb-init do. */
int main(void) {
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        sleep(1);
        *(volatile int *)0 = 1;
        return 3;
    }
    int status;
    while (waitpid(child, &status, 0) < 0) {}
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}
";

/// Builds (or finds in the cache) both images and imports them into `containerd`.
pub fn import(containerd: &Containerd) -> Result<()> {
    for (name, build) in [
        (PAUSE, pause_rootfs as fn(&Path) -> Result<Vec<String>>),
        (TEST, test_rootfs),
    ] {
        let tar = cached(name, build)?;
        containerd
            .ctr(&["images", "import", &tar.to_string_lossy()])
            .with_context(|| format!("importing {name}"))?;
    }
    Ok(())
}

fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("coroner-images")
}

/// The archive of image `name`: from the cache, or built by `rootfs` (which fills a directory
/// and returns the entrypoint) and put there.
fn cached(name: &str, rootfs: fn(&Path) -> Result<Vec<String>>) -> Result<PathBuf> {
    let dir = cache_dir();
    fs::create_dir_all(&dir)?;
    let busybox = fs::metadata("/usr/bin/busybox").context("/usr/bin/busybox")?;
    let key = fnv(&format!(
        "{FORMAT}\n{name}\n{PAUSE_C}\n{HOG_C}\n{RELAY_C}\n{}\n{:?}",
        busybox.len(),
        busybox.modified().ok()
    ));
    let file_name = name.replace(['/', ':'], "_");
    let tar = dir.join(format!("{file_name}-{key:016x}.tar"));
    if tar.exists() {
        return Ok(tar);
    }
    // Built aside and renamed into place: tests running at once never read half a file.
    let work = dir.join(format!("build-{}", unique_hex(8)));
    let result = build(name, rootfs, &work, &tar);
    let _ = fs::remove_dir_all(&work);
    result.map(|()| tar)
}

fn build(
    name: &str,
    rootfs: fn(&Path) -> Result<Vec<String>>,
    work: &Path,
    tar: &Path,
) -> Result<()> {
    let root = work.join("rootfs");
    fs::create_dir_all(&root)?;
    let entrypoint = rootfs(&root)?;
    let layer = work.join("layer.tar");
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
        ])
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint,
            "Env": ["PATH=/bin"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", sha256(&layer)?)] },
    });
    let config_bytes = serde_json::to_vec(&config)?;
    fs::write(work.join("config.json"), &config_bytes)?;
    let config_name = format!("{}.json", sha256(&work.join("config.json"))?);
    fs::rename(work.join("config.json"), work.join(&config_name))?;
    let manifest = json!([{ "Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"] }]);
    fs::write(work.join("manifest.json"), serde_json::to_vec(&manifest)?)?;
    let archive = work.join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(work)
        .arg("-cf")
        .arg(&archive)
        .args(["manifest.json", &config_name, "layer.tar"]))?;
    fs::rename(&archive, tar)?;
    Ok(())
}

fn pause_rootfs(root: &Path) -> Result<Vec<String>> {
    compile(PAUSE_C, &root.join("pause"))?;
    Ok(vec!["/pause".into()])
}

fn test_rootfs(root: &Path) -> Result<Vec<String>> {
    let bin = root.join("bin");
    fs::create_dir_all(&bin)?;
    for dir in ["tmp", "proc", "sys", "dev", "etc"] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::copy("/usr/bin/busybox", bin.join("busybox"))?;
    let list = Command::new("/usr/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8(list.stdout)?.lines() {
        let link = bin.join(applet);
        if applet != "busybox" && !link.exists() {
            symlink("busybox", &link)?;
        }
    }
    compile(HOG_C, &bin.join("hog"))?;
    compile(RELAY_C, &bin.join("relay"))?;
    let not_exec = bin.join("not-executable");
    fs::write(&not_exec, "#!/bin/sh\nexit 0\n")?;
    fs::set_permissions(&not_exec, fs::Permissions::from_mode(0o644))?;
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(vec!["/bin/sh".into()])
}

/// `gcc -static` of one C source into `out`.
fn compile(source: &str, out: &Path) -> Result<()> {
    let c = out.with_extension("c");
    fs::write(&c, source)?;
    run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(&c))
    .context("gcc -static (Debian's gcc and libc6-dev)")?;
    fs::remove_file(&c)?;
    Ok(())
}

fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(file).output()?;
    if !out.status.success() {
        bail!("sha256sum {}: {}", file.display(), out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    text.split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum printed nothing")
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// FNV-1a, 64 bits: a cache key, not a checksum anyone relies on.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
