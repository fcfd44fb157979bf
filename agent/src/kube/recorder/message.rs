//! The one line of an Event's note: the cause of death as a person would say it, from the record
//! alone (pure, so each verdict's wording is tested).

use std::fmt::Write as _;

use time::{OffsetDateTime, UtcOffset, macros::format_description};

use crate::record::{
    Cause, Initiator, OomScope, Reason, Sender, SenderKind, TerminationRecord, signal_name,
};

/// events.k8s.io/v1 refuses a note longer than this (bytes).
pub const NOTE_MAX_BYTES: usize = 1024;
/// An execve path is user input of up to 4 KiB; the note shows its start.
const PATH_MAX_CHARS: usize = 200;

/// The note of the Event for this death, e.g. `OOMKilled by the kernel: memcg limit 256Mi hit
/// by container "api"; python3 (pid 4242) RSS 312Mi; container peak 318Mi`.
#[must_use]
pub fn event_note(r: &TerminationRecord) -> String {
    let victim = victim(r);
    let mut note = if let Some(cause) = &r.cause {
        cause_note(r, cause, &victim)
    } else {
        verdict_note(r, &victim)
    };
    if r.stop_signal_ignored && r.reason != Reason::GracePeriodExpired {
        let _ = write!(note, "; a stop signal {}", ignored_clause(r));
    }
    if let Some(why) = decided_by(r.initiator) {
        let _ = write!(note, "; {why}");
    }
    truncate_bytes(&mut note, NOTE_MAX_BYTES);
    note
}

/// Why the kernel dropped a stop signal, as far as the record tells: PID 1 of a PID namespace
/// without a handler for it, or a process that ignores it.
fn ignored_clause(r: &TerminationRecord) -> &'static str {
    if r.main_process {
        "was ignored: PID 1 has no handler for it, or ignores it (a shell that does not forward it?)"
    } else {
        "was ignored: the process ignores it (SIG_IGN)"
    }
}

/// The cause first: `Error (exit 137): child python3 (pid 4242) was OOM-killed 0.2s earlier:
/// memcg limit 256Mi hit by container "api", RSS 312Mi; sh (pid 4200) in container "api"
/// exited with code 137`.
fn cause_note(r: &TerminationRecord, cause: &Cause, victim: &str) -> String {
    let status = match (r.exit_code, r.signal) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => signal_name(sig).into_owned(),
        (None, None) => format!("status {}", r.exit_status),
    };
    let signal = cause.signal.map_or_else(|| "a signal".into(), signal_name);
    let what = match cause.reason {
        Reason::OomKilled => "was OOM-killed".to_owned(),
        Reason::Crashed => format!("crashed ({signal})"),
        Reason::Killed | Reason::GracePeriodExpired => format!("was killed by {signal}"),
        Reason::Terminated => format!("was terminated by {signal}"),
        _ => format!("died of {signal}"),
    };
    // A relay is immediate: milliseconds, which one decimal would show as 0.0s.
    let before = if cause.seconds_before < 0.1 {
        format!("{:.3}s", cause.seconds_before)
    } else {
        format!("{:.1}s", cause.seconds_before)
    };
    let mut s = format!(
        "{} ({status}): child {} (pid {}) {what} {before} earlier",
        r.reason.as_str(),
        cause.comm,
        cause.pid,
    );
    if let Some(oom) = &cause.oom {
        match oom.scope {
            OomScope::Memcg => {
                s.push_str(": memcg limit");
                if let Some(limit) = oom.memory_limit_bytes.or(r.container_memory_limit_bytes) {
                    let _ = write!(s, " {}", bytes(limit));
                }
                let _ = write!(
                    s,
                    " hit by {}",
                    limit_holder(r, oom.limit_cgroup.as_deref())
                );
            }
            OomScope::Global => s.push_str(": the node ran out of memory"),
        }
        let _ = write!(s, ", RSS {}", rss(oom.victim_rss_bytes));
    }
    let _ = write!(s, "; {victim} {}", ending(r));
    s
}

