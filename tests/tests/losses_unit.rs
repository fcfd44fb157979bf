//! Every drop counted, for the stages of `coroner_events_lost_total` that no outside action
//! forces deterministically: each is driven here at unit level and seen to move. (The stages
//! the real agent is driven into: `losses.rs`.)
//! - `channel`: the kernel stage's `send_records` with a full channel. Filling the agent's
//!   16 384-record channel from outside needs labelling stalled with 1 024 lookups in flight,
//!   which nothing outside the agent controls deterministically.
//! - `decode`: the programs only write events the decoder knows and user space cannot write
//!   into a BPF ring buffer, so the decoder's rejections and the reader's count published to
//!   the metric are tested apart.
//! - `cgroup`: the correlator with a lookup answering `None`.
//! - `correlate`: the correlator with its table caps shrunk (the real caps need 16 384 live
//!   processes, each sent a SIGTERM).

use std::time::Duration;

use agent_ebpf::{
    COMM_LEN, EventHeader, ExecFailureEvent, ExitEvent, KernelEvent, PATH_LEN, SignalEvent,
    exit_flags, kind,
};
use coroner::cgroup::CgroupInfo;
use coroner::correlate::{BootClock, CgroupLookup, Correlator, CorrelatorConfig, MemoryReading};
use coroner::export::{KernelStageStats, Metrics, MetricsConfig, ReaderStats};
use coroner::pipeline::kernel::send_records;
use coroner::record::TerminationRecord;
use coroner_tests::exposition::lost;

/// What the kernel stage publishes every second, with the reader's and the correlator's totals.
fn publish(metrics: &Metrics, undecodable: u64, correlator: Option<&Correlator>) {
    metrics.publish_kernel_stage(KernelStageStats {
        reader: ReaderStats {
            undecodable,
            park_errors: 0,
        },
        correlator: correlator.map(Correlator::stats).unwrap_or_default(),
        ..KernelStageStats::default()
    });
}

fn record(pid: u32) -> TerminationRecord {
    let mut r = coroner_tests::fixtures::oom_killed_init();
    r.pid = pid;
    r
}

#[test]
fn channel_a_full_record_channel_drops_and_counts() {
    let metrics = Metrics::new(MetricsConfig::default());
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    assert_eq!(send_records(&tx, (1..=5).map(record), &metrics), 2);
    assert_eq!(lost(&metrics.encode(), "channel"), 3);
    let kept: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|r| r.pid)
        .collect();
    assert_eq!(kept, [1, 2], "the oldest records went through, in order");
    // At shutdown the receiver may be gone: still counted, never a panic.
    drop(rx);
    assert_eq!(send_records(&tx, [record(6)], &metrics), 0);
    assert_eq!(lost(&metrics.encode(), "channel"), 4);
    assert_eq!(lost(&metrics.encode(), "kernel"), 0, "no other stage moved");
}

#[test]
fn decode_undecodable_records_are_counted_once() {
    let short_exit = kind::EXIT.to_ne_bytes().repeat(3);
    for bytes in [&[][..], &[7, 0], &short_exit, &[0xff; 256]] {
        assert!(
            KernelEvent::decode(bytes).is_err(),
            "{bytes:?} decoded as an event"
        );
    }
    let metrics = Metrics::new(MetricsConfig::default());
    publish(&metrics, 4, None);
    assert_eq!(lost(&metrics.encode(), "decode"), 4);
    // The reader's total is published every second: shown as published, never added up.
    publish(&metrics, 4, None);
    publish(&metrics, 5, None);
    assert_eq!(lost(&metrics.encode(), "decode"), 5);
}

/// A lookup that resolves nothing: every memory cgroup is gone, or was never seen.
struct Unresolvable;

impl CgroupLookup for Unresolvable {
    fn info(&mut self, _memcg_id: u64) -> Option<CgroupInfo> {
        None
    }

    fn memory(&mut self, _path: &str) -> MemoryReading {
        MemoryReading::default()
    }
}

fn config() -> CorrelatorConfig {
    let mut config = CorrelatorConfig::new("node", 4096, BootClock::from_offset_ns(0));
    config.hold = Duration::from_millis(1);
    config
}

