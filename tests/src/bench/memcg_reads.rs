//! What reading a container's memory peak and limit costs the agent per death: by path (open,
//! read, close each file), with the files kept open (the agent's `MemoryReader`), and within
//! one batch (a drain of the ring buffer reads each cgroup once). On a real memory cgroup at
//! the depth of a kubelet one, made by the bench and removed after.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use coroner::cgroup::{MemoryHierarchy, MemoryReader};
use serde::Serialize;

use coroner_tests::cgroups::unique_hex;

const CALLS: u32 = 100_000;

#[derive(Clone, Debug, Serialize)]
pub struct MemcgReads {
    pub calls: u32,
    pub cgroup_depth: usize,
    pub by_path_ns: f64,
    pub kept_open_ns: f64,
    pub in_batch_ns: f64,
}

/// The cgroups made, removed deepest first however the phase ends.
struct Made {
    hierarchy: MemoryHierarchy,
    dirs: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(self.hierarchy.absolute(dir));
        }
    }
}

fn per_call(calls: u32, mut read: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        read();
    }
    Duration::as_secs_f64(&started.elapsed()) * 1e9 / f64::from(calls)
}

pub fn run() -> Result<MemcgReads> {
    let hierarchy = MemoryHierarchy::detect(Path::new("/sys/fs/cgroup"))
        .context("no memory cgroup hierarchy")?;
    let leaf = format!(
        "/coroner-bench-{}/kubepods/burstable/pod7c0e2a51-93d4-4f0b-8a6e-1d2c3b4a5f60/{}",
        unique_hex(8),
        "ab".repeat(32)
    );
    let mut made = Made {
        hierarchy: hierarchy.clone(),
        dirs: Vec::new(),
    };
    let mut partial = String::new();
    for part in leaf.split('/').filter(|p| !p.is_empty()) {
        partial = format!("{partial}/{part}");
        let dir = hierarchy.absolute(&partial);
        fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        made.dirs.push(partial.clone());
    }
    let by_path_ns = per_call(CALLS, || {
        std::hint::black_box(hierarchy.memory(&leaf));
    });
    let mut reader = MemoryReader::new(hierarchy.clone());
    let kept_open_ns = per_call(CALLS, || {
        std::hint::black_box(reader.memory(&leaf));
    });
    reader.begin_batch();
    let in_batch_ns = per_call(CALLS, || {
        std::hint::black_box(reader.memory(&leaf));
    });
    reader.end_batch();
    drop(reader);
    Ok(MemcgReads {
        calls: CALLS,
        cgroup_depth: made.dirs.len(),
        by_path_ns,
        kept_open_ns,
        in_batch_ns,
    })
}
