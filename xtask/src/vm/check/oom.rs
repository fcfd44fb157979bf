//! Every OOM kill the kernel logged against the records: one `OOMKilled` record per victim,
//! with the kernel's scope and RSS; and no `OOMKilled` record the kernel does not back.

use serde_json::Value;

use crate::vm::serial::Report;

/// RSS the agent reads at `mark_victim` and what the kernel prints a moment later may differ
/// by the pages a still-running victim touched in between.
fn close(recorded_bytes: u64, kernel_kib: u64) -> bool {
    let kernel = kernel_kib * 1024;
    recorded_bytes.abs_diff(kernel) <= (kernel / 20).max(2 << 20)
}

pub fn problems(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let oom_killed = |r: &&Value| r.get("reason").and_then(Value::as_str) == Some("OOMKilled");
    for kill in &report.kernel_oom_kills {
        let Some(record) = report
            .records
            .iter()
            .filter(oom_killed)
            .find(|r| r.get("pid").and_then(Value::as_u64) == Some(kill.pid))
        else {
            out.push(format!(
                "the kernel OOM-killed pid {} ({}), but no OOMKilled record names it",
                kill.pid, kill.scope
            ));
            continue;
        };
        let oom = record.get("oom").unwrap_or(&Value::Null);
        let scope = oom.get("scope").and_then(Value::as_str);
        if scope != Some(kill.scope) {
            out.push(format!(
                "pid {}: the kernel logged a {} OOM kill, the record says scope {scope:?}",
                kill.pid, kill.scope
            ));
        }
        for (field, kib) in [
            ("anon_rss_bytes", kill.anon_kib),
            ("file_rss_bytes", kill.file_kib),
            ("shmem_rss_bytes", kill.shmem_kib),
        ] {
            let recorded = oom.get(field).and_then(Value::as_u64);
            if !recorded.is_some_and(|bytes| close(bytes, kib)) {
                out.push(format!(
                    "pid {}: oom.{field} {recorded:?}, the kernel logged {kib} kB",
                    kill.pid
                ));
            }
        }
    }
    for record in report.records.iter().filter(oom_killed) {
        let pid = record.get("pid").and_then(Value::as_u64);
        if !report.kernel_oom_kills.iter().any(|k| Some(k.pid) == pid) {
            out.push(format!(
                "pid {pid:?} is OOMKilled in its record, but the kernel logged no OOM kill of it"
            ));
        }
    }
    out
}
