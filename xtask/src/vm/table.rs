//! `docs/kernels.md`: what each guest's kernel gave the agent — the probes it attached, the
//! layout it chose from BTF, and the record fields it left null where another kernel filled
//! them — written from a full, passing `vm-test` run, never by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::serial::Report;

/// One guest's run, as the table needs it.
pub struct Row<'a> {
    pub kernel: &'a str,
    pub cgroup: &'a str,
    pub report: &'a Report,
}

/// The case each record belongs to, by its cgroup.
fn case_of<'a>(report: &'a Report, record: &Value) -> Option<&'a str> {
    let cgroup = record.get("cgroup").and_then(Value::as_str)?;
    report
        .cases
        .iter()
        .find(|(_, path)| path.as_str() == cgroup)
        .map(|(name, _)| name.as_str())
}

/// `(case, reason)` → the record's fields (top level, and one level into objects) that are
/// null.
fn null_fields(report: &Report) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for record in &report.records {
        let Some(case) = case_of(report, record) else {
            continue;
        };
        let reason = record.get("reason").and_then(Value::as_str).unwrap_or("?");
        let nulls = out.entry((case.to_owned(), reason.to_owned())).or_default();
        let Some(fields) = record.as_object() else {
            continue;
        };
        for (key, value) in fields {
            match value {
                Value::Null => {
                    nulls.insert(key.clone());
                }
                Value::Object(inner) => {
                    for (sub, v) in inner {
                        if v.is_null() {
                            nulls.insert(format!("{key}.{sub}"));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn probes(report: &Report) -> Vec<&str> {
    report
        .agent_log
        .iter()
        .filter_map(|l| l.split("attached probe=\"").nth(1)?.split('"').next())
        .collect()
}

fn layout(report: &Report) -> &str {
    report
        .agent_log
        .iter()
        .find_map(|l| l.split("layout choices=").nth(1))
        .unwrap_or("?")
}

pub fn markdown(rows: &[Row<'_>]) -> String {
    let nulls: Vec<_> = rows.iter().map(|r| null_fields(r.report)).collect();
    let mut out = String::from(
        "# Kernels and cgroup versions, as tested\n\n\
         Written by `cargo xtask vm-test` from its last full run (every guest passed): each \
         guest boots Debian's kernel in QEMU, runs the agent as the DaemonSet does and stages \
         the deaths of `tests/vm/expected.json`. \"Null here\" lists the record fields this \
         guest left null where another guest filled them for the same death: what the kernel \
         does not tell.\n\n\
         | kernel | cgroup | probes attached | layout from BTF | null here |\n\
         |---|---|---|---|---|\n",
    );
    for (i, row) in rows.iter().enumerate() {
        // field → the deaths it is null in here and filled in elsewhere.
        let mut missing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (death, fields) in &nulls[i] {
            for field in fields {
                let filled_elsewhere = nulls.iter().enumerate().any(|(j, other)| {
                    j != i && other.get(death).is_some_and(|f| !f.contains(field))
                });
                if filled_elsewhere {
                    missing.entry(field).or_default().insert(&death.0);
                }
            }
        }
        let cases: BTreeSet<&str> = nulls[i].keys().map(|d| d.0.as_str()).collect();
        let missing = if missing.is_empty() {
            "—".to_owned()
        } else {
            missing
                .iter()
                .map(|(field, deaths)| {
                    if *deaths == cases {
                        format!("`{field}` (every death)")
                    } else {
                        let deaths: Vec<&str> = deaths.iter().copied().collect();
                        format!("`{field}` ({})", deaths.join(", "))
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {missing} |",
            row.kernel,
            row.cgroup,
            probes(row.report).join(", "),
            layout(row.report),
        );
    }
    out
}
