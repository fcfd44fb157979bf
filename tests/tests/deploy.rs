//! deploy/ as it ships: the alert rules and the dashboard's death counts checked and
//! unit-tested by the real promtool, the manifests (built by kustomize, as `kubectl apply -k`
//! would: the base, the overlays with the Prometheus Operator's components, a user's overlay
//! elsewhere) checked for what they promise, and the Grafana dashboard's queries. The checks live
//! in deploy/test/ so they can run without cargo too.

use std::path::PathBuf;
use std::process::Command;

fn deploy_test(script: &str) -> (bool, String) {
    deploy_test_with(script, &[])
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `script` with arguments, paths relative to deploy/ (an absolute path stays as it is).
fn deploy_test_with(script: &str, args: &[&str]) -> (bool, String) {
    let deploy = deploy_dir();
    let dir = deploy.join("test");
    let out = Command::new("sh")
        .arg(dir.join(script))
        .args(args.iter().map(|a| deploy.join(a)))
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let (ok, out) = deploy_test("rules.sh");
    assert!(ok, "deploy/test/rules.sh failed:\n{out}");
    assert!(
        out.contains("SUCCESS"),
        "promtool reported no success:\n{out}"
    );
}

/// The dashboard's death counts (first deaths, series retired and born again, a scrape gap, a
/// range longer than a series' life), with the real promtool.
#[test]
fn dashboard_queries_count_deaths_right() {
    let (ok, out) = deploy_test("dashboard-counts.sh");
    assert!(ok, "deploy/test/dashboard-counts.sh failed:\n{out}");
    assert!(
        out.contains("SUCCESS"),
        "promtool reported no success:\n{out}"
    );
}

/// The example that enriches kubernetes-mixin's `KubePodCrashLooping` with coroner's reason:
/// the join on KSM's series, with the real promtool.
#[test]
fn the_crash_loop_reason_example_passes_promtool() {
    let example = "examples/crashloop-reason";
    let (ok, out) = deploy_test_with(
        "rules.sh",
        &[
            &format!("{example}/prometheus-rule.yaml"),
            &format!("{example}/rules-test.yaml"),
        ],
    );
    assert!(ok, "rules.sh on {example} failed:\n{out}");
    assert!(
        out.contains("SUCCESS"),
        "promtool reported no success:\n{out}"
    );
}

#[test]
fn manifests_hold_what_they_promise() {
    let (ok, out) = deploy_test("manifests.sh");
    assert!(ok, "deploy/test/manifests.sh failed:\n{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("ok")).count() >= 40,
        "too few checks ran:\n{out}"
    );
}

#[test]
fn dashboard_queries_parse_and_filter_by_cluster_namespace_pod_node() {
    let (ok, out) = deploy_test("dashboard.sh");
    assert!(ok, "deploy/test/dashboard.sh failed:\n{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.contains("ok   every query filters by $cluster and $node"),
        "the variable check did not run:\n{out}"
    );
}

/// The variable check fails, naming the panel, on a dashboard whose first per-pod query lost
/// its `$pod` matcher.
#[test]
fn a_dashboard_query_without_the_pod_variable_fails_the_check() {
    let dashboard = deploy_dir().join("base/grafana-dashboard.json");
    let text = std::fs::read_to_string(&dashboard).expect("reading the dashboard");
    let matcher = r#", pod=~\"$pod\""#;
    assert!(
        text.contains(matcher),
        "no $pod matcher in {}",
        dashboard.display()
    );
    let broken =
        std::env::temp_dir().join(format!("coroner-dashboard-{}.json", std::process::id()));
    std::fs::write(&broken, text.replacen(matcher, "", 1)).expect("writing the copy");
    let (ok, out) = deploy_test_with("dashboard.sh", &[broken.to_str().expect("UTF-8 path")]);
    let _ = std::fs::remove_file(&broken);
    assert!(!ok, "the check passed a query without $pod:\n{out}");
    assert!(
        out.contains("FAIL every query filters by")
            && out.contains("Deaths by verdict: coroner_terminations_total")
            && out.contains("lacks pod=~\"$pod\""),
        "{out}"
    );
}

/// The `PromQL` the README and docs/ show a reader parses, with the real promtool.
#[test]
fn promql_examples_in_the_docs_parse() {
    let (ok, out) = deploy_test("docs-promql.sh");
    assert!(ok, "deploy/test/docs-promql.sh failed:\n{out}");
    assert!(out.starts_with("ok   every PromQL example"), "{out}");
}