fn header(kind: u32, ktime_ns: u64) -> EventHeader {
    EventHeader {
        kind,
        cpu: 0,
        ktime_ns,
    }
}

fn comm() -> [u8; COMM_LEN] {
    let mut comm = [0; COMM_LEN];
    comm[..6].copy_from_slice(b"victim");
    comm
}

fn exit(tgid: u32, memcg_id: u64, ktime_ns: u64) -> KernelEvent {
    KernelEvent::Exit(ExitEvent {
        header: header(kind::EXIT, ktime_ns),
        pid: tgid,
        tgid,
        parent_tgid: 1,
        exit_code: 1 << 8,
        memcg_id,
        parent_memcg_id: 1,
        start_boottime_ns: 1_000,
        maxrss_pages: 10,
        flags: exit_flags::PARENT_OUTSIDE,
        role: agent_ebpf::role::INIT,
        comm: comm(),
    })
}

fn sigterm(target_tgid: u32, ktime_ns: u64) -> KernelEvent {
    KernelEvent::Signal(SignalEvent {
        header: header(kind::SIGNAL, ktime_ns),
        sig: 15,
        code: 0,
        result: 0,
        group: 1,
        flags: 0,
        pad: 0,
        sender_pid: 7,
        sender_tgid: 7,
        target_pid: target_tgid,
        target_tgid,
        sender_memcg_id: 1,
        target_memcg_id: 100,
        target_start_boottime_ns: 1_000,
        sender_comm: comm(),
        target_comm: comm(),
    })
}

fn exec_failure(memcg_id: u64, ktime_ns: u64) -> KernelEvent {
    let mut path = [0; PATH_LEN];
    path[..8].copy_from_slice(b"/missing");
    KernelEvent::ExecFailure(ExecFailureEvent {
        header: header(kind::EXEC_FAILURE, ktime_ns),
        pid: 50,
        tgid: 50,
        errno: libc::ENOENT,
        path_len: 8,
        parent_tgid: 1,
        flags: 0,
        memcg_id,
        comm: comm(),
        path,
    })
}

#[test]
fn cgroup_a_death_whose_memcg_does_not_resolve_is_counted() {
    let mut correlator = Correlator::new(config()).unwrap();
    let mut lookup = Unresolvable;
    correlator.ingest(&exit(42, 999, 5_000), &mut lookup);
    let records = correlator.drain_ready(1_000_000_000, &mut lookup);
    assert!(
        records.is_empty(),
        "no record without a cgroup: {records:?}"
    );
    let metrics = Metrics::new(MetricsConfig::default());
    publish(&metrics, 0, Some(&correlator));
    assert_eq!(lost(&metrics.encode(), "cgroup"), 1);
}

#[test]
fn correlate_evicted_signal_histories_and_exec_failures_are_counted() {
    let mut config = config();
    config.caps.signal_histories = 2;
    config.caps.exec_failure_memcgs = 1;
    let mut correlator = Correlator::new(config).unwrap();
    let mut lookup = Unresolvable;
    // Five live processes sent SIGTERM: the table keeps two, three histories are lost.
    for (i, tgid) in (200..205).enumerate() {
        correlator.ingest(&sigterm(tgid, 1_000 + i as u64), &mut lookup);
    }
    // Exec failures in three memory cgroups: one is kept.
    for memcg_id in [100, 101, 102] {
        correlator.ingest(&exec_failure(memcg_id, 2_000 + memcg_id), &mut lookup);
    }
    let metrics = Metrics::new(MetricsConfig::default());
    publish(&metrics, 0, Some(&correlator));
    assert_eq!(lost(&metrics.encode(), "correlate"), 3 + 2);
    publish(&metrics, 0, Some(&correlator));
    assert_eq!(lost(&metrics.encode(), "correlate"), 5, "counted once");
    let evicted = |table: &str| {
        let series = format!("coroner_correlator_evictions_total{{table=\"{table}\"}} ");
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<u64>().ok())
    };
    assert_eq!(evicted("signal_histories"), Some(3));
    assert_eq!(evicted("exec_failure_memcgs"), Some(2));
}
