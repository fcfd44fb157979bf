use time::macros::datetime;

use super::*;
use crate::record::{ExecFailure, OomKill};

const CGROUP: &str = "/kubepods/burstable/pod4f1c/abc123";

fn record(reason: Reason) -> TerminationRecord {
    TerminationRecord {
        time: datetime!(2026-11-22 12:00:31 UTC),
        node: "node-a".into(),
        pid: 4242,
        ppid: 77,
        comm: "python3".into(),
        main_process: true,
        cgroup: CGROUP.into(),
        pod_uid: Some("4f1c".into()),
        container_id: Some("abc123def4567890".into()),
        namespace: Some("shop".into()),
        pod: Some("api-7d4b9c-x2x".into()),
        container: Some("api".into()),
        owner_kind: Some("Deployment".into()),
        owner_name: Some("api".into()),
        exit_code: None,
        signal: None,
        core_dumped: false,
        reason,
        sender: None,
        sigterm_time: None,
        sigkill_time: None,
        grace_seconds: None,
        oom: None,
        peak_rss_bytes: 0,
        container_memory_peak_bytes: None,
        container_memory_limit_bytes: None,
        exec_failure: None,
        exit_status: 0,
        role: crate::record::Role::Init,
        message: None,
        initiator: crate::record::Initiator::Unknown,
        grace_allowed_seconds: None,
        cause: None,
        stop_signal_ignored: false,
        uptime_seconds: None,
    }
}

fn sender(comm: &str, pid: u32, kind: SenderKind) -> Option<Sender> {
    let sender = Sender {
        pid,
        comm: comm.into(),
        cgroup: String::new(),
        kind,
    };
    // Zero is no pid: a record without a known sender.
    (pid != 0 || kind == SenderKind::Kernel).then_some(sender)
}

fn oom(scope: OomScope, limit: Option<u64>, limit_cgroup: Option<&str>) -> OomKill {
    OomKill {
        scope,
        victim_rss_bytes: Some(312 << 20),
        anon_rss_bytes: Some(300 << 20),
        file_rss_bytes: Some(12 << 20),
        shmem_rss_bytes: Some(0),
        memory_limit_bytes: limit,
        limit_cgroup: limit_cgroup.map(Into::into),
        trigger_pid: 4242,
        trigger_comm: "python3".into(),
        oom_score_adj: 0,
    }
}

#[test]
fn oom_killed_by_the_container_limit() {
    let mut r = record(Reason::OomKilled);
    r.signal = Some(9);
    r.sender = sender("", 0, SenderKind::Kernel);
    r.oom = Some(oom(OomScope::Memcg, Some(256 << 20), Some(CGROUP)));
    r.container_memory_peak_bytes = Some(318 << 20);
    assert_eq!(
        event_note(&r),
        "OOMKilled by the kernel: memcg limit 256Mi hit by container \"api\"; \
         python3 (pid 4242) RSS 312Mi; container peak 318Mi"
    );
}

#[test]
fn oom_killed_by_the_pod_limit_triggered_by_another_process() {
    let mut r = record(Reason::OomKilled);
    r.oom = Some(oom(
        OomScope::Memcg,
        Some(1 << 30),
        Some("/kubepods/burstable/pod4f1c"),
    ));
    if let Some(o) = &mut r.oom {
        o.trigger_pid = 4300;
        o.trigger_comm = "worker".into();
    }
    r.main_process = false;
    assert_eq!(
        event_note(&r),
        "OOMKilled by the kernel: memcg limit 1Gi hit by pod \"api-7d4b9c-x2x\"; \
         python3 (pid 4242, not the main process) RSS 312Mi; \
         the allocation of worker (pid 4300) triggered it"
    );
}

#[test]
fn oom_killed_by_the_node_running_out() {
    let mut r = record(Reason::OomKilled);
    r.oom = Some(oom(OomScope::Global, None, None));
    r.container_memory_peak_bytes = Some(1536 << 20);
    assert_eq!(
        event_note(&r),
        "OOMKilled by the kernel: the node ran out of memory (no cgroup limit hit); \
         python3 (pid 4242) in container \"api\" RSS 312Mi; container peak 1.5Gi"
    );
}

