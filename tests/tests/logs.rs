//! What the agent writes to stderr: `--log-format json` gives one JSON object per line (what
//! the `DaemonSet` asks for), text never carries colour codes when stderr is not a terminal.

use coroner_tests::agent::bare::Bare;

#[test]
fn json_logs_are_one_object_per_line() {
    let agent = Bare::start_ready(&["--log-format", "json"]).unwrap();
    let log = agent.log();
    agent.stop().unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "the start-up is logged:\n{log}");
    for line in lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for key in ["timestamp", "level", "fields", "target"] {
            assert!(object.get(key).is_some(), "no {key} in {line}");
        }
    }
}

#[test]
fn text_logs_to_a_file_have_no_colour_codes() {
    let agent = Bare::start_ready(&[]).unwrap();
    let log = agent.log();
    agent.stop().unwrap();
    assert!(
        log.contains("coroner running"),
        "the start-up is logged:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
}
