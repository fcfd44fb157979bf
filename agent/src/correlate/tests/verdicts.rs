//! Every verdict of `docs/record.md`, and who sent what, through the whole correlator.

use super::fixtures::*;
use crate::correlate::verdict::sig::*;
use crate::record::{Reason, SenderKind};

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
const SI_TKILL: i32 = -6;
const SEGV_MAPERR: i32 = 1;

const MAIN: Proc = proc(4242, 7 * SEC, CTR_A);
/// containerd-shim, on the host.
const SHIM: (u32, u64) = (900, HOST);

fn one(events: &[agent_ebpf::KernelEvent]) -> crate::record::TerminationRecord {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    only(run(&mut c, &mut cg, events))
}

#[test]
fn exit_zero_of_a_main_process_is_completed_with_every_field() {
    let r = one(&[exited(MAIN, 100 * SEC + 5, 0, true)]);
    assert_eq!(r.reason, Reason::Completed);
    assert_eq!(r.time.unix_timestamp_nanos(), wall(100 * SEC + 5));
    assert_eq!(r.node, "node-1");
    assert_eq!((r.pid, r.ppid, r.comm.as_str()), (4242, 1, "app"));
    assert!(r.main_process);
    assert_eq!(r.cgroup, path_a());
    assert_eq!(r.pod_uid.as_deref(), Some(POD_UID));
    assert_eq!(r.container_id.as_deref(), Some(CID_A));
    assert_eq!((r.namespace, r.pod, r.container), (None, None, None));
    assert_eq!(
        (r.exit_code, r.signal, r.core_dumped),
        (Some(0), None, false)
    );
    assert_eq!(r.exit_status, 0);
    assert_eq!(r.sender, None);
    assert_eq!(r.peak_rss_bytes, 2560 * PAGE);
    assert_eq!(r.container_memory_peak_bytes, Some(60 << 20));
    assert_eq!(r.container_memory_limit_bytes, Some(64 << 20));
    assert_eq!((r.oom, r.exec_failure, r.grace_seconds), (None, None, None));
}

#[test]
fn exit_codes_give_error_command_not_found_not_executable() {
    let cases = [
        (1, Reason::Error),
        (2, Reason::Error),
        (127, Reason::CommandNotFound),
        (126, Reason::NotExecutable),
        (255, Reason::Error),
    ];
    for (code, reason) in cases {
        let r = one(&[exited(MAIN, 100 * SEC, code, true)]);
        assert_eq!(
            (r.reason, r.exit_code, r.exit_status),
            (reason, Some(code), u16::from(code))
        );
    }
}

#[test]
fn exec_failure_enoent_then_exit_127_names_the_missing_command() {
    // The shell (the main process) forks a child (pid 4300) whose exec fails; both exit 127.
    let r = one(&[
        exec_failure(50 * SEC, 4300, CTR_A, libc::ENOENT, "/usr/local/bin/serve"),
        exited(MAIN, 50 * SEC + 2000, 127, true),
    ]);
    assert_eq!(r.reason, Reason::CommandNotFound);
    let x = r.exec_failure.expect("exec failure");
    assert_eq!(
        (x.path.as_str(), x.errno.as_str(), x.pid),
        ("/usr/local/bin/serve", "ENOENT", 4300)
    );
}

#[test]
fn a_failed_exec_explains_a_nonzero_exit_by_its_errno() {
    let cases = [
        (libc::ENOENT, Reason::CommandNotFound, "ENOENT"),
        (libc::EACCES, Reason::NotExecutable, "EACCES"),
        (libc::ENOEXEC, Reason::NotExecutable, "ENOEXEC"),
        (libc::E2BIG, Reason::Error, "E2BIG"),
    ];
    for (errno, reason, name) in cases {
        let r = one(&[
            exec_failure(50 * SEC, 4242, CTR_A, errno, "./run.sh"),
            exited(MAIN, 51 * SEC, 1, true),
        ]);
        assert_eq!(r.reason, reason, "{name}");
        assert_eq!(r.exec_failure.expect("kept").errno, name);
    }
    // Exit 0 stays Completed even after a failed exec (a PATH search that went on).
    let r = one(&[
        exec_failure(50 * SEC, 4242, CTR_A, libc::ENOENT, "x"),
        exited(MAIN, 51 * SEC, 0, true),
    ]);
    assert_eq!(r.reason, Reason::Completed);
}

