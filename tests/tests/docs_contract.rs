//! docs/ is the user-facing contract; this holds it and the code together, both ways: every
//! record field, verdict, role, sender kind, metric family (with its type and labels) and
//! flag the code has is documented, and nothing is documented that the code does not have.
//! No root, no kernel: the names come from the agent's own types, registry and command line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::CommandFactory as _;
use coroner::export::metrics::{KernelStageStats, Metrics};
use coroner::kube::KubeStats;
use coroner::record::{FIELDS, OomScope, Reason, Role, SenderKind, TerminationRecord};

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The rows of the first table after `heading` (a line starting with it), as cells.
fn table(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(heading));
    assert!(lines.next().is_some(), "no heading {heading:?}");
    lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|row| {
            row.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `code` spans of a cell.
fn names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every name in the first column of the table under `heading`.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    table(doc, heading)
        .iter()
        .flat_map(|row| names(&row[0]))
        .collect()
}

fn same(what: &str, documented: &BTreeSet<String>, code: &BTreeSet<String>) {
    let missing: Vec<_> = code.difference(documented).collect();
    let extra: Vec<_> = documented.difference(code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: in the code but not documented: {missing:?}; documented but not in the code: {extra:?}"
    );
}

fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names.into_iter().map(str::to_owned).collect()
}

/// A record with every optional part present, as the agent writes it.
fn full_record() -> TerminationRecord {
    let mut r = coroner_tests::fixtures::oom_killed_init();
    // The sub-objects that a real OOM kill of an init leaves null, filled so their fields
    // are checked too.
    r.cause = Some(coroner::record::Cause {
        pid: 4243,
        comm: "worker".into(),
        reason: coroner::record::Reason::OomKilled,
        signal: Some(9),
        oom: r.oom.clone(),
        seconds_before: 0.2,
    });
    r.message = Some("the termination log".into());
    r
}

#[test]
fn record_fields_are_documented_and_exist() {
    let record_doc = doc("record.md");
    same(
        "record fields",
        &documented(&record_doc, "## Record"),
        &set(FIELDS),
    );
    let json = serde_json::to_value(full_record()).expect("serialises");
    let keys: BTreeSet<String> = json.as_object().expect("object").keys().cloned().collect();
    same("record fields vs a written record", &set(FIELDS), &keys);
    // The objects' own fields are named in their row.
    let rows = table(&record_doc, "## Record");
    for object in ["sender", "oom", "exec_failure", "cause"] {
        let row = rows
            .iter()
            .find(|r| names(&r[0]).contains(&object.to_owned()))
            .expect("documented above");
        let in_row: BTreeSet<String> = names(&row[2]).into_iter().collect();
        let fields: BTreeSet<String> = json[object]
            .as_object()
            .expect("present in the fixture")
            .keys()
            .cloned()
            .collect();
        let undocumented: Vec<_> = fields.difference(&in_row).collect();
        assert!(
            undocumented.is_empty(),
            "`{object}` has fields its row does not name: {undocumented:?}"
        );
    }
    let oom_row = rows.iter().find(|r| r[0] == "`oom`").expect("oom row");
    for scope in OomScope::ALL {
        assert!(
            names(&oom_row[2]).contains(&scope.as_str().to_owned()),
            "OOM scope {} not in the oom row",
            scope.as_str()
        );
    }
}

#[test]
fn verdicts_roles_and_sender_kinds_are_documented_and_exist() {
    let record_doc = doc("record.md");
    same(
        "verdicts",
        &documented(&record_doc, "### Verdicts"),
        &set(Reason::ALL.map(Reason::as_str)),
    );
    same(
        "roles",
        &documented(&record_doc, "## Roles"),
        &set(Role::ALL.map(Role::as_str)),
    );
    same(
        "sender kinds",
        &documented(&record_doc, "### Sender kinds"),
        &set(SenderKind::ALL.map(SenderKind::as_str)),
    );
}

/// A family as a scrape shows it: type, label names, help.
#[derive(Debug, Default)]
struct Exposed {
    kind: String,
    labels: BTreeSet<String>,
    help: String,
}

/// Every family as a scrape of an agent that has seen a death shows it.
fn exposed_families() -> BTreeMap<String, Exposed> {
    let metrics = Metrics::default();
    metrics.publish_kernel_stage(KernelStageStats::default());
    metrics.watch_kube(KubeStats::default);
    metrics.set_probe_attached("process_exit", true);
    metrics.observe(&full_record());
    let text = metrics.encode();
    let mut families: BTreeMap<String, Exposed> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            kind.clone_into(&mut families.entry(name.to_owned()).or_default().kind);
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            help.clone_into(&mut families.entry(name.to_owned()).or_default().help);
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.split(' ').next().unwrap_or_default();
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        // A sample belongs to the longest family name it starts with (`_total`, `_bucket`…).
        let Some(family) = families
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .cloned()
        else {
            panic!("sample {name} of no family");
        };
        let entry = families.get_mut(&family).expect("found above");
        for pair in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let label = pair.split('=').next().unwrap_or_default();
            // The histogram's and the summary's own labels are not the family's.
            if label != "le" && label != "quantile" {
                entry.labels.insert(label.to_owned());
            }
        }
    }
    families
}

