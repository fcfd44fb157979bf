//! The answer as a person reads it (one block per death, newest first) and as a program reads it
//! (`-o json`: the records as the agent wrote them). Pure: every line is tested.

use std::fmt::Write as _;

use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset, macros::format_description};

use super::Report;
use super::events::DeathEvent;
use crate::kube::message::{bytes, event_note};
use crate::record::{Cause, OomKill, SenderKind, TerminationRecord, signal_name};

/// The width of the field names in a death's block.
const LABEL: usize = 10;

/// The table: the target and where its records came from, then each death.
#[must_use]
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", report.target);
    for source in &report.sources {
        let _ = writeln!(out, "  {source}");
    }
    for note in &report.notes {
        let _ = writeln!(out, "  {note}");
    }
    out.push('\n');
    let deaths = report.deaths.len();
    if deaths == 0 && report.events.is_empty() {
        let _ = writeln!(out, "no deaths recorded");
        return out;
    }
    if deaths > 0 {
        let _ = writeln!(out, "{}, newest first:", plural(deaths, "death"));
        for death in &report.deaths {
            out.push('\n');
            death_block(&mut out, &death.record, report.show_pod);
        }
    }
    if !report.events.is_empty() {
        if deaths > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} of coroner's (no agent had records of {}), newest first:",
            plural(report.events.len(), "Event"),
            if report.show_pod {
                "these pods"
            } else {
                "this pod"
            }
        );
        for event in &report.events {
            out.push('\n');
            event_block(&mut out, event, report.show_pod);
        }
    }
    out
}

/// `-o json`: the records as the agent wrote them, newest first, with coroner's Events where
/// the agents had none, and where each came from.
#[must_use]
pub fn json(report: &Report) -> Value {
    json!({
        "target": report.target,
        "namespace": report.namespace,
        "pods": report.pods.iter().map(|p| json!({
            "name": p.name, "uid": p.uid, "node": p.node,
        })).collect::<Vec<_>>(),
        "sources": report.sources.iter().map(|s| json!({
            "node": s.node, "agent": s.agent, "records": s.records, "problem": s.problem,
        })).collect::<Vec<_>>(),
        "notes": report.notes,
        "records": report.deaths.iter().map(|d| d.json.clone()).collect::<Vec<_>>(),
        "events": report.events,
    })
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn death_block(out: &mut String, r: &TerminationRecord, show_pod: bool) {
    let mut head = stamp(Some(r.time));
    if show_pod {
        let _ = write!(head, "  pod {}", r.pod.as_deref().unwrap_or("?"));
    }
    let container = r.container.as_deref().map_or_else(
        || match &r.container_id {
            Some(id) => id.chars().take(12).collect(),
            None => "?".to_owned(),
        },
        str::to_owned,
    );
    let _ = writeln!(out, "{head}  container {container}  {}", r.reason.as_str());
    let _ = writeln!(out, "    {}", event_note(r));
    line(out, "initiator", r.initiator.as_str());
    line(out, "cause", &r.cause.as_ref().map_or_else(dash, cause));
    line(out, "exit", &exit(r));
    line(out, "memory", &memory(r));
    line(out, "grace", &grace(r));
    line(
        out,
        "role",
        &format!("{}: {} (pid {})", r.role.as_str(), r.comm, r.pid),
    );
    line(out, "message", r.message.as_deref().unwrap_or("-"));
}

fn event_block(out: &mut String, e: &DeathEvent, show_pod: bool) {
    let mut head = stamp(e.time);
    if show_pod {
        let _ = write!(head, "  pod {}", e.pod);
    }
    if let Some(c) = &e.container {
        let _ = write!(head, "  container {c}");
    }
    let _ = write!(head, "  {} {}", e.type_, e.reason);
    if e.count > 1 {
        let _ = write!(head, " ×{}", e.count);
    }
    let _ = writeln!(out, "{head}");
    let _ = writeln!(out, "    {}", e.note);
}

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "    {label:<LABEL$} {value}");
}

