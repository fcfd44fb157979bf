//! The guest's records against `tests/vm/expected.json`:
//!
//! ```json
//! { "cases": { "exit0": { "pod_uid": "…", "container_id": "…",
//!                         "records": [ { "pid": "$pid:exit0", "reason": "Completed" } ] } } }
//! ```
//!
//! A record belongs to the case whose container cgroup it names. Each expected record must
//! match a distinct actual one; a case's fields besides `records` apply to all of its records.
//! An expected value matches when it is equal, or is one of the matchers: `"$pid:LABEL"` (the
//! pid `/init` reported under LABEL), `{"$not_null": true}`, `{"$between": [lo, hi]}`.
//! Objects match as subsets, so an expectation names only the fields it is about. Records in
//! no case's cgroup, and records left over in a case, are failures too; so are OOM kills the
//! kernel logged that the records tell differently (`oom.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value};

use super::serial::Report;

pub struct Expected {
    cases: BTreeMap<String, Vec<Map<String, Value>>>,
}

impl Expected {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn parse(text: &str) -> Result<Self> {
        let doc: Value = serde_json::from_str(text)?;
        let Some(cases) = doc.get("cases").and_then(Value::as_object) else {
            bail!("no \"cases\" object");
        };
        let mut out = BTreeMap::new();
        for (name, case) in cases {
            let Some(records) = case.get("records").and_then(Value::as_array) else {
                bail!("case {name} has no \"records\" array");
            };
            let common: Map<String, Value> = case
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "records" && !k.starts_with('#'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut wanted = Vec::new();
            for record in records {
                let Some(record) = record.as_object() else {
                    bail!("case {name}: an expected record is not an object");
                };
                let mut merged = common.clone();
                merged.extend(record.iter().map(|(k, v)| (k.clone(), v.clone())));
                wanted.push(merged);
            }
            out.insert(name.clone(), wanted);
        }
        Ok(Self { cases: out })
    }
}

struct Row {
    case: String,
    pid: String,
    want: String,
    got: String,
    detail: String,
    problems: Vec<String>,
}

pub struct Verdict {
    rows: Vec<Row>,
    problems: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.rows.iter().all(|r| r.problems.is_empty())
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:>5}  {:<19} {:<19} {:<44} result",
            "case", "pid", "expected", "recorded", "exit/signal, oom, sender"
        );
        for row in &self.rows {
            let result = if row.problems.is_empty() {
                "ok"
            } else {
                "FAIL"
            };
            let _ = writeln!(
                out,
                "{:<16} {:>5}  {:<19} {:<19} {:<44} {result}",
                row.case, row.pid, row.want, row.got, row.detail
            );
            for problem in &row.problems {
                let _ = writeln!(out, "    ✗ {problem}");
            }
        }
        for problem in &self.problems {
            let _ = writeln!(out, "✗ {problem}");
        }
        out
    }
}

pub fn check(expected: &Expected, report: &Report) -> Verdict {
    let mut problems: Vec<String> = report
        .errors
        .iter()
        .map(|e| format!("guest: {e}"))
        .collect();
    if !report.done {
        problems.push("/init did not finish (no @@done): see the console log".into());
    }
    problems.extend(
        report
            .malformed
            .iter()
            .map(|l| format!("not a JSON record: {l}")),
    );
    if report.lost_events != Some(0) {
        problems.push(format!(
            "coroner_events_lost_total: want 0, got {:?}",
            report.lost_events
        ));
    }
    if report.agent_exit != Some(0) {
        problems.push(format!(
            "coroner's exit status after SIGTERM: want 0, got {:?}",
            report.agent_exit
        ));
    }
    let mut rows = Vec::new();
    let mut claimed = vec![false; report.records.len()];
    for (name, wanted) in &expected.cases {
        let Some(cgroup) = report.cases.get(name) else {
            problems.push(format!("case {name} was not staged by /init"));
            continue;
        };
        let in_case: Vec<usize> = (0..report.records.len())
            .filter(|&i| report.records[i].get("cgroup").and_then(Value::as_str) == Some(cgroup))
            .collect();
        for want in wanted {
            let unclaimed = || in_case.iter().copied().filter(|&i| !claimed[i]);
            // The first record that matches; failing that, the one most likely meant (same
            // pid, else the first left), to show the differences against.
            let pid = resolve(want.get("pid"), report);
            let pick = unclaimed()
                .find(|&i| mismatches(want, &report.records[i], report).is_empty())
                .or_else(|| {
                    unclaimed().min_by_key(|&i| report.records[i].get("pid") != pid.as_ref())
                });
            let row = match pick {
                Some(i) => {
                    // Claimed even when it differs, so it is not listed again as unexpected.
                    claimed[i] = true;
                    let record = &report.records[i];
                    row(name, want, Some(record), mismatches(want, record, report))
                }
                None => row(name, want, None, vec!["no record for this death".into()]),
            };
            rows.push(row);
        }
    }
    for (i, record) in report.records.iter().enumerate() {
        if !claimed[i] {
            problems.push(format!("unexpected record: {}", compact(record)));
        }
    }
    problems.extend(oom::problems(report));
    Verdict { rows, problems }
}

