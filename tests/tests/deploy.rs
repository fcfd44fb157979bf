//! deploy/ as it ships: the alert rules and the dashboard's queries checked and unit-tested by
//! the real promtool, and the manifests (built by kustomize, as `kubectl apply -k deploy/`
//! would) checked for what they promise. The checks live in deploy/test/ so they can run
//! without cargo too.

use std::path::PathBuf;
use std::process::Command;

fn deploy_test(script: &str) -> (bool, String) {
    deploy_test_with(script, &[])
}

/// `script` with arguments, paths relative to deploy/.
fn deploy_test_with(script: &str, args: &[&str]) -> (bool, String) {
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy");
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
    let (ok, out) = deploy_test("dashboard.sh");
    assert!(ok, "deploy/test/dashboard.sh failed:\n{out}");
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
        out.lines().filter(|l| l.starts_with("ok")).count() >= 20,
        "too few checks ran:\n{out}"
    );
}
