//! A record as JSON has exactly the field names of `docs/record.md`.

use agent_ebpf::KernelEvent;

use super::fixtures::*;
use crate::correlate::verdict::sig::SIGKILL;

use crate::record::FIELDS as RECORD_FIELDS;
const SENDER_FIELDS: [&str; 4] = ["pid", "comm", "cgroup", "kind"];
const OOM_FIELDS: [&str; 6] = [
    "scope",
    "victim_rss_bytes",
    "anon_rss_bytes",
    "file_rss_bytes",
    "shmem_rss_bytes",
    "memory_limit_bytes",
];
const EXEC_FIELDS: [&str; 2] = ["path", "errno"];

fn keys(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn json_of_an_oom_record_has_the_contract_field_names_and_values() {
    let main = proc(4242, 7 * SEC, CTR_A);
    let at = 100 * SEC + 123_456_789;
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let record = only(run(
        &mut c,
        &mut cg,
        &[
            exec_failure(at - SEC, 4300, CTR_A, libc::ENOENT, "/bin/x"),
            sent(at - 2 * SEC, 15, 0, (900, HOST), main),
            KernelEvent::Oom(oom(at - 10, main, 4310, &[(CTR_A, LIMIT_64M, LIMIT_64M)])),
            killed(main, at, SIGKILL, true),
        ],
    ));
    let json = serde_json::to_value(&record).expect("serialises");
    let top = keys(&json);
    for field in RECORD_FIELDS {
        assert!(top.contains(&field), "missing `{field}` in {top:?}");
    }
    for (object, fields) in [
        ("sender", &SENDER_FIELDS[..]),
        ("oom", &OOM_FIELDS[..]),
        ("exec_failure", &EXEC_FIELDS[..]),
    ] {
        let inner = keys(&json[object]);
        for field in fields {
            assert!(
                inner.contains(field),
                "missing `{object}.{field}` in {inner:?}"
            );
        }
    }
    assert_eq!(json["reason"], "OOMKilled");
    assert_eq!(json["sender"]["kind"], "kernel");
    assert_eq!(json["oom"]["scope"], "memcg");
    assert_eq!(json["exec_failure"]["errno"], "ENOENT");
    assert_eq!(json["exit_code"], serde_json::Value::Null);
    assert_eq!(json["signal"], 9);
    assert_eq!(json["exit_status"], 137);
    // RFC 3339 with nanoseconds, in UTC.
    assert_eq!(json["time"], "2025-06-15T15:08:20.123456789Z");
    assert_eq!(json["sigterm_time"], "2025-06-15T15:08:18.123456789Z");
    let back: crate::record::TerminationRecord = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, record);
}

#[test]
fn sender_kinds_serialise_as_in_the_contract() {
    use crate::record::SenderKind;
    let names: Vec<String> = [
        SenderKind::Kernel,
        SenderKind::SelfSent,
        SenderKind::SameContainer,
        SenderKind::OtherContainer,
        SenderKind::Host,
    ]
    .iter()
    .map(|k| {
        serde_json::to_value(k)
            .expect("serialises")
            .as_str()
            .expect("a string")
            .to_owned()
    })
    .collect();
    assert_eq!(
        names,
        [
            "kernel",
            "self",
            "same_container",
            "other_container",
            "host"
        ]
    );
}
