use time::OffsetDateTime;

use super::*;
use crate::export::recent::tests::record;
use crate::plugin::target::PodInfo;
use crate::plugin::{Death, Source};
use crate::record::{Cause, Initiator, OomKill, OomScope, Reason, Role, Sender};

const MIB: u64 = 1 << 20;

fn oom_record() -> TerminationRecord {
    let mut r = record(Some("shop"), Some("api-0"), 4242);
    r.comm = "python3".into();
    r.container = Some("api".into());
    r.reason = Reason::OomKilled;
    r.initiator = Initiator::OomKiller;
    r.exit_code = None;
    r.signal = Some(9);
    r.exit_status = 137;
    r.sender = Some(Sender {
        pid: 0,
        comm: String::new(),
        cgroup: String::new(),
        kind: SenderKind::Kernel,
    });
    r.peak_rss_bytes = 250 * MIB;
    r.container_memory_peak_bytes = Some(256 * MIB);
    r.container_memory_limit_bytes = Some(256 * MIB);
    r.oom = Some(OomKill {
        scope: OomScope::Memcg,
        victim_rss_bytes: Some(250 * MIB),
        anon_rss_bytes: Some(245 * MIB),
        file_rss_bytes: Some(5 * MIB),
        shmem_rss_bytes: Some(0),
        memory_limit_bytes: Some(256 * MIB),
        limit_cgroup: Some("/kubepods/burstable/pod1/abc".into()),
        trigger_pid: 4242,
        trigger_comm: "python3".into(),
        oom_score_adj: 0,
    });
    r
}

fn report(deaths: Vec<TerminationRecord>, events: Vec<DeathEvent>) -> Report {
    Report {
        target: "pod shop/api-0 on node node-1".into(),
        namespace: "shop".into(),
        pods: vec![PodInfo {
            name: "api-0".into(),
            uid: "1".into(),
            node: Some("node-1".into()),
        }],
        sources: vec![Source {
            node: "node-1".into(),
            agent: Some("coroner/coroner-x".into()),
            records: deaths.len(),
            problem: None,
        }],
        notes: Vec::new(),
        deaths: deaths
            .into_iter()
            .map(|record| Death {
                json: serde_json::to_value(&record).unwrap(),
                record,
            })
            .collect(),
        events,
        show_pod: false,
    }
}

#[test]
fn an_oom_kill_reads_with_memory_against_the_limit() {
    let text = table(&report(vec![oom_record()], Vec::new()));
    assert_eq!(
        text,
        "pod shop/api-0 on node node-1
  node node-1: agent coroner/coroner-x, 1 record

1 death, newest first:

2023-11-14 22:13:20.123Z  container api  OOMKilled
    OOMKilled by the kernel: memcg limit 256Mi hit by container \"api\"; python3 (pid 4242) RSS 250Mi; container peak 256Mi
    initiator  oom_killer
    cause      -
    exit       status 137: SIGKILL from the kernel
    memory     peak RSS 250Mi, container peak 256Mi, limit 256Mi; OOM memcg, limit 256Mi of /kubepods/burstable/pod1/abc, victim RSS 250Mi
    grace      -
    role       init: python3 (pid 4242)
    message    -
"
    );
}

#[test]
fn a_relayed_death_shows_its_cause_and_a_stop_its_grace() {
    let mut shell = record(Some("shop"), Some("api-0"), 10);
    shell.comm = "sh".into();
    shell.reason = Reason::Error;
    shell.exit_code = Some(137);
    shell.exit_status = 137;
    shell.initiator = Initiator::SelfInflicted;
    shell.cause = Some(Cause {
        pid: 11,
        comm: "app".into(),
        reason: Reason::OomKilled,
        signal: Some(9),
        oom: oom_record().oom,
        seconds_before: 0.21,
    });
    let mut stopped = record(Some("shop"), Some("api-0"), 20);
    stopped.reason = Reason::GracePeriodExpired;
    stopped.exit_code = None;
    stopped.signal = Some(9);
    stopped.exit_status = 137;
    stopped.initiator = Initiator::PodDeletion;
    stopped.grace_seconds = Some(30.02);
    stopped.grace_allowed_seconds = Some(30);
    stopped.stop_signal_ignored = true;
    stopped.sender = Some(Sender {
        pid: 77,
        comm: "containerd-shim".into(),
        cgroup: "/system.slice".into(),
        kind: SenderKind::Host,
    });
    let text = table(&report(vec![shell, stopped], Vec::new()));
    assert!(
        text.contains(
            "    cause      app (pid 11) OOMKilled by SIGKILL 0.2s before; OOM memcg, limit 256Mi \
             of /kubepods/burstable/pod1/abc, victim RSS 250Mi\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    exit       status 137: exit code 137\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "    grace      used 30.0s of 30s; the stop signal was ignored (a PID 1 without a \
             handler drops it)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    exit       status 137: SIGKILL from containerd-shim (pid 77, host)\n"),
        "{text}"
    );
    assert!(text.contains("    initiator  pod_deletion\n"), "{text}");
    assert!(text.contains("2 deaths, newest first:"), "{text}");
}

#[test]
fn events_stand_in_when_the_agent_has_nothing() {
    let mut r = report(
        Vec::new(),
        vec![DeathEvent {
            time: Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()),
            pod: "api-0".into(),
            container: Some("api".into()),
            type_: "Warning".into(),
            reason: "OOMKilled".into(),
            count: 3,
            note: "OOMKilled by the kernel: memcg limit 256Mi".into(),
            name: "api-0.179".into(),
        }],
    );
    r.sources[0] = Source {
        node: "node-1".into(),
        agent: None,
        records: 0,
        problem: Some("no coroner agent".into()),
    };
    assert_eq!(
        table(&r),
        "pod shop/api-0 on node node-1
  node node-1: no coroner agent

1 Event of coroner's (no agent had records of this pod), newest first:

2023-11-14 22:13:20.000Z  container api  Warning OOMKilled ×3
    OOMKilled by the kernel: memcg limit 256Mi
"
    );
    let j = json(&r);
    assert_eq!(j["records"], serde_json::json!([]));
    assert_eq!(j["events"][0]["count"], 3);
    assert_eq!(j["events"][0]["time"], "2023-11-14T22:13:20Z");
    assert_eq!(j["sources"][0]["problem"], "no coroner agent");
}

#[test]
fn json_keeps_the_records_as_the_agent_wrote_them() {
    let mut r = report(vec![oom_record()], Vec::new());
    // A field this version does not know survives.
    r.deaths[0].json["from_the_future"] = serde_json::json!(1);
    let j = json(&r);
    assert_eq!(j["records"][0]["from_the_future"], 1);
    assert_eq!(j["records"][0]["reason"], "OOMKilled");
    assert_eq!(j["records"][0]["role"], Role::Init.as_str());
    assert_eq!(j["pods"][0]["node"], "node-1");
}

#[test]
fn nothing_recorded_says_so() {
    let text = table(&report(Vec::new(), Vec::new()));
    assert!(text.ends_with("\nno deaths recorded\n"), "{text}");
}

#[test]
fn a_workload_names_the_pod_of_each_death() {
    let mut r = report(vec![oom_record()], Vec::new());
    r.show_pod = true;
    assert!(
        table(&r).contains("2023-11-14 22:13:20.123Z  pod api-0  container api  OOMKilled\n"),
        "{}",
        table(&r)
    );
}
