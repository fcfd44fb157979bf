//! promtool's linter on the real exposition: names, help and units as Prometheus wants them.

use super::Metrics;
use super::tests::oom_killed;

/// The text format promtool 2.x lints names a counter family by its `_total` sample and knows
/// no `# UNIT`/`# EOF`; everything else it checks (names, help, units in names) is ours.
fn as_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::new();
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

#[test]
fn promtool_finds_nothing_to_lint() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let metrics = Metrics::default();
    let mut r = oom_killed("shop", "cart-1");
    r.grace_seconds = Some(31.0);
    metrics.observe(&r);
    metrics.set_probe_attached("process_exit", true);
    let text = as_prometheus_text(&metrics.encode());

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("CORONER_SKIP_PROMTOOL").is_some() => {
            eprintln!("promtool not run ({e}); CORONER_SKIP_PROMTOOL is set");
            return;
        }
        Err(e) => panic!(
            "promtool is needed ({e}): apt-get install prometheus, or set CORONER_SKIP_PROMTOOL=1"
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}
