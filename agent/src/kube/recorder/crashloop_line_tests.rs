use super::*;
use crate::export::recent::tests::record;
use crate::record::{Cause, ExecFailure};

const MI: u64 = 1 << 20;

fn init(reason: Reason) -> TerminationRecord {
    let mut r = record(Some("shop"), Some("api-1"), 1);
    r.container = Some("api".into());
    r.reason = reason;
    r.exit_code = None;
    r
}

fn memcg_oom(rss_mi: u64, anon_mi: u64) -> OomKill {
    OomKill {
        scope: OomScope::Memcg,
        victim_rss_bytes: Some(rss_mi * MI),
        anon_rss_bytes: Some(anon_mi * MI),
        file_rss_bytes: Some((rss_mi - anon_mi) * MI),
        shmem_rss_bytes: Some(0),
        memory_limit_bytes: Some(256 * MI),
        limit_cgroup: None,
        trigger_pid: 0,
        trigger_comm: String::new(),
        oom_score_adj: 0,
    }
}

fn line(r: &TerminationRecord, n: u32) -> String {
    let s = LoopSample::of(r).expect("an init's death");
    let counts = LoopCounts {
        of_verdict: n,
        total: n,
        span: Duration::from_mins(10),
        median_uptime: None,
    };
    loop_line(s.verdict, counts, &s.detail)
}

#[test]
fn an_oom_loop_says_the_limit_the_rss_and_how_much_was_anon() {
    let mut r = init(Reason::OomKilled);
    r.comm = "python3".into();
    r.signal = Some(9);
    r.oom = Some(memcg_oom(250, 245));
    r.container_memory_peak_bytes = Some(256 * MI);
    assert_eq!(
        line(&r, 5),
        "OOMKilled 5× in 10m: container \"api\" hit its 256Mi limit; python3 RSS 250Mi \
         (98 % anon), container peak 256Mi"
    );
}

#[test]
fn a_command_not_found_loop_names_the_path_and_errno() {
    let mut r = init(Reason::CommandNotFound);
    r.exit_code = Some(127);
    r.exec_failure = Some(ExecFailure {
        path: "/app/start".into(),
        errno: "ENOENT".into(),
        pid: 1,
    });
    assert_eq!(
        line(&r, 3),
        "CommandNotFound 3× in 10m: container \"api\": /app/start (ENOENT)"
    );
}

#[test]
fn a_grace_period_loop_says_the_stop_signal_was_ignored_and_who_stopped_it() {
    let mut r = init(Reason::GracePeriodExpired);
    r.signal = Some(9);
    r.grace_seconds = Some(30.02);
    r.stop_signal_ignored = true;
    r.initiator = Initiator::PodDeletion;
    assert_eq!(
        line(&r, 4),
        "GracePeriodExpired 4× in 10m: container \"api\": SIGTERM ignored by PID 1, killed \
         after 30s (pod_deletion)"
    );
    r.stop_signal_ignored = false;
    r.initiator = Initiator::LivenessProbe;
    assert!(line(&r, 4).ends_with("SIGTERM not acted on, killed after 30s (liveness_probe)"));
}

#[test]
fn a_relayed_oom_kill_is_named_by_the_cause_not_the_shell() {
    let mut r = init(Reason::Error);
    r.comm = "sh".into();
    r.exit_code = Some(137);
    r.cause = Some(Cause {
        pid: 17,
        comm: "app".into(),
        reason: Reason::OomKilled,
        signal: Some(9),
        oom: Some(memcg_oom(200, 190)),
        seconds_before: 0.2,
    });
    assert_eq!(
        line(&r, 3),
        "OOMKilled 3× in 10m: container \"api\" hit its 256Mi limit; app RSS 200Mi (95 % \
         anon); sh relayed it (exited with code 137)"
    );
}

#[test]
fn a_relayed_crash_names_the_child_and_its_signal() {
    let mut r = init(Reason::Error);
    r.comm = "tini".into();
    r.exit_code = Some(139);
    r.cause = Some(Cause {
        pid: 8,
        comm: "server".into(),
        reason: Reason::Crashed,
        signal: Some(11),
        oom: None,
        seconds_before: 0.01,
    });
    assert_eq!(
        line(&r, 3),
        "Crashed 3× in 10m: container \"api\": child server (pid 8) died of SIGSEGV, tini \
         relayed it (exited with code 139)"
    );
}

#[test]
fn a_plain_error_and_a_crash() {
    let mut r = init(Reason::Error);
    r.exit_code = Some(1);
    assert_eq!(
        line(&r, 3),
        "Error 3× in 10m: container \"api\": app exited with code 1"
    );
    let mut r = init(Reason::Crashed);
    r.signal = Some(11);
    r.core_dumped = true;
    assert_eq!(
        line(&r, 3),
        "Crashed 3× in 10m: container \"api\": app died of SIGSEGV, core dumped"
    );
}

#[test]
fn only_a_named_containers_init_is_part_of_a_loop() {
    let mut r = init(Reason::Error);
    r.role = crate::record::Role::Child;
    assert_eq!(LoopSample::of(&r), None);
    let mut r = init(Reason::Error);
    r.container = None;
    assert_eq!(LoopSample::of(&r), None);
}

#[test]
fn a_long_line_is_cut_to_fit_a_note() {
    let detail = "x".repeat(2000);
    let counts = LoopCounts {
        of_verdict: 3,
        total: 3,
        span: Duration::from_secs(5),
        median_uptime: Some(Duration::from_secs(41)),
    };
    assert!(loop_line(Reason::Error, counts, "x").ends_with(": x, median uptime 41s"));
    let l = loop_line(Reason::Error, counts, &detail);
    assert!(l.len() <= NOTE_MAX_BYTES && l.ends_with('…'));
}
