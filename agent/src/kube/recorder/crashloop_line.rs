//! The one line of a crash-loop Event, e.g. `OOMKilled 5× in 10m: container "api" hit its
//! 256Mi limit; python3 RSS 250Mi (98 % anon)`: what one death of the loop says
//! ([`LoopSample::of`], from the record alone), then the loop's count and span around it
//! ([`loop_line`]). Pure, so each wording is tested.

use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;

use super::message::{NOTE_MAX_BYTES, bytes};
use crate::record::{Initiator, OomKill, OomScope, Reason, Role, TerminationRecord, signal_name};

/// One death of a container's init, as the loop Event tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopSample {
    /// The verdict the loop names: the record's `cause` when the init relayed a
    /// descendant's death, else the record's own.
    pub verdict: Reason,
    /// What follows the count, e.g. `container "api" hit its 256Mi limit; …`.
    pub detail: String,
    /// When the init died (the Event's first and last timestamps).
    pub time: OffsetDateTime,
    /// How long the init ran (the record's `uptime_seconds`).
    pub uptime_seconds: Option<f64>,
}

impl LoopSample {
    /// The sample of a death that can be part of a loop: the death of a named container's
    /// init (role `init`: the process the kubelet restarts). `None` for any other death.
    #[must_use]
    pub fn of(r: &TerminationRecord) -> Option<Self> {
        if r.role != Role::Init {
            return None;
        }
        let name = r.container.as_deref()?;
        let verdict = r.cause.as_ref().map_or(r.reason, |c| c.reason);
        Some(Self {
            verdict,
            detail: detail(r, name, verdict),
            time: r.time,
            uptime_seconds: r.uptime_seconds,
        })
    }
}

fn detail(r: &TerminationRecord, name: &str, verdict: Reason) -> String {
    let container = format!("container \"{name}\"");
    let mut s = match (&r.cause, verdict) {
        (Some(cause), Reason::OomKilled) => {
            let mut s = oom_detail(&container, &cause.comm, cause.oom.as_ref(), r);
            let _ = write!(s, "; {} relayed it ({})", r.comm, ending(r));
            s
        }
        (Some(cause), _) => {
            let how = cause.signal.map_or_else(
                || "died".to_owned(),
                |sig| format!("died of {}", signal_name(sig)),
            );
            format!(
                "{container}: child {} (pid {}) {how}, {} relayed it ({})",
                cause.comm,
                cause.pid,
                r.comm,
                ending(r)
            )
        }
        (None, Reason::OomKilled) => oom_detail(&container, &r.comm, r.oom.as_ref(), r),
        (None, Reason::CommandNotFound | Reason::NotExecutable) => match &r.exec_failure {
            Some(f) => format!("{container}: {} ({})", shorten(&f.path), f.errno),
            None => format!("{container}: {} {}", r.comm, ending(r)),
        },
        (None, Reason::GracePeriodExpired) => {
            let stop = if r.stop_signal_ignored {
                "SIGTERM ignored by PID 1"
            } else {
                "SIGTERM not acted on"
            };
            let mut s = format!("{container}: {stop}, killed");
            if let Some(grace) = r.grace_seconds {
                let _ = write!(s, " after {grace:.0}s");
            }
            s
        }
        (None, Reason::Killed) => {
            format!("{container}: SIGKILL to {} with no SIGTERM before", r.comm)
        }
        (None, Reason::StartError) => match &r.message {
            Some(m) => format!(
                "{container}: the runtime could not start it: {}",
                shorten(m)
            ),
            None => format!("{container}: the runtime could not start it"),
        },
        (None, _) => format!("{container}: {} {}", r.comm, ending(r)),
    };
    if let Some(who) = decider(r.initiator) {
        let _ = write!(s, " ({who})");
    }
    s
}

/// The initiator in parentheses where the Kubernetes API told it: the kernel's own are in the
/// verdict already.
fn decider(initiator: Initiator) -> Option<&'static str> {
    match initiator {
        Initiator::OomKiller
        | Initiator::Kernel
        | Initiator::SelfInflicted
        | Initiator::Exited
        | Initiator::Unknown => None,
        other => Some(other.as_str()),
    }
}

fn oom_detail(
    container: &str,
    victim: &str,
    oom: Option<&OomKill>,
    r: &TerminationRecord,
) -> String {
    let Some(oom) = oom else {
        return format!("{container}: {victim} killed by the OOM killer");
    };
    let mut s = match oom.scope {
        OomScope::Memcg => match oom.memory_limit_bytes.or(r.container_memory_limit_bytes) {
            Some(limit) => format!("{container} hit its {} limit", bytes(limit)),
            None => format!("{container} hit its memory limit"),
        },
        OomScope::Global => format!("the node ran out of memory, {container}"),
    };
    let _ = write!(s, "; {victim}");
    if let Some(rss) = oom.victim_rss_bytes {
        let _ = write!(s, " RSS {}", bytes(rss));
        if let Some(anon) = oom.anon_rss_bytes.filter(|_| rss > 0) {
            #[expect(clippy::cast_precision_loss, reason = "a rounded percentage")]
            let percent = (anon as f64 * 100.0 / rss as f64).round();
            let _ = write!(s, " ({percent} % anon)");
        }
    }
    if let Some(peak) = r.container_memory_peak_bytes {
        let _ = write!(s, ", container peak {}", bytes(peak));
    }
    s
}

/// `exit code 1` or `SIGSEGV, core dumped`.
fn ending(r: &TerminationRecord) -> String {
    match (r.exit_code, r.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) if r.core_dumped => format!("died of {}, core dumped", signal_name(sig)),
        (None, Some(sig)) => format!("died of {}", signal_name(sig)),
        (None, None) => format!("ended with status {}", r.exit_status),
    }
}

fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 200;
    match s.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// The numbers of a loop around one death's detail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoopCounts {
    /// Deaths of the loop with the verdict named.
    pub of_verdict: u32,
    pub total: u32,
    /// From the loop's first death to its latest.
    pub span: Duration,
    /// The median of the deaths' uptimes, when every death's is known.
    pub median_uptime: Option<Duration>,
}

/// `OOMKilled 5× in 10m: <detail>, median uptime 41s`; `OOMKilled 4× of 5 deaths in 10m: …`
/// when other verdicts are part of the loop. Fits a note.
#[must_use]
pub fn loop_line(verdict: Reason, counts: LoopCounts, detail: &str) -> String {
    let LoopCounts {
        of_verdict, total, ..
    } = counts;
    let mut line = format!("{} {of_verdict}×", verdict.as_str());
    if total > of_verdict {
        let _ = write!(line, " of {total} deaths");
    }
    let _ = write!(line, " in {}: {detail}", short_duration(counts.span));
    if let Some(uptime) = counts.median_uptime {
        let _ = write!(line, ", median uptime {}", short_duration(uptime));
    }
    if line.len() > NOTE_MAX_BYTES {
        let mut end = NOTE_MAX_BYTES - '…'.len_utf8();
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// `41s`, `10m`, `2h5m`: seconds up to 2 minutes, minutes up to 2 hours.
#[must_use]
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        _ => match (secs / 3600, secs % 3600 / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h{m}m"),
        },
    }
}

#[cfg(test)]
#[path = "crashloop_line_tests.rs"]
mod tests;
