//! deploy/ as it ships: the alert rules checked and unit-tested by the real promtool, and the
//! manifests (built by kustomize, as `kubectl apply -k deploy/` would) checked for what they
//! promise. The checks live in deploy/test/ so they can run without cargo too.

use std::path::PathBuf;
use std::process::Command;

fn deploy_test(script: &str) -> (bool, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/test");
    let out = Command::new("sh")
        .arg(dir.join(script))
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
