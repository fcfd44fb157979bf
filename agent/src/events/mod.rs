//! Ring buffer → typed kernel events. The reader waits on the ring buffer's fd with a short
//! timeout so that the stage after it gets a regular tick even when nothing dies.

use std::os::fd::AsRawFd;
use std::time::Duration;

use agent_ebpf::{DecodeError, KernelEvent};
use aya::maps::{MapData, RingBuf};

/// Reads one ring buffer; owned by the thread that consumes it.
pub struct EventReader {
    ring: RingBuf<MapData>,
    /// Records that could not be decoded (stage `decode`).
    pub undecodable: u64,
}

impl EventReader {
    #[must_use]
    pub fn new(ring: RingBuf<MapData>) -> Self {
        Self {
            ring,
            undecodable: 0,
        }
    }

    /// Waits up to `timeout` for events, then hands every available one to `sink`.
    /// Returns how many were read.
    pub fn poll(&mut self, timeout: Duration, mut sink: impl FnMut(KernelEvent)) -> usize {
        let mut read = self.drain(&mut sink);
        if read > 0 {
            return read;
        }
        let mut fd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd; an interrupted or failed poll just means no events now.
        unsafe { libc::poll(&raw mut fd, 1, millis) };
        read += self.drain(&mut sink);
        read
    }

    fn drain(&mut self, sink: &mut impl FnMut(KernelEvent)) -> usize {
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
