//! Ring buffer → typed kernel events.
//!
//! Wake-ups are what an event costs the dying task most (an `irq_work` and a self-IPI: ≈12 µs
//! in a VM against 0.4 µs without), so the programs submit without one and the reader polls
//! on a timer while there is work. When there is none it *parks*: it raises the `READER` flag
//! and sleeps on the ring's fd; the first event after that wakes it (see
//! `agent-ebpf/src/main.rs`, `wakeup`). So an idle node costs a few wake-ups a second and a
//! storm costs no wake-up per event.

use std::os::fd::AsRawFd;
use std::time::Duration;

use agent_ebpf::{DecodeError, KernelEvent};
use aya::maps::{Array, MapData, RingBuf};

/// Reads one ring buffer; owned by the thread that consumes it.
pub struct EventReader {
    ring: RingBuf<MapData>,
    /// The programs' `READER` flag; without it parking is a plain timed poll.
    parked_flag: Option<Array<MapData, u32>>,
    /// Records that could not be decoded (stage `decode`).
    pub undecodable: u64,
    pub parked_flag_errors: u64,
}

impl EventReader {
    /// A reader without the parking flag: every wait is a timed poll.
    #[must_use]
    pub fn new(ring: RingBuf<MapData>) -> Self {
        Self {
            ring,
            parked_flag: None,
            undecodable: 0,
            parked_flag_errors: 0,
        }
    }

    /// A reader that parks with the programs' `READER` flag
    /// ([`crate::probes::Probes::take_reader_flag`]).
    #[must_use]
    pub fn with_parking(ring: RingBuf<MapData>, parked_flag: Array<MapData, u32>) -> Self {
        Self {
            parked_flag: Some(parked_flag),
            ..Self::new(ring)
        }
    }

    /// Waits up to `timeout` for events, then hands every available one to `sink`.
    /// Returns how many were read.
    pub fn poll(&mut self, timeout: Duration, mut sink: impl FnMut(KernelEvent)) -> usize {
        let read = self.drain(&mut sink);
        if read > 0 {
            return read;
        }
        self.wait(timeout);
        self.drain(&mut sink)
    }

    /// Sleeps up to `timeout`, or until a quarter of the ring is waiting (the programs force a
    /// wake-up then). Events that arrive meanwhile do not end the sleep.
    pub fn wait(&self, timeout: Duration) {
        self.ppoll(Some(timeout));
    }

    /// Sleeps until the next event (or `timeout`, which bounds a wake-up lost to a race).
    /// Returns at once when events are already waiting. Call it only after a [`Self::drain`]
    /// that found nothing.
    pub fn park(&mut self, timeout: Duration) {
        if !self.set_parked(1) {
            self.wait(timeout);
            return;
        }
        // Raised before looking: an event reserved after this look sees the flag and wakes
        // us; one reserved before it (even if not committed yet) counts as data here.
        if !self.ppoll(Some(Duration::ZERO)) {
            self.ppoll(Some(timeout));
        }
        self.set_parked(0);
    }

    fn set_parked(&mut self, value: u32) -> bool {
        let Some(flag) = self.parked_flag.as_mut() else {
            return false;
        };
        match flag.set(0, value, 0) {
            Ok(()) => true,
            Err(e) => {
                self.parked_flag_errors += 1;
                if self.parked_flag_errors == 1 {
                    tracing::warn!(
                        "cannot park the event reader ({e}): polling on a timer instead"
                    );
                }
                false
            }
        }
    }

    /// `ppoll` on the ring's fd: whether it has data (reserved records included).
    fn ppoll(&self, timeout: Option<Duration>) -> bool {
        let mut fd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(t.subsec_nanos()),
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
        // SAFETY: one valid pollfd, a valid or null timespec, no signal mask change. An
        // interrupted or failed poll just means no events now.
        let ready = unsafe { libc::ppoll(&raw mut fd, 1, ts_ptr, std::ptr::null()) };
        ready > 0 && fd.revents & libc::POLLIN != 0
    }

    /// Hands every event in the ring to `sink`; returns how many records were read.
    pub fn drain(&mut self, sink: &mut impl FnMut(KernelEvent)) -> usize {
        let mut read = 0;
        while let Some(item) = self.ring.next() {
            read += 1;
            match KernelEvent::decode(&item) {
                Ok(event) => sink(event),
                Err(e) => {
                    self.undecodable += 1;
                    log_decode_error(e);
                }
            }
        }
        read
    }
}

fn log_decode_error(e: DecodeError) {
    // A mismatch between the object and this agent is a build bug; say it, but not per event.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::error!(
            ?e,
            "undecodable ring-buffer record (counted in stage `decode`)"
        );
    });
}

/// A one-line, human-readable rendering of a raw kernel event (for `--trace-events`).
#[must_use]
pub fn describe(event: &KernelEvent) -> String {
    use agent_ebpf::c_str_bytes;
    let comm = |c: &[u8]| String::from_utf8_lossy(c_str_bytes(c)).into_owned();
    match event {
        KernelEvent::Exit(e) => format!(
            "exit pid={} tgid={} comm={} code={} (status {} signal {}{}) memcg={} parent_memcg={} maxrss={}p{}",
            e.pid,
            e.tgid,
            comm(&e.comm),
            e.exit_code,
            (e.exit_code >> 8) & 0xff,
            e.exit_code & 0x7f,
            if e.exit_code & 0x80 != 0 { " core" } else { "" },
            e.memcg_id,
            e.parent_memcg_id,
            e.maxrss_pages,
            if e.flags & agent_ebpf::exit_flags::PARENT_OUTSIDE != 0 {
                " main"
            } else {
                ""
            }
        ),
        KernelEvent::Signal(s) => format!(
            "signal {} code={} result={} from pid={} ({}) memcg={} to pid={} tgid={} ({}) memcg={}",
            s.sig,
            s.code,
            s.result,
            s.sender_tgid,
            comm(&s.sender_comm),
            s.sender_memcg_id,
            s.target_pid,
            s.target_tgid,
            comm(&s.target_comm),
            s.target_memcg_id
        ),
        KernelEvent::Oom(o) => format!(
            "oom victim pid={} ({}) memcg={} anon={}p file={}p shmem={}p adj={} trigger pid={} ({}) chain={:?}",
            o.victim_tgid,
            comm(&o.victim_comm),
            o.victim_memcg_id,
            o.anon_rss_pages,
            o.file_rss_pages,
            o.shmem_rss_pages,
            o.oom_score_adj,
            o.trigger_tgid,
            comm(&o.trigger_comm),
            &o.memcg_chain[..(o.memcg_chain_len as usize).min(o.memcg_chain.len())]
        ),
        KernelEvent::CgroupMkdir(m) => format!(
            "memcg created id={} path={}",
            m.memcg_id,
            String::from_utf8_lossy(c_str_bytes(
                &m.path[..(m.path_len as usize).min(m.path.len())]
            ))
        ),
        KernelEvent::ExecFailure(x) => format!(
            "exec failed pid={} ({}) errno={} path={} memcg={}",
            x.tgid,
            comm(&x.comm),
            x.errno,
            String::from_utf8_lossy(&x.path[..(x.path_len as usize).min(x.path.len())]),
            x.memcg_id
        ),
    }
}

#[cfg(test)]
mod proptests;