/// The note of a death told by its own verdict.
fn verdict_note(r: &TerminationRecord, victim: &str) -> String {
    match r.reason {
        Reason::OomKilled => oom_note(r, victim),
        Reason::GracePeriodExpired => {
            let mut s = String::from("GracePeriodExpired: SIGTERM");
            if let Some(sender) = &r.sender {
                let _ = write!(s, " from {}", sender_phrase(sender));
            }
            if let Some(t) = r.sigterm_time {
                let _ = write!(s, " at {}", clock(t));
            }
            if r.stop_signal_ignored {
                let _ = write!(s, " {}", ignored_clause(r));
            }
            s.push_str(", SIGKILL");
            if let Some(grace) = r.grace_seconds {
                let _ = write!(s, " {grace:.1}s later");
                if let Some(allowed) = r.grace_allowed_seconds {
                    let _ = write!(s, " (of {allowed}s allowed)");
                }
            }
            let _ = write!(s, "; {victim} had not exited");
            s
        }
        Reason::Killed => format!(
            "Killed: SIGKILL{} to {victim}, no SIGTERM before",
            from_clause(r.sender.as_ref())
        ),
        Reason::Terminated => format!(
            "Terminated: {}{} to {victim}",
            signal_name(r.signal.unwrap_or(15)),
            from_clause(r.sender.as_ref())
        ),
        Reason::CommandNotFound | Reason::NotExecutable => match &r.exec_failure {
            Some(f) => format!(
                "{}: execve(\"{}\") failed with {} (pid {}); {victim} {}",
                r.reason.as_str(),
                shorten(&f.path, PATH_MAX_CHARS),
                f.errno,
                f.pid,
                ending(r)
            ),
            None => format!("{}: {victim} {}", r.reason.as_str(), ending(r)),
        },
        Reason::StartError => {
            let mut s = format!(
                "StartError: the runtime could not start the container's command; {victim} {}",
                ending(r)
            );
            if let Some(m) = &r.message {
                let _ = write!(s, ": {}", shorten(m, PATH_MAX_CHARS));
            } else if let Some(f) = &r.exec_failure {
                let _ = write!(
                    s,
                    "; execve(\"{}\") failed with {}",
                    shorten(&f.path, PATH_MAX_CHARS),
                    f.errno
                );
            }
            s
        }
        Reason::Crashed | Reason::Signaled | Reason::Completed | Reason::Error => {
            format!("{}: {victim} {}", r.reason.as_str(), ending(r))
        }
    }
}

/// Who decided, in words, where the Kubernetes API told it: the kernel's own initiators are
/// in the note's verdict already.
fn decided_by(initiator: Initiator) -> Option<&'static str> {
    Some(match initiator {
        Initiator::LivenessProbe => "the kubelet restarted it: liveness probe failed",
        Initiator::StartupProbe => "the kubelet restarted it: startup probe failed",
        Initiator::SpecChange => "the kubelet restarted it: its definition changed",
        Initiator::PodDeletion => "the pod is being deleted",
        Initiator::Eviction => "the kubelet evicted the pod (node pressure)",
        Initiator::ApiEviction => "the pod was evicted through the Eviction API",
        Initiator::Preemption => "the pod was preempted",
        Initiator::TaintEviction => "the pod was evicted by a NoExecute taint",
        Initiator::NodeShutdown => "the node is shutting down",
        Initiator::RestartPolicy => "the pod's restart policy stopped it",
        Initiator::Host => "stopped by a host process; the kubelet published no reason",
        Initiator::OomKiller
        | Initiator::Kernel
        | Initiator::SelfInflicted
        | Initiator::AnotherContainer
        | Initiator::Exited
        | Initiator::Unknown => return None,
    })
}

fn oom_note(r: &TerminationRecord, victim: &str) -> String {
    let mut s = String::from("OOMKilled by the kernel: ");
    let Some(oom) = &r.oom else {
        let _ = write!(s, "{victim}");
        return s;
    };
    match oom.scope {
        OomScope::Memcg => {
            s.push_str("memcg limit");
            if let Some(limit) = oom.memory_limit_bytes.or(r.container_memory_limit_bytes) {
                let _ = write!(s, " {}", bytes(limit));
            }
            let _ = write!(
                s,
                " hit by {}; {} RSS {}",
                limit_holder(r, oom.limit_cgroup.as_deref()),
                process(r),
                rss(oom.victim_rss_bytes)
            );
        }
        OomScope::Global => {
            let _ = write!(
                s,
                "the node ran out of memory (no cgroup limit hit); {victim} RSS {}",
                rss(oom.victim_rss_bytes)
            );
        }
    }
    if let Some(peak) = r.container_memory_peak_bytes {
        let _ = write!(s, "; container peak {}", bytes(peak));
    }
    if oom.trigger_pid != 0 && oom.trigger_pid != r.pid {
        let _ = write!(
            s,
            "; the allocation of {} (pid {}) triggered it",
            oom.trigger_comm, oom.trigger_pid
        );
    }
    s
}

