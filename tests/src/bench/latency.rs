//! When each record appeared in `--events-json`, against the kernel time of the death it
//! records: a thread woken by inotify on every write stamps the lines it finds with the wall
//! clock; the record's `time` is the exit's kernel timestamp as wall clock.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, Result, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::stats::Percentiles;

/// A line and the wall-clock time (ns since the epoch) it was first seen.
struct Seen {
    at_ns: i128,
    line: String,
}

fn wall_ns() -> i128 {
    OffsetDateTime::now_utc().unix_timestamp_nanos()
}

pub struct Tailer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<Seen>>>>,
}

impl Tailer {
    /// Watches `path` (which must exist) from its current end.
    pub fn start(path: &Path) -> Result<Self> {
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::End(0))?;
        // SAFETY: inotify_init1 has no preconditions; the descriptor is owned below.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            bail!("inotify_init1: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid inotify descriptor and NUL-terminated path.
        if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c_path.as_ptr(), libc::IN_MODIFY) }
            < 0
        {
            bail!("inotify_add_watch: {}", std::io::Error::last_os_error());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("tail".into()).spawn({
            let stop = stop.clone();
            move || tail(&inotify, &mut file, &stop)
        })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops watching; the latency of every record seen, in microseconds.
    pub fn finish(mut self) -> Result<Vec<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self
            .thread
            .take()
            .context("tailer already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("tailer panicked"))??;
        let mut latencies = Vec::with_capacity(seen.len());
        for s in seen {
            let record: serde_json::Value =
                serde_json::from_str(&s.line).with_context(|| format!("not JSON: {}", s.line))?;
            let time = record["time"].as_str().context("a record without `time`")?;
            let died = OffsetDateTime::parse(time, &Rfc3339)
                .with_context(|| format!("`time` {time:?}"))?;
            latencies.push((s.at_ns - died.unix_timestamp_nanos()) as f64 / 1_000.0);
        }
        Ok(latencies)
    }
}

impl Drop for Tailer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tail(inotify: &OwnedFd, file: &mut File, stop: &AtomicBool) -> Result<Vec<Seen>> {
    let mut seen = Vec::new();
    let mut partial = String::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut events = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own; a 20 ms timeout so that `stop` is noticed.
        unsafe { libc::poll(&raw mut pfd, 1, 20) };
        // SAFETY: reading into a buffer we own; non-blocking, so EAGAIN just means no events.
        while unsafe {
            libc::read(
                inotify.as_raw_fd(),
                events.as_mut_ptr().cast(),
                events.len(),
            )
        } > 0
        {}
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            let at_ns = wall_ns();
            partial.push_str(&String::from_utf8_lossy(&chunk[..n]));
            while let Some(end) = partial.find('\n') {
                let line: String = partial.drain(..=end).collect();
                seen.push(Seen {
                    at_ns,
                    line: line.trim_end().to_owned(),
                });
            }
        }
    }
    Ok(seen)
}

/// Latency at one death rate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LatencyAt {
    /// Deaths per second asked of the generator, and achieved.
    pub target_rate: u64,
    pub achieved_rate: f64,
    /// Microseconds from the exit (kernel timestamp) to the line in the file.
    pub micros: Option<Percentiles>,
}
