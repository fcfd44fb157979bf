//! The kernel stage: one thread owns the ring buffer, the correlator and the cgroup resolver,
//! so correlation state has exactly one owner and needs no lock. It hands finished records
//! to the async side through a bounded channel; a full channel is a counted loss.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent_ebpf::{KernelEvent, counter};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::correlate::{BootClock, CgroupLookup as _, Correlator, boottime_ns};
use crate::events::{EventReader, describe};
use crate::export::{
    EventCounts, EventKind, Heartbeat, KernelCounters, KernelStageStats, LossStage, Metrics,
    ReaderStats,
};
use crate::probes::Probes;
use crate::record::TerminationRecord;

use super::lookup::ResolverLookup;

/// How often the stage's counters (the kernel's, the reader's, the correlator's, the
/// resolver's) are published to the metrics, and the
/// boot→wall clock offset is refreshed (NTP may step the wall clock).
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// While events come, how often the ring is read (the programs do not wake the reader then).
/// An exit becomes final at the first read past its hold (250 µs), so within hold + SCAN
/// (0.75 ms) plus the write: inside the 1 ms latency budget, while each read (a wake-up of
/// this thread and of the writer) serves a batch of deaths, not one.
const SCAN: Duration = Duration::from_micros(500);
/// Empty scans in a row before the reader parks: a storm with short gaps keeps reading on the
/// timer instead of costing a wake-up per gap.
const IDLE_SCANS_BEFORE_PARK: u32 = 4;
/// The longest park: it bounds a wake-up lost to the race between parking and an event
/// (see `EventReader::park`), and shutdown and housekeeping stay timely.
const PARK: Duration = Duration::from_millis(100);

pub struct KernelStage {
    pub probes: Probes,
    pub reader: EventReader,
    pub correlator: Correlator,
    pub lookup: ResolverLookup,
    pub records: mpsc::Sender<TerminationRecord>,
    pub metrics: Metrics,
    pub shutdown: Arc<AtomicBool>,
    /// Beaten at each housekeeping: `/livez` fails when this loop stops.
    pub heartbeat: Heartbeat,
    pub trace_events: bool,
}

fn kind_of(event: &KernelEvent) -> EventKind {
    match event {
        KernelEvent::Exit(_) => EventKind::Exit,
        KernelEvent::Signal(_) => EventKind::Signal,
        KernelEvent::Oom(_) => EventKind::Oom,
        KernelEvent::ExecFailure(_) => EventKind::ExecFailure,
        KernelEvent::CgroupMkdir(_) => EventKind::CgroupMkdir,
    }
}

impl KernelStage {
    pub fn run(mut self) {
        // Know the containers that exist now before the first of them dies.
        self.lookup.resolver.refresh();
        let mut last_housekeeping = Instant::now();
        let mut handled = EventCounts::default();
        let mut idle_scans = 0;
        let mut just_unparked = false;
        while !self.shutdown.load(Ordering::Relaxed) {
            let read = self.read_events(&mut handled);
            let now = boottime_ns().ok();
            if let Some(now) = now {
                // One reading of each container's memory files per drain: every death in it has
                // already happened, so the reading is as exact for all of them.
                let ready = self.correlator.drain_ready(now, &mut self.lookup.batch());
                self.send(ready);
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = Instant::now();
                self.housekeeping(handled);
            }
            idle_scans = if read > 0 { 0 } else { idle_scans + 1 };
            // While events come, a steady cadence: an exit read at one scan is past its hold
            // by the next (hold < SCAN), so each scan is one wake-up, not one per deadline.
            // An exit that woke the parked reader, or one with nothing read since, is waited
            // for to the end of its hold: a lone death is not kept a whole scan.
            let lone = read == 0 || just_unparked;
            match (self.correlator.next_deadline_ns(), now) {
                (Some(deadline), Some(now)) if lone => self
                    .reader
                    .wait(Duration::from_nanos(deadline.saturating_sub(now)).min(SCAN)),
                (Some(_), _) => self.reader.wait(SCAN),
                (None, _) if idle_scans < IDLE_SCANS_BEFORE_PARK => self.reader.wait(SCAN),
                (None, _) => {
                    self.reader.park(PARK);
                    just_unparked = true;
                    continue;
                }
            }
            just_unparked = false;
        }
        // Deaths that reached the ring buffer after the last read still count: read them
        // before the final flush.
        self.read_events(&mut handled);
        let rest = self.correlator.flush(&mut self.lookup.batch());
        info!(
            records = rest.len(),
            "kernel stage stopping: pending records flushed"
        );
        self.send(rest);
        self.housekeeping(handled);
        // Dropping `self.probes` detaches every program.
    }

