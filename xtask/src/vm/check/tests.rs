use super::*;
use crate::vm::serial::KernelOomKill;

const EXPECTED: &str = r#"{ "cases": {
  "oom": { "pod_uid": "u1", "container_id": "c1",
           "records": [ { "pid": "$pid:oom", "reason": "OOMKilled",
                          "oom": { "scope": "global", "memory_limit_bytes": null },
                          "peak_rss_bytes": { "$between": [100, 200] } } ] },
  "term": { "records": [ { "pid": "$pid:term", "reason": "Terminated",
                           "sigterm_time": { "$not_null": true } } ] } } }"#;

fn report(records: &[&str]) -> Report {
    let mut text = String::from(
        "@@lost 0\n@@agent-exit 0\n@@case oom /kubepods/pod-u1/c1\n@@pid oom 10\n@@case term /kubepods/pod-u2/c2\n@@pid term 11\n@@begin records\n",
    );
    for r in records {
        text.push_str(r);
        text.push('\n');
    }
    text.push_str("@@end records\n@@begin kernel-oom\n");
    text.push_str(KERNEL_OOM);
    text.push_str("\n@@end kernel-oom\n@@done\n");
    Report::parse_text(&text)
}

const KERNEL_OOM: &str = "[ 9.1] Out of memory: Killed process 10 (v) total-vm:9kB, anon-rss:51200kB, file-rss:0kB, shmem-rss:1800kB, UID:0";

const OOM_OK: &str = r#"{"pid":10,"cgroup":"/kubepods/pod-u1/c1","pod_uid":"u1","container_id":"c1","reason":"OOMKilled","oom":{"scope":"global","memory_limit_bytes":null,"victim_rss_bytes":5,"anon_rss_bytes":52428800,"file_rss_bytes":0,"shmem_rss_bytes":1843200},"peak_rss_bytes":150}"#;
const TERM_OK: &str = r#"{"pid":11,"cgroup":"/kubepods/pod-u2/c2","reason":"Terminated","sigterm_time":"2026-11-22T00:00:00Z"}"#;

#[test]
fn records_matching_every_expectation_pass() {
    let expected = Expected::parse(EXPECTED).unwrap();
    let verdict = check(&expected, &report(&[TERM_OK, OOM_OK]));
    assert!(verdict.passed(), "{}", verdict.table());
}

#[test]
fn a_wrong_scope_a_missing_record_and_an_extra_one_all_fail() {
    let expected = Expected::parse(EXPECTED).unwrap();
    let memcg = OOM_OK.replace("\"global\"", "\"memcg\"");
    let verdict = check(&expected, &report(&[&memcg]));
    assert!(!verdict.passed());
    let table = verdict.table();
    assert!(
        table.contains("oom.scope: want \"global\", got \"memcg\""),
        "{table}"
    );
    assert!(table.contains("no record for this death"), "{table}");

    let stray = r#"{"pid":99,"cgroup":"/elsewhere","reason":"Error"}"#;
    let verdict = check(&expected, &report(&[OOM_OK, TERM_OK, stray]));
    assert!(
        verdict.table().contains("unexpected record"),
        "{}",
        verdict.table()
    );
    assert!(!verdict.passed());
}

#[test]
fn matchers_reject_what_they_should() {
    let expected = Expected::parse(EXPECTED).unwrap();
    let big = OOM_OK.replace("\"peak_rss_bytes\":150", "\"peak_rss_bytes\":500");
    let wrong_pid = TERM_OK.replace("\"pid\":11", "\"pid\":12");
    let no_term = TERM_OK.replace("\"2026-11-22T00:00:00Z\"", "null");
    for (records, why) in [
        (
            [big.as_str(), TERM_OK],
            "peak_rss_bytes: want within [100,200]",
        ),
        (
            [OOM_OK, wrong_pid.as_str()],
            "pid: want $pid:term = 11, got 12",
        ),
        (
            [OOM_OK, no_term.as_str()],
            "sigterm_time: want a value, got null",
        ),
    ] {
        let table = check(&expected, &report(&records)).table();
        assert!(table.contains(why), "expected {why:?} in\n{table}");
    }
}

#[test]
fn an_unfinished_guest_lost_events_or_a_bad_exit_fail_even_with_good_records() {
    let expected = Expected::parse(EXPECTED).unwrap();
    let mut unfinished = report(&[OOM_OK, TERM_OK]);
    unfinished.done = false;
    assert!(!check(&expected, &unfinished).passed());
    let mut lossy = report(&[OOM_OK, TERM_OK]);
    lossy.lost_events = Some(3);
    assert!(!check(&expected, &lossy).passed());
    let mut crashed = report(&[OOM_OK, TERM_OK]);
    crashed.agent_exit = Some(137);
    assert!(!check(&expected, &crashed).passed());
}

#[test]
fn malformed_expectations_are_errors() {
    assert!(Expected::parse("{}").is_err());
    assert!(Expected::parse(r#"{"cases":{"a":{}}}"#).is_err());
    assert!(Expected::parse(r#"{"cases":{"a":{"records":[1]}}}"#).is_err());
}

#[test]
fn oom_kills_are_checked_against_the_kernels_log() {
    let expected = Expected::parse(EXPECTED).unwrap();
    let mut report = report(&[OOM_OK, TERM_OK]);
    let kernel = report.kernel_oom_kills[0].clone();

    report.kernel_oom_kills[0].anon_kib = 80_000;
    let table = check(&expected, &report).table();
    assert!(
        table.contains("oom.anon_rss_bytes Some(52428800), the kernel logged 80000 kB"),
        "{table}"
    );

    report.kernel_oom_kills[0] = kernel.clone();
    report.kernel_oom_kills[0].scope = "memcg";
    let table = check(&expected, &report).table();
    assert!(
        table
            .contains("the kernel logged a memcg OOM kill, the record says scope Some(\"global\")"),
        "{table}"
    );

    report.kernel_oom_kills[0] = kernel.clone();
    report
        .kernel_oom_kills
        .push(KernelOomKill { pid: 77, ..kernel });
    let table = check(&expected, &report).table();
    assert!(
        table.contains("OOM-killed pid 77 (global), but no OOMKilled record"),
        "{table}"
    );

    report.kernel_oom_kills.clear();
    let table = check(&expected, &report).table();
    assert!(
        table.contains("the kernel logged no OOM kill of it"),
        "{table}"
    );
}