#[test]
fn another_process_failed_exec_is_not_this_ones() {
    // A `kubectl exec` of a missing command: its parent is the runtime (900), not the main
    // process, so the main process's later exit 1 is an Error, not CommandNotFound.
    let r = one(&[
        exec_failure_by(50 * SEC, 4400, 900, CTR_A, libc::ENOENT, "/bin/missing"),
        exited(MAIN, 51 * SEC, 1, true),
    ]);
    assert_eq!((r.reason, r.exec_failure), (Reason::Error, None));
}

#[test]
fn a_path_miss_followed_by_a_successful_exec_explains_nothing() {
    // execvp tries /nonexistent-x/sh (ENOENT), then /bin/sh succeeds; the script exits 1.
    let r = one(&[
        exec_failure(50 * SEC, 4300, CTR_A, libc::ENOENT, "/nonexistent-x/sh"),
        exec_later_success(50 * SEC + 10, 4300, CTR_A),
        exited(MAIN, 51 * SEC, 1, true),
    ]);
    assert_eq!((r.reason, r.exec_failure), (Reason::Error, None));
    // A failure of another child stays.
    let r = one(&[
        exec_failure(50 * SEC, 4301, CTR_A, libc::ENOENT, "/bin/gone"),
        exec_failure(50 * SEC, 4300, CTR_A, libc::ENOENT, "/nonexistent-x/sh"),
        exec_later_success(50 * SEC + 10, 4300, CTR_A),
        exited(MAIN, 51 * SEC, 127, true),
    ]);
    assert_eq!(r.exec_failure.map(|x| x.path), Some("/bin/gone".into()));
}

#[test]
fn exec_failures_outside_the_process_life_or_container_do_not_count() {
    let r = one(&[
        // Before the process started (a previous instance), in another container, after death.
        exec_failure(MAIN.start - 1, 10, CTR_A, libc::ENOENT, "old"),
        exec_failure(50 * SEC, 11, CTR_B, libc::ENOENT, "other"),
        exec_failure(51 * SEC + 1, 12, CTR_A, libc::ENOENT, "after"),
        exited(MAIN, 51 * SEC, 1, true),
    ]);
    assert_eq!((r.reason, r.exec_failure), (Reason::Error, None));
    // Of several, the last before the death is the context; a child's failure seconds
    // before does not explain the parent's exit 1.
    let r = one(&[
        exec_failure(40 * SEC, 10, CTR_A, libc::EACCES, "first"),
        exec_failure(45 * SEC, 11, CTR_A, libc::ENOENT, "last"),
        exited(MAIN, 51 * SEC, 1, true),
    ]);
    assert_eq!(
        (r.reason, r.exec_failure.map(|x| x.path)),
        (Reason::Error, Some("last".into()))
    );
}

#[test]
fn sigkill_from_the_host_without_sigterm_is_killed() {
    let r = one(&[
        sent(99 * SEC, SIGKILL, SI_USER, SHIM, MAIN),
        killed(MAIN, 99 * SEC + 100, SIGKILL, true),
    ]);
    assert_eq!(r.reason, Reason::Killed);
    assert_eq!((r.exit_code, r.signal, r.exit_status), (None, Some(9), 137));
    let s = r.sender.expect("sender");
    assert_eq!(
        (s.pid, s.comm.as_str(), s.cgroup.as_str(), s.kind),
        (900, "containerd-shim", HOST_PATH, SenderKind::Host)
    );
    assert_eq!(
        r.sigkill_time
            .map(time::OffsetDateTime::unix_timestamp_nanos),
        Some(wall(99 * SEC))
    );
    assert_eq!((r.sigterm_time, r.grace_seconds), (None, None));
}

