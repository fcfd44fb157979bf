//! promtool's linter on the real exposition: names, help and units as Prometheus wants them.

use super::Metrics;
use super::tests::oom_killed;

#[test]
fn promtool_finds_nothing_to_lint() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let metrics = Metrics::default();
    let mut r = oom_killed("shop", "cart-1");
    r.grace_seconds = Some(31.0);
    metrics.observe(&r);
    metrics.set_probe_attached("process_exit", true);
    // What a client that does not ask for OpenMetrics gets (promtool 2.x reads only this).
    let text = metrics.encode_classic();

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