fn dash() -> String {
    "-".to_owned()
}

/// `2026-12-03 14:02:11.123Z`
fn stamp(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.to_offset(UtcOffset::UTC)
            .format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
    })
    .unwrap_or_else(|| "(time unknown)".to_owned())
}

/// `status 137: SIGKILL from the kernel` or `status 3: exit code 3`
fn exit(r: &TerminationRecord) -> String {
    let mut s = format!("status {}", r.exit_status);
    match (r.exit_code, r.signal) {
        (Some(code), _) => {
            let _ = write!(s, ": exit code {code}");
        }
        (None, Some(sig)) => {
            let _ = write!(s, ": {}", signal_name(sig));
            if let Some(sender) = &r.sender {
                let from = match sender.kind {
                    SenderKind::Kernel => " from the kernel".to_owned(),
                    SenderKind::SelfSent => " sent by itself".to_owned(),
                    kind => format!(
                        " from {} (pid {}, {})",
                        sender.comm,
                        sender.pid,
                        kind.as_str()
                    ),
                };
                s.push_str(&from);
            }
            if r.core_dumped {
                s.push_str(", core dumped");
            }
        }
        (None, None) => {}
    }
    s
}

/// `peak RSS 63Mi, container peak 64Mi, limit 64Mi; OOM memcg, limit 64Mi of <cgroup>, victim
/// RSS 63Mi`
fn memory(r: &TerminationRecord) -> String {
    let mut parts = Vec::new();
    if r.peak_rss_bytes > 0 {
        parts.push(format!("peak RSS {}", bytes(r.peak_rss_bytes)));
    }
    if let Some(peak) = r.container_memory_peak_bytes {
        parts.push(format!("container peak {}", bytes(peak)));
    }
    parts.push(match r.container_memory_limit_bytes {
        Some(limit) => format!("limit {}", bytes(limit)),
        None => "no limit known".to_owned(),
    });
    let mut s = parts.join(", ");
    if let Some(oom) = &r.oom {
        let _ = write!(s, "; {}", oom_summary(oom));
    }
    s
}

fn oom_summary(oom: &OomKill) -> String {
    let mut s = format!("OOM {}", oom.scope.as_str());
    if let Some(limit) = oom.memory_limit_bytes {
        let _ = write!(s, ", limit {}", bytes(limit));
    }
    if let Some(cgroup) = &oom.limit_cgroup {
        let _ = write!(s, " of {cgroup}");
    }
    if let Some(rss) = oom.victim_rss_bytes {
        let _ = write!(s, ", victim RSS {}", bytes(rss));
    }
    s
}

/// `used 30.0s of 30s`, `30s allowed`, `-`; and why a stop took the whole grace.
fn grace(r: &TerminationRecord) -> String {
    let mut s = match (r.grace_seconds, r.grace_allowed_seconds) {
        (Some(used), Some(allowed)) => format!("used {used:.1}s of {allowed}s"),
        (Some(used), None) => format!("used {used:.1}s"),
        (None, Some(allowed)) => format!("{allowed}s allowed"),
        (None, None) => dash(),
    };
    if r.stop_signal_ignored {
        s.push_str("; the stop signal was ignored (a PID 1 without a handler drops it)");
    }
    s
}

/// `child python3 (pid 43) OOMKilled by SIGKILL 0.2s before; OOM memcg, limit 256Mi`
fn cause(c: &Cause) -> String {
    let mut s = format!("{} (pid {}) {}", c.comm, c.pid, c.reason.as_str());
    if let Some(sig) = c.signal {
        let _ = write!(s, " by {}", signal_name(sig));
    }
    let _ = write!(s, " {:.1}s before", c.seconds_before);
    if let Some(oom) = &c.oom {
        let _ = write!(s, "; {}", oom_summary(oom));
    }
    s
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
