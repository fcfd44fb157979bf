//! The suite's one record fixture: a container's init OOM-killed at its limit, every field
//! filled as the agent fills it on a real node. Tests change the fields they look at.

use coroner::record::{
    ExecFailure, Initiator, OomKill, OomScope, Reason, Role, Sender, SenderKind, TerminationRecord,
};
use time::macros::datetime;

/// The node the fixture died on (the API server double's node).
pub const NODE: &str = crate::apiserver::fixture::NODE;
pub const POD_UID: &str = "u-api";
pub const CONTAINER_ID: &str = "c-api";

/// `python3` (pid 4242), the init of container `api` of pod `shop/api-x`, OOM-killed when
/// its container hit the 256Mi limit with 312Mi resident.
#[must_use]
pub fn oom_killed_init() -> TerminationRecord {
    let cgroup = format!("/kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}");
    TerminationRecord {
        time: datetime!(2026-11-22 12:00:31 UTC),
        node: NODE.into(),
        pid: 4242,
        ppid: 77,
        comm: "python3".into(),
        main_process: true,
        cgroup: cgroup.clone(),
        pod_uid: Some(POD_UID.into()),
        container_id: Some(CONTAINER_ID.into()),
        namespace: Some("shop".into()),
        pod: Some("api-x".into()),
        container: Some("api".into()),
        owner_kind: Some("Deployment".into()),
        owner_name: Some("api".into()),
        exit_code: None,
        signal: Some(9),
        core_dumped: false,
        reason: Reason::OomKilled,
        sender: Some(Sender {
            pid: 0,
            comm: String::new(),
            cgroup: String::new(),
            kind: SenderKind::Kernel,
        }),
        sigterm_time: None,
        sigkill_time: Some(datetime!(2026-11-22 12:00:30.9 UTC)),
        grace_seconds: None,
        oom: Some(OomKill {
            scope: OomScope::Memcg,
            victim_rss_bytes: Some(312 << 20),
            anon_rss_bytes: Some(306 << 20),
            file_rss_bytes: Some(6 << 20),
            shmem_rss_bytes: Some(0),
            memory_limit_bytes: Some(256 << 20),
            limit_cgroup: Some(cgroup),
            trigger_pid: 4242,
            trigger_comm: "python3".into(),
            oom_score_adj: 984,
        }),
        peak_rss_bytes: 312 << 20,
        container_memory_peak_bytes: Some(318 << 20),
        container_memory_limit_bytes: Some(256 << 20),
        exec_failure: Some(ExecFailure {
            path: "/bin/helper".into(),
            errno: "ENOENT".into(),
            pid: 4243,
        }),
        exit_status: 137,
        role: Role::Init,
        message: None,
        initiator: Initiator::OomKiller,
        grace_allowed_seconds: Some(30),
        cause: None,
        stop_signal_ignored: false,
        uptime_seconds: Some(41.0),
    }
}

/// The fixture's process dead of `reason` instead, in container `container` (`id`): what
/// that verdict does not have (the OOM kill, the signal) is left out.
#[must_use]
pub fn died(reason: Reason, container: &str, id: &str) -> TerminationRecord {
    let mut r = oom_killed_init();
    r.cgroup = format!("/kubepods/burstable/pod{POD_UID}/{id}");
    r.container_id = Some(id.into());
    r.container = Some(container.into());
    r.reason = reason;
    r.exec_failure = None;
    if reason != Reason::OomKilled {
        r.oom = None;
        r.sender = None;
        r.sigkill_time = None;
        r.initiator = Initiator::Unknown;
    }
    if reason == Reason::Completed {
        (r.exit_code, r.signal, r.exit_status) = (Some(0), None, 0);
        r.initiator = Initiator::Exited;
    }
    r
}