#[test]
fn metric_families_are_documented_with_their_type_and_labels() {
    let metrics_doc = doc("metrics.md");
    let exposed = exposed_families();
    let rows = table(&metrics_doc, "## Metric families");
    let mut documented_families = BTreeSet::new();
    for row in &rows {
        assert_eq!(
            row.len(),
            4,
            "row {row:?}: family | type | labels | meaning"
        );
        let mut family = names(&row[0]);
        assert_eq!(family.len(), 1, "row {row:?} must name one family");
        // A counter is documented by the name its samples have and PromQL queries.
        let family = if row[1] == "counter" {
            family[0]
                .strip_suffix("_total")
                .unwrap_or_else(|| panic!("counter {} is documented without _total", family[0]))
                .to_owned()
        } else {
            family.remove(0)
        };
        documented_families.insert(family.clone());
        let Some(family_exposed) = exposed.get(&family) else {
            continue; // reported below
        };
        assert_eq!(row[1], family_exposed.kind, "type of {family}");
        let documented_labels: BTreeSet<String> = names(&row[2]).into_iter().collect();
        assert_eq!(
            documented_labels, family_exposed.labels,
            "labels of {family}: documented vs exposed"
        );
    }
    // What a row for each undocumented family would start from.
    let rows_wanted: Vec<String> = exposed
        .iter()
        .filter(|(name, _)| !documented_families.contains(*name))
        .map(|(name, e)| {
            let labels: Vec<String> = e.labels.iter().map(|l| format!("`{l}`")).collect();
            let name = if e.kind == "counter" {
                format!("{name}_total")
            } else {
                name.clone()
            };
            let labels = if labels.is_empty() {
                "—".to_owned()
            } else {
                labels.join(", ")
            };
            format!("| `{name}` | {} | {labels} | {} |", e.kind, e.help)
        })
        .collect();
    assert!(
        rows_wanted.is_empty(),
        "families without a row in docs/metrics.md:\n{}",
        rows_wanted.join("\n")
    );
    same(
        "metric families",
        &documented_families,
        &exposed.keys().cloned().collect(),
    );
}

#[test]
fn flags_are_documented_with_their_env_and_default() {
    let flags_doc = doc("flags.md");
    let rows = table(&flags_doc, "## Flags");
    let command = coroner::cli::Args::command();
    let mut code = BTreeSet::new();
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let flag = format!("--{long}");
        code.insert(flag.clone());
        let Some(row) = rows.iter().find(|r| names(&r[0]).contains(&flag)) else {
            continue; // reported by `same` below
        };
        assert_eq!(row.len(), 4, "row {row:?}: flag | env | default | meaning");
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(names(&row[1]).first().cloned(), env, "env of {flag}");
        let default = arg
            .get_default_values()
            .first()
            .map(|d| d.to_string_lossy().into_owned());
        assert_eq!(
            names(&row[2]).first().cloned(),
            default,
            "default of {flag}"
        );
    }
    same("flags", &documented(&flags_doc, "## Flags"), &code);
}

#[test]
fn plugin_flags_are_documented_with_their_default() {
    let plugin_doc = doc("plugin.md");
    let rows = table(&plugin_doc, "## Flags");
    let command = coroner::plugin::Args::command();
    let why = command
        .find_subcommand("why")
        .expect("the why subcommand")
        .clone();
    let mut code = BTreeSet::new();
    for arg in command.get_arguments().chain(why.get_arguments()) {
        if arg.is_hide_set() || arg.is_positional() {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let flag = format!("--{long}");
        code.insert(flag.clone());
        if let Some(short) = arg.get_short() {
            code.insert(format!("-{short}"));
        }
        let Some(row) = rows.iter().find(|r| names(&r[0]).contains(&flag)) else {
            continue; // reported by `same` below
        };
        assert_eq!(row.len(), 3, "row {row:?}: flag | default | meaning");
        // A switch defaults to off; a value's default is the first code span of its cell.
        if !matches!(arg.get_action(), clap::ArgAction::SetTrue)
            && let Some(default) = arg.get_default_values().first()
        {
            assert_eq!(
                names(&row[1]).first().map(String::as_str),
                Some(&*default.to_string_lossy()),
                "default of {flag}"
            );
        }
    }
    same("plugin flags", &documented(&plugin_doc, "## Flags"), &code);
}

/// The alerts deploy/ ships, each with the `runbook_url` its rule gives it.
fn shipped_alerts() -> Vec<(String, String)> {
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut alerts = Vec::new();
    for rule in [
        "components/prometheus-operator/prometheus-rule.yaml",
        "examples/crashloop-reason/prometheus-rule.yaml",
    ] {
        let path = deploy.join(rule);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut alert = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("- alert: ") {
                alert = Some(name.to_owned());
            } else if let Some(url) = line.strip_prefix("runbook_url: ") {
                let name = alert
                    .take()
                    .unwrap_or_else(|| panic!("{rule}: {url} of no alert"));
                alerts.push((name, url.to_owned()));
            }
        }
        assert!(alert.is_none(), "{rule}: {alert:?} has no runbook_url");
    }
    alerts
}

/// Every alert links its own section of docs/runbooks.md, and every section is an alert's.
#[test]
fn every_alert_has_its_runbook() {
    let runbooks = doc("runbooks.md");
    let sections = set(runbooks.lines().filter_map(|l| l.strip_prefix("## ")));
    let alerts = shipped_alerts();
    for (name, url) in &alerts {
        let anchor = format!("/docs/runbooks.md#{}", name.to_lowercase());
        assert!(
            url.ends_with(&anchor),
            "{name}: runbook_url {url}, not …{anchor}"
        );
    }
    same(
        "alerts and their runbooks",
        &sections,
        &alerts.iter().map(|(name, _)| name.clone()).collect(),
    );
}