    /// Hands every kernel event in the ring to the resolver (new cgroups) or the correlator
    /// (deaths), counting them by kind in `handled`; returns how many records were read.
    fn read_events(&mut self, handled: &mut EventCounts) -> usize {
        let Self {
            reader,
            correlator,
            lookup,
            trace_events,
            ..
        } = self;
        reader.drain(&mut |event| {
            handled.note(kind_of(&event));
            if *trace_events {
                info!(target: "coroner::kernel", "{}", describe(&event));
            }
            if let KernelEvent::CgroupMkdir(mkdir) = &event {
                // The path is relative to the memory hierarchy's root, as the resolver's.
                let len = (mkdir.path_len as usize).min(mkdir.path.len());
                if len + 1 >= mkdir.path.len() {
                    // Cut by the kernel: a walk of the hierarchy resolves the id instead.
                    return;
                }
                let path = String::from_utf8_lossy(agent_ebpf::c_str_bytes(&mkdir.path[..len]));
                lookup.resolver.note_created(mkdir.memcg_id, &path);
                // Classified now, not at its first death: until the kernel knows a cgroup is
                // no container's, it takes the first exec in it for an init and the next for
                // exec sessions, and counts their plain exits as such.
                let _ = lookup.info(mkdir.memcg_id);
                return;
            }
            correlator.ingest(&event, lookup);
        })
    }

    fn send(&self, records: Vec<TerminationRecord>) {
        send_records(&self.records, records, &self.metrics);
    }

    fn housekeeping(&mut self, events: EventCounts) {
        self.heartbeat.beat();
        if let Ok(clock) = BootClock::now() {
            self.correlator.set_clock(clock);
        }
        let slots: Vec<u64> = (0..counter::COUNT)
            .map(|slot| self.probes.counter(slot))
            .collect();
        self.metrics.publish_kernel_stage(KernelStageStats {
            kernel: KernelCounters::from_slots(&slots),
            events,
            reader: ReaderStats {
                undecodable: self.reader.undecodable,
                park_errors: self.reader.parked_flag_errors,
            },
            correlator: self.correlator.stats(),
            tables: self.correlator.sizes(),
            resolver: self.lookup.resolver.stats(),
            resolver_cache: self.lookup.resolver.cache_sizes(),
            host_memcgs: self.lookup.host_memcg_stats,
        });
    }
}

/// Hands finished records to labelling without ever blocking the ring buffer's reader: a
/// record that finds the channel full (or closed, at shutdown) is dropped and counted in
/// stage `channel`. Returns how many were sent.
pub fn send_records(
    channel: &mpsc::Sender<TerminationRecord>,
    records: impl IntoIterator<Item = TerminationRecord>,
    metrics: &Metrics,
) -> usize {
    let mut sent = 0;
    for record in records {
        match channel.try_send(record) {
            Ok(()) => sent += 1,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.lost(LossStage::Channel, 1);
                warn_rate_limited(
                    "record channel full: records are being dropped (counted in stage `channel`)",
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => metrics.lost(LossStage::Channel, 1),
        }
    }
    sent
}

fn warn_rate_limited(message: &str) {
    use std::sync::Mutex;
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        *last = Some(Instant::now());
        warn!("{message}");
    }
}
