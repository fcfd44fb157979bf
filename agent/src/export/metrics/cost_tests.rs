//! What `/metrics` costs at high cardinality: encode time and heap per series, at the sizes of
//! the benchmark (issue #6). Ignored in the suite (timing on a shared machine proves nothing);
//! rerun alone, so no other test's allocations mix into the heap figures:
//!
//! ```sh
//! cargo test --release -p coroner --lib export::metrics::cost_tests -- --ignored --nocapture --test-threads=1
//! ```

use std::time::{Duration, Instant};

use super::{Format, Metrics, MetricsConfig};
use crate::export::recent::tests::record;
use crate::record::{Reason, TerminationRecord};

const CONTAINERS_PER_POD: usize = 3;
/// Termination series per container: the benchmark's pod helper makes twelve kinds of death.
const TERMINATIONS_PER_CONTAINER: usize = 12;
/// Plus the two memory gauges (peak, limit) of each container.
const SERIES_PER_CONTAINER: usize = TERMINATIONS_PER_CONTAINER + 2;

/// glibc's count of bytes in use on the heap, mmapped chunks included.
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

/// Resident set size, from `/proc/self/statm`.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The records the benchmark's pods produce: every container of `pods` pods dies in twelve ways.
fn deaths(pods: usize) -> impl Iterator<Item = TerminationRecord> {
    (0..pods).flat_map(|p| {
        (0..CONTAINERS_PER_POD).flat_map(move |c| {
            (0..TERMINATIONS_PER_CONTAINER).map(move |kind| {
                let mut r = record(Some("bench"), Some(&format!("web-{p}")), 1000 + p as u32);
                r.container = Some(format!("c{c}"));
                r.owner_kind = Some("StatefulSet".into());
                r.owner_name = Some(format!("web-{}", p / 16));
                r.reason = Reason::ALL[kind % Reason::ALL.len()];
                r.main_process = kind < 8;
                r.container_memory_peak_bytes = Some(100 << 20);
                r.container_memory_limit_bytes = Some(256 << 20);
                r
            })
        })
    })
}

/// This thread's CPU time: on a shared machine, what the encoding itself cost, without the
/// time other processes held the core.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t) };
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The median wall and CPU time of `runs` calls, and what the last one returned.
fn median_of(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, Duration, usize) {
    let (mut walls, mut cpus) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut bytes = 0;
    for _ in 0..runs {
        let (started, cpu) = (Instant::now(), thread_cpu());
        bytes = f();
        walls.push(started.elapsed());
        cpus.push(thread_cpu().saturating_sub(cpu));
    }
    walls.sort_unstable();
    cpus.sort_unstable();
    (walls[runs / 2], cpus[runs / 2], bytes)
}

#[expect(
    clippy::cast_precision_loss,
    reason = "counts and durations far below 2^52, for a report"
)]
fn measure(series_target: usize) {
    let pods = series_target.div_ceil(SERIES_PER_CONTAINER * CONTAINERS_PER_POD);
    let records: Vec<TerminationRecord> = deaths(pods).collect();
    let (heap_before, rss_before) = (heap_in_use(), rss());
    let metrics = Metrics::new(MetricsConfig {
        retention: Duration::from_mins(15),
        max_pods: 4096,
    });
    let now = Instant::now();
    let started = Instant::now();
    for r in &records {
        metrics.observe_at(r, now);
    }
    let observe = started.elapsed();
    let heap = heap_in_use().saturating_sub(heap_before);
    let rss_filled = rss().saturating_sub(rss_before);
    let series = metrics
        .scrape(Format::OpenMetrics)
        .map(|piece| piece.lines().filter(|l| !l.starts_with('#')).count())
        .sum::<usize>();
    // What `/metrics` does: the exposition in pieces, each dropped once sent.
    let metrics = &metrics;
    let streamed = |format| move || metrics.scrape(format).map(|p| p.len()).sum::<usize>();
    let (om_wall, om_cpu, om_bytes) = median_of(9, streamed(Format::OpenMetrics));
    let (classic_wall, classic_cpu, classic_bytes) = median_of(9, streamed(Format::Classic));
    let rss_scraped = rss().saturating_sub(rss_before);
    // The whole exposition in one string (`Metrics::encode`), for comparison.
    let (whole_wall, whole_cpu, _) = median_of(9, || metrics.encode().len());
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    let per = |d: Duration| d.as_secs_f64() * 1e9 / series as f64;
    eprintln!(
        "{series} series ({pods} pods, {} records): observe {:.0} ns/record\n  \
         scrape OpenMetrics {:.0} ns/series CPU, {:.0} wall ({om_bytes} B); classic {:.0} CPU, \
         {:.0} wall ({classic_bytes} B); OpenMetrics in one string {:.0} CPU, {:.0} wall\n  \
         heap {} B/series ({:.1} MiB); RSS grew {:.1} MiB filling, {:.1} MiB after the scrapes",
        records.len(),
        observe.as_secs_f64() * 1e9 / records.len() as f64,
        per(om_cpu),
        per(om_wall),
        per(classic_cpu),
        per(classic_wall),
        per(whole_cpu),
        per(whole_wall),
        heap / series,
        mib(heap),
        mib(rss_filled),
        mib(rss_scraped),
    );
    drop(records);
}

#[test]
#[ignore = "a measurement: run alone, see the module docs"]
fn encode_cost_at_10k_and_100k_series() {
    measure(10_000);
    measure(100_000);
}