#[test]
fn grace_period_expired() {
    let mut r = record(Reason::GracePeriodExpired);
    r.signal = Some(9);
    r.sender = sender("containerd-shim", 77, SenderKind::Host);
    r.sigterm_time = Some(datetime!(2026-11-22 12:00:01.25 UTC));
    r.sigkill_time = Some(datetime!(2026-11-22 12:00:31.25 UTC));
    r.grace_seconds = Some(30.0);
    assert_eq!(
        event_note(&r),
        "GracePeriodExpired: SIGTERM from containerd-shim (pid 77) at 12:00:01Z, \
         SIGKILL 30.0s later; python3 (pid 4242) in container \"api\" had not exited"
    );
}

#[test]
fn the_initiator_and_the_grace_allowed_where_the_api_told_them() {
    let mut r = record(Reason::GracePeriodExpired);
    r.signal = Some(9);
    r.sender = sender("containerd-shim", 77, SenderKind::Host);
    r.sigterm_time = Some(datetime!(2026-11-22 12:00:01.25 UTC));
    r.grace_seconds = Some(30.0);
    r.initiator = crate::record::Initiator::PodDeletion;
    r.grace_allowed_seconds = Some(30);
    assert_eq!(
        event_note(&r),
        "GracePeriodExpired: SIGTERM from containerd-shim (pid 77) at 12:00:01Z, \
         SIGKILL 30.0s later (of 30s allowed); python3 (pid 4242) in container \"api\" had not \
         exited; the pod is being deleted"
    );
    let mut r = record(Reason::Terminated);
    r.signal = Some(15);
    r.initiator = crate::record::Initiator::LivenessProbe;
    assert!(
        event_note(&r).ends_with("; the kubelet restarted it: liveness probe failed"),
        "{}",
        event_note(&r)
    );
    // What the verdict already says is not repeated.
    let mut r = record(Reason::Error);
    r.exit_code = Some(1);
    r.initiator = crate::record::Initiator::Exited;
    assert!(!event_note(&r).contains(';'), "{}", event_note(&r));
}

#[test]
fn killed_and_terminated_name_the_sender() {
    let mut r = record(Reason::Killed);
    r.signal = Some(9);
    r.sender = sender("kill", 999, SenderKind::OtherContainer);
    assert_eq!(
        event_note(&r),
        "Killed: SIGKILL from kill (pid 999) in another container to python3 (pid 4242) \
         in container \"api\", no SIGTERM before"
    );
    let mut r = record(Reason::Terminated);
    r.signal = Some(2);
    r.sender = sender("bash", 12, SenderKind::SameContainer);
    assert_eq!(
        event_note(&r),
        "Terminated: SIGINT from bash (pid 12) in the same container to python3 (pid 4242) \
         in container \"api\""
    );
}

#[test]
fn crashed_and_signaled_say_which_signal() {
    let mut r = record(Reason::Crashed);
    r.signal = Some(11);
    r.core_dumped = true;
    r.sender = sender("python3", 4242, SenderKind::Kernel);
    assert_eq!(
        event_note(&r),
        "Crashed: python3 (pid 4242) in container \"api\" died of SIGSEGV from the kernel \
         (core dumped)"
    );
    r.signal = Some(6);
    r.core_dumped = false;
    r.sender = sender("python3", 4242, SenderKind::SelfSent);
    assert_eq!(
        event_note(&r),
        "Crashed: python3 (pid 4242) in container \"api\" died of SIGABRT it sent itself"
    );
    let mut r = record(Reason::Signaled);
    r.signal = Some(10);
    assert_eq!(
        event_note(&r),
        "Signaled: python3 (pid 4242) in container \"api\" died of SIGUSR1"
    );
}