fn row(case: &str, want: &Map<String, Value>, got: Option<&Value>, problems: Vec<String>) -> Row {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    let field = |path: &[&str]| got.and_then(|g| path.iter().try_fold(g, |v, k| v.get(k)));
    let detail = format!(
        "{}/{}, {}, {}",
        text(field(&["exit_code"])),
        text(field(&["signal"])),
        text(field(&["oom", "scope"])),
        text(field(&["sender", "kind"])),
    );
    Row {
        case: case.to_owned(),
        pid: text(field(&["pid"])),
        want: text(want.get("reason")),
        got: got.map_or_else(|| "(none)".into(), |_| text(field(&["reason"]))),
        detail,
        problems,
    }
}

/// What differs between an expected record and an actual one, one line per field.
fn mismatches(want: &Map<String, Value>, got: &Value, report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for (key, expected) in want {
        compare(key, expected, got.get(key), report, &mut out);
    }
    out
}

fn compare(path: &str, want: &Value, got: Option<&Value>, report: &Report, out: &mut Vec<String>) {
    let got_text = got.map_or_else(|| "missing".into(), compact);
    match want {
        Value::String(s) if s.starts_with("$pid:") => {
            let pid = resolve(Some(want), report);
            if pid.is_none() {
                out.push(format!("{path}: /init reported no pid {s}"));
            } else if got != pid.as_ref() {
                out.push(format!(
                    "{path}: want {s} = {}, got {got_text}",
                    compact(pid.as_ref().unwrap_or(&Value::Null))
                ));
            }
        }
        Value::Object(m) if m.contains_key("$not_null") => {
            if got.is_none_or(Value::is_null) {
                out.push(format!("{path}: want a value, got {got_text}"));
            }
        }
        Value::Object(m) if m.contains_key("$between") => {
            let bounds = m["$between"].as_array().map(|b| {
                (
                    b.first().and_then(Value::as_f64),
                    b.get(1).and_then(Value::as_f64),
                )
            });
            let inside = match (bounds, got.and_then(Value::as_f64)) {
                (Some((Some(lo), Some(hi))), Some(v)) => (lo..=hi).contains(&v),
                _ => false,
            };
            if !inside {
                out.push(format!(
                    "{path}: want within {}, got {got_text}",
                    compact(&m["$between"])
                ));
            }
        }
        Value::Object(m) => match got {
            Some(Value::Object(_)) => {
                for (key, value) in m {
                    compare(
                        &format!("{path}.{key}"),
                        value,
                        got.and_then(|g| g.get(key)),
                        report,
                        out,
                    );
                }
            }
            _ => out.push(format!("{path}: want an object, got {got_text}")),
        },
        _ => {
            if got != Some(want) {
                out.push(format!("{path}: want {}, got {got_text}", compact(want)));
            }
        }
    }
}

/// The value a `"$pid:LABEL"` stands for; other values as they are.
fn resolve(want: Option<&Value>, report: &Report) -> Option<Value> {
    match want? {
        Value::String(s) if s.starts_with("$pid:") => report
            .pids
            .get(&s["$pid:".len()..])
            .map(|&p| Value::from(p)),
        other => Some(other.clone()),
    }
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 400 {
        format!("{}…", &text[..text.floor_char_boundary(400)])
    } else {
        text
    }
}

mod oom;
#[cfg(test)]
mod tests;