#[test]
fn sigterm_then_sigkill_is_grace_period_expired_timed_from_ktime() {
    let term = 70 * SEC + 123;
    let kill = term + 30 * SEC + 456_789;
    let r = one(&[
        sent(term, SIGTERM, SI_USER, SHIM, MAIN),
        sent(kill, SIGKILL, SI_USER, SHIM, MAIN),
        killed(MAIN, kill + 50_000, SIGKILL, true),
    ]);
    assert_eq!(r.reason, Reason::GracePeriodExpired);
    assert_eq!(
        r.sigterm_time
            .map(time::OffsetDateTime::unix_timestamp_nanos),
        Some(wall(term))
    );
    assert_eq!(
        r.sigkill_time
            .map(time::OffsetDateTime::unix_timestamp_nanos),
        Some(wall(kill))
    );
    assert_eq!(r.grace_seconds, Some(30.000_456_789));
    assert_eq!(r.sender.map(|s| s.kind), Some(SenderKind::Host));
}

#[test]
fn a_handled_sigterm_still_gives_sigterm_time_on_a_clean_exit() {
    let r = one(&[
        sent(70 * SEC, SIGTERM, SI_USER, SHIM, MAIN),
        exited(MAIN, 72 * SEC, 0, true),
    ]);
    assert_eq!(r.reason, Reason::Completed);
    assert_eq!(
        r.sigterm_time
            .map(time::OffsetDateTime::unix_timestamp_nanos),
        Some(wall(70 * SEC))
    );
    assert_eq!(
        (r.sigkill_time, r.grace_seconds, r.sender),
        (None, None, None)
    );
}

#[test]
fn a_self_sent_sigterm_before_sigkill_is_no_grace_period() {
    let r = one(&[
        sent(70 * SEC, SIGTERM, SI_TKILL, (4242, CTR_A), MAIN),
        sent(71 * SEC, SIGKILL, SI_USER, SHIM, MAIN),
        killed(MAIN, 71 * SEC + 10, SIGKILL, true),
    ]);
    assert_eq!((r.reason, r.sigterm_time), (Reason::Killed, None));
}

#[test]
fn termination_signals_by_sender() {
    let from_container = (4300, CTR_A);
    let from_sidecar = (5000, CTR_B);
    let cases = [
        (
            SIGTERM,
            SI_USER,
            SHIM,
            Reason::Terminated,
            SenderKind::Host,
            HOST_PATH.to_owned(),
        ),
        (
            SIGTERM,
            SI_USER,
            from_container,
            Reason::Terminated,
            SenderKind::SameContainer,
            path_a(),
        ),
        (
            SIGINT,
            SI_USER,
            from_sidecar,
            Reason::Terminated,
            SenderKind::OtherContainer,
            path_b(),
        ),
        (
            SIGHUP,
            SI_KERNEL,
            (77, HOST),
            Reason::Terminated,
            SenderKind::Kernel,
            String::new(),
        ),
        (
            SIGQUIT,
            SI_USER,
            SHIM,
            Reason::Terminated,
            SenderKind::Host,
            HOST_PATH.to_owned(),
        ),
        (
            SIGTERM,
            SI_TKILL,
            (4242, CTR_A),
            Reason::Signaled,
            SenderKind::SelfSent,
            path_a(),
        ),
    ];
    for (signal, code, sender, reason, kind, cgroup) in cases {
        let r = one(&[
            sent(10 * SEC, signal, code, sender, MAIN),
            killed(MAIN, 10 * SEC + 9, signal, true),
        ]);
        assert_eq!(r.reason, reason, "signal {signal} from {sender:?}");
        let s = r.sender.expect("sender");
        assert_eq!(
            (s.kind, s.cgroup, s.pid),
            (kind, cgroup, sender.0),
            "signal {signal}"
        );
    }
}

#[test]
fn a_sigterm_from_a_pod_level_cgroup_is_not_a_container() {
    // The pod's own cgroup resolves, but to no container: a host-side process.
    let r = one(&[
        sent(10 * SEC, SIGTERM, SI_USER, (31, POD), MAIN),
        killed(MAIN, 10 * SEC + 9, SIGTERM, true),
    ]);
    assert_eq!(
        r.sender.map(|s| (s.kind, s.cgroup)),
        Some((SenderKind::Host, pod_path()))
    );
}