/// Which memory cgroup's limit was hit, from the container's point of view.
fn limit_holder(r: &TerminationRecord, limit_cgroup: Option<&str>) -> String {
    match limit_cgroup {
        None => container(r),
        Some(path) if path == r.cgroup => container(r),
        Some(path) => {
            let leaf = path.rsplit('/').next().unwrap_or(path);
            let is_ancestor = r
                .cgroup
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('/'));
            if is_ancestor && leaf.contains("pod") {
                match &r.pod {
                    Some(pod) => format!("pod \"{pod}\""),
                    None => "the pod".to_owned(),
                }
            } else {
                format!("cgroup {path}")
            }
        }
    }
}

/// `python3 (pid 4242) in container "api"`
fn victim(r: &TerminationRecord) -> String {
    format!("{} in {}", process(r), container(r))
}

fn process(r: &TerminationRecord) -> String {
    let child = if r.main_process {
        ""
    } else {
        ", not the main process"
    };
    format!("{} (pid {}{child})", r.comm, r.pid)
}

fn container(r: &TerminationRecord) -> String {
    match (&r.container, &r.container_id) {
        (Some(name), _) => format!("container \"{name}\""),
        // The short id, as `crictl ps` shows it.
        (None, Some(id)) => format!("container {}", id.chars().take(12).collect::<String>()),
        (None, None) => "an unknown container".to_owned(),
    }
}

/// `exited with code 3` or `died of SIGSEGV from the kernel (core dumped)`
fn ending(r: &TerminationRecord) -> String {
    match (r.exit_code, r.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => {
            let core = if r.core_dumped { " (core dumped)" } else { "" };
            format!(
                "died of {}{}{core}",
                signal_name(sig),
                from_clause(r.sender.as_ref())
            )
        }
        (None, None) => format!("ended with status {}", r.exit_status),
    }
}

fn from_clause(sender: Option<&Sender>) -> String {
    match sender {
        None => String::new(),
        Some(s) if s.kind == SenderKind::Kernel => " from the kernel".to_owned(),
        Some(s) if s.kind == SenderKind::SelfSent => " it sent itself".to_owned(),
        Some(s) => format!(" from {}", sender_phrase(s)),
    }
}

fn sender_phrase(s: &Sender) -> String {
    match s.kind {
        SenderKind::Kernel => "the kernel".to_owned(),
        SenderKind::SelfSent => "itself".to_owned(),
        SenderKind::Host => format!("{} (pid {})", s.comm, s.pid),
        SenderKind::SameContainer => format!("{} (pid {}) in the same container", s.comm, s.pid),
        SenderKind::OtherContainer => format!("{} (pid {}) in another container", s.comm, s.pid),
    }
}

/// `12:00:01Z`: the Event carries the date; the note needs the moment.
fn clock(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(format_description!("[hour]:[minute]:[second]Z"))
        .unwrap_or_default()
}

/// An RSS the kernel may not have given.
fn rss(bytes_at_kill: Option<u64>) -> String {
    bytes_at_kill.map_or_else(|| "unknown".to_owned(), bytes)
}

/// Binary units as Kubernetes quantities spell them: `256Mi`, `1.5Gi`.
#[must_use]
pub fn bytes(n: u64) -> String {
    const KI: u64 = 1 << 10;
    const MI: u64 = 1 << 20;
    const GI: u64 = 1 << 30;
    #[expect(clippy::cast_precision_loss, reason = "display rounding")]
    let ratio = |unit: u64| n as f64 / unit as f64;
    if n >= GI {
        let g = ratio(GI);
        if (g - g.round()).abs() < 0.05 {
            format!("{}Gi", g.round())
        } else {
            format!("{g:.1}Gi")
        }
    } else if n >= MI {
        format!("{}Mi", ratio(MI).round())
    } else if n >= KI {
        format!("{}Ki", ratio(KI).round())
    } else {
        format!("{n}B")
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