#[test]
fn exits_and_exec_failures() {
    let mut r = record(Reason::Completed);
    r.exit_code = Some(0);
    assert_eq!(
        event_note(&r),
        "Completed: python3 (pid 4242) in container \"api\" exited with code 0"
    );
    let mut r = record(Reason::Error);
    r.exit_code = Some(3);
    r.container = None;
    assert_eq!(
        event_note(&r),
        "Error: python3 (pid 4242) in container abc123def456 exited with code 3"
    );
    let mut r = record(Reason::CommandNotFound);
    r.comm = "sh".into();
    r.exit_code = Some(127);
    r.exec_failure = Some(ExecFailure {
        path: "/app/run.sh".into(),
        errno: "ENOENT".into(),
        pid: 4243,
    });
    assert_eq!(
        event_note(&r),
        "CommandNotFound: execve(\"/app/run.sh\") failed with ENOENT (pid 4243); \
         sh (pid 4242) in container \"api\" exited with code 127"
    );
    let mut r = record(Reason::NotExecutable);
    r.exit_code = Some(126);
    assert_eq!(
        event_note(&r),
        "NotExecutable: python3 (pid 4242) in container \"api\" exited with code 126"
    );
}

#[test]
fn every_verdict_gives_a_bounded_line() {
    for reason in Reason::ALL {
        let mut r = record(reason);
        r.exec_failure = Some(ExecFailure {
            path: "/é".repeat(3000),
            errno: "EACCES".into(),
            pid: 1,
        });
        r.comm = "x".repeat(2000);
        let note = event_note(&r);
        assert!(note.len() <= NOTE_MAX_BYTES, "{reason:?}: {}", note.len());
        assert!(note.starts_with(reason.as_str()), "{note}");
        assert!(!note.contains('\n'));
    }
}

#[test]
fn quantities_and_signal_names() {
    assert_eq!(bytes(256 << 20), "256Mi");
    assert_eq!(bytes(1 << 30), "1Gi");
    assert_eq!(bytes(3 << 29), "1.5Gi");
    assert_eq!(bytes(1536), "2Ki");
    assert_eq!(bytes(100), "100B");
    // Signal names come from the record's one table (kill -l spelling).
    assert_eq!(signal_name(15), "SIGTERM");
}

#[test]
fn an_init_relaying_its_childs_oom_kill_says_the_cause_first() {
    let mut r = record(Reason::Error);
    (r.pid, r.comm) = (4200, "sh".into());
    r.exit_code = Some(137);
    r.exit_status = 137;
    r.cause = Some(crate::record::Cause {
        pid: 4242,
        comm: "python3".into(),
        reason: Reason::OomKilled,
        signal: Some(9),
        oom: Some(oom(OomScope::Memcg, Some(256 << 20), Some(CGROUP))),
        seconds_before: 0.2,
    });
    assert_eq!(
        event_note(&r),
        "Error (exit 137): child python3 (pid 4242) was OOM-killed 0.2s earlier: \
         memcg limit 256Mi hit by container \"api\", RSS 312Mi; \
         sh (pid 4200) in container \"api\" exited with code 137"
    );
}

#[test]
fn an_init_relaying_a_crash_says_which_signal() {
    let mut r = record(Reason::Error);
    (r.pid, r.comm) = (4200, "tini".into());
    r.exit_code = Some(139);
    r.exit_status = 139;
    r.cause = Some(crate::record::Cause {
        pid: 4242,
        comm: "python3".into(),
        reason: Reason::Crashed,
        signal: Some(11),
        oom: None,
        seconds_before: 0.012,
    });
    assert_eq!(
        event_note(&r),
        "Error (exit 139): child python3 (pid 4242) crashed (SIGSEGV) 0.012s earlier; \
         tini (pid 4200) in container \"api\" exited with code 139"
    );
}

#[test]
fn a_sigterm_ignored_by_pid_1_is_said_in_plain_words() {
    let mut r = record(Reason::GracePeriodExpired);
    r.signal = Some(9);
    r.sender = sender("containerd-shim", 77, SenderKind::Host);
    r.sigterm_time = Some(datetime!(2026-11-22 12:00:01.25 UTC));
    r.grace_seconds = Some(30.0);
    r.stop_signal_ignored = true;
    assert_eq!(
        event_note(&r),
        "GracePeriodExpired: SIGTERM from containerd-shim (pid 77) at 12:00:01Z was ignored: \
         PID 1 has no handler for it, or ignores it (a shell that does not forward it?), \
         SIGKILL 30.0s later; python3 (pid 4242) in container \"api\" had not exited"
    );
    r.reason = Reason::Killed;
    r.main_process = false;
    assert!(
        event_note(&r).ends_with("; a stop signal was ignored: the process ignores it (SIG_IGN)"),
        "{}",
        event_note(&r)
    );
}