#[test]
fn crash_signals_are_crashed_with_the_kernel_or_self_as_sender() {
    for signal in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGTRAP] {
        let r = one(&[
            sent(10 * SEC, signal, SEGV_MAPERR, (4242, CTR_A), MAIN),
            killed(MAIN, 10 * SEC + 9, signal | 0x80, true),
        ]);
        assert_eq!(
            (r.reason, r.signal, r.core_dumped),
            (Reason::Crashed, Some(signal), true)
        );
        assert_eq!(r.exit_status, 128 + u16::from(signal));
        let s = r.sender.expect("sender");
        assert_eq!((s.kind, s.cgroup.as_str()), (SenderKind::Kernel, ""));
    }
    // abort() raises SIGABRT with tgkill: the process itself.
    let r = one(&[
        sent(10 * SEC, SIGABRT, SI_TKILL, (4242, CTR_A), MAIN),
        killed(MAIN, 10 * SEC + 9, SIGABRT | 0x80, true),
    ]);
    assert_eq!(
        (r.reason, r.sender.map(|s| s.kind)),
        (Reason::Crashed, Some(SenderKind::SelfSent))
    );
}

#[test]
fn other_signals_are_signaled_and_unseen_senders_stay_null() {
    let sigusr1 = libc::SIGUSR1 as u8;
    let r = one(&[
        sent(10 * SEC, sigusr1, SI_USER, SHIM, MAIN),
        killed(MAIN, 10 * SEC + 9, sigusr1, true),
    ]);
    assert_eq!(
        (r.reason, r.sender.map(|s| s.kind)),
        (Reason::Signaled, Some(SenderKind::Host))
    );
    // A SIGPIPE from a write to a closed pipe: SEND_SIG_NOINFO, i.e. SI_USER from itself.
    let sigpipe = libc::SIGPIPE as u8;
    let r = one(&[
        sent(10 * SEC, sigpipe, SI_USER, (4242, CTR_A), MAIN),
        killed(MAIN, 10 * SEC + 9, sigpipe, true),
    ]);
    assert_eq!(
        (r.reason, r.sender.map(|s| s.kind)),
        (Reason::Signaled, Some(SenderKind::SelfSent))
    );
    // No signal event seen at all: the verdict comes from the number, the sender is unknown.
    let r = one(&[killed(MAIN, 10 * SEC, SIGKILL, true)]);
    assert_eq!((r.reason, r.sender), (Reason::Killed, None));
    let r = one(&[killed(MAIN, 10 * SEC, SIGTERM, true)]);
    assert_eq!((r.reason, r.sender), (Reason::Terminated, None));
}

#[test]
fn a_kernel_sigkill_is_killed_never_grace_period_expired() {
    // PID-namespace teardown: the kernel SIGKILLs what is left, after a SIGTERM was sent.
    let r = one(&[
        sent(10 * SEC, SIGTERM, SI_USER, SHIM, MAIN),
        sent(11 * SEC, SIGKILL, SI_KERNEL, (1, CTR_A), MAIN),
        killed(MAIN, 11 * SEC + 9, SIGKILL, true),
    ]);
    assert_eq!(
        (r.reason, r.sender.map(|s| s.kind)),
        (Reason::Killed, Some(SenderKind::Kernel))
    );
    assert_eq!(
        r.sigkill_time, None,
        "a kernel SIGKILL is not sent by another process"
    );
}

#[test]
fn of_several_signals_of_one_number_the_delivered_one_names_the_sender() {
    let mut first = signal(10 * SEC, SIGTERM, SI_USER, (31, CTR_B), MAIN);
    first.result = 2; // already pending: merged, not the one that took effect
    let r = one(&[
        agent_ebpf::KernelEvent::Signal(first),
        sent(10 * SEC + 5, SIGTERM, SI_USER, SHIM, MAIN),
        killed(MAIN, 10 * SEC + 9, SIGTERM, true),
    ]);
    assert_eq!(r.sender.map(|s| s.pid), Some(900));
    // The grace period starts at the first SIGTERM sent, delivered or not.
    assert_eq!(
        r.sigterm_time
            .map(time::OffsetDateTime::unix_timestamp_nanos),
        Some(wall(10 * SEC))
    );
}
