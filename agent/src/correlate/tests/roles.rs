//! Roles the kernel decided, and what the runtime's ways of starting, exec'ing and stopping
//! processes mean for the record: who is recorded, `StartError`, re-raised stop signals,
//! kernel-raised signals without a siginfo, and which failed exec explains an exit.

use agent_ebpf::{KernelEvent, exit_flags, role, signal_flags};

use super::fixtures::*;
use crate::correlate::verdict::sig::*;
use crate::record::{Reason, Role, SenderKind, TerminationRecord};

const SI_USER: i32 = 0;
const SI_TKILL: i32 = -6;
const SIGPIPE: u8 = 13;

const INIT: Proc = proc(4242, 7 * SEC, CTR_A);
const SESSION: Proc = proc(5000, 20 * SEC, CTR_A);
/// containerd-shim / runc, on the host.
const SHIM: (u32, u64) = (900, HOST);

fn records(events: &[KernelEvent]) -> Vec<TerminationRecord> {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    run(&mut c, &mut cg, events)
}

/// The exit of `p` with the role (and flags) the kernel gave it; `raw` is `task->exit_code`.
fn exit_as(p: Proc, at: u64, raw: u32, kernel_role: u32, flags: u32) -> KernelEvent {
    let mut e = exit(p, at, raw, kernel_role != role::CHILD);
    e.role = kernel_role;
    e.flags |= flags;
    KernelEvent::Exit(e)
}

#[test]
fn runtime_helpers_and_exec_sessions_that_exit_make_no_record() {
    let helper = proc(4100, 6 * SEC, CTR_A);
    assert!(
        records(&[
            exit_as(helper, 8 * SEC, 0, role::RUNTIME, 0),
            exit_as(SESSION, 21 * SEC, 1 << 8, role::EXEC, 0),
        ])
        .is_empty()
    );
}

#[test]
fn an_exec_session_killed_is_recorded_as_exec_not_as_the_init() {
    let r = only(records(&[
        sent(21 * SEC, SIGKILL, SI_USER, SHIM, SESSION),
        exit_as(SESSION, 21 * SEC + 10, u32::from(SIGKILL), role::EXEC, 0),
    ]));
    assert_eq!((r.role, r.main_process), (Role::Exec, false));
    assert_eq!(r.reason, Reason::Killed);
}

#[test]
fn an_init_that_never_executed_its_command_is_a_start_error() {
    let r = only(records(&[exit_as(
        INIT,
        8 * SEC,
        1 << 8,
        role::INIT,
        exit_flags::NO_EXEC,
    )]));
    assert_eq!((r.role, r.main_process), (Role::Init, true));
    assert_eq!((r.reason, r.exit_code), (Reason::StartError, Some(1)));
    // With the command running, the same exit is an ordinary error.
    let r = only(records(&[exit_as(INIT, 8 * SEC, 1 << 8, role::INIT, 0)]));
    assert_eq!(r.reason, Reason::Error);
}

/// The sandbox torn down while `runc init` was executing `/pause`: the SIGKILL makes the exec
/// fail (EAGAIN, a fatal signal pending); its path says it was the sandbox.
#[test]
fn a_sandbox_killed_while_becoming_pause_is_the_sandbox() {
    let r = only(records(&[
        sent(8 * SEC, SIGKILL, SI_USER, SHIM, INIT),
        exec_failure(8 * SEC + 5, INIT.tgid, CTR_A, libc::EAGAIN, "/pause"),
        exit_as(
            INIT,
            8 * SEC + 10,
            u32::from(SIGKILL),
            role::INIT,
            exit_flags::NO_EXEC,
        ),
    ]));
    assert_eq!((r.role, r.main_process), (Role::Sandbox, false));
    // Another init whose command failed is not the sandbox for that.
    let r = only(records(&[
        exec_failure(8 * SEC + 5, INIT.tgid, CTR_A, libc::ENOENT, "/app/start"),
        exit_as(INIT, 8 * SEC + 10, 1 << 8, role::INIT, exit_flags::NO_EXEC),
    ]));
    assert_eq!((r.role, r.reason), (Role::Init, Reason::StartError));
}

#[test]
fn the_pause_process_is_the_sandbox() {
    let KernelEvent::Exit(mut e) = exit_as(INIT, 8 * SEC, u32::from(SIGKILL), role::INIT, 0) else {
        unreachable!()
    };
    e.comm = comm("pause");
    let r = only(records(&[KernelEvent::Exit(e)]));
    assert_eq!((r.role, r.main_process), (Role::Sandbox, false));
}

#[test]
fn a_stop_signal_caught_and_raised_again_is_the_first_senders() {
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT] {
        let r = only(records(&[
            sent(10 * SEC, signal, SI_USER, SHIM, INIT),
            // The handler restores the default and raises it again: tgkill to itself.
            sent(10 * SEC + 500, signal, SI_TKILL, (INIT.tgid, CTR_A), INIT),
            exit_as(INIT, 10 * SEC + 900, u32::from(signal), role::INIT, 0),
        ]));
        assert_eq!(r.reason, Reason::Terminated, "signal {signal}");
        let sender = r.sender.expect("sender");
        assert_eq!((sender.pid, sender.kind), (SHIM.0, SenderKind::Host));
    }
    // Raised by itself with nobody sending it first: still its own doing.
    let r = only(records(&[
        sent(10 * SEC, SIGTERM, SI_TKILL, (INIT.tgid, CTR_A), INIT),
        exit_as(INIT, 10 * SEC + 900, u32::from(SIGTERM), role::INIT, 0),
    ]));
    assert_eq!(r.reason, Reason::Signaled);
}

#[test]
fn sigpipe_raised_by_the_kernel_without_siginfo_is_the_kernels() {
    let KernelEvent::Signal(mut pipe) = sent(10 * SEC, SIGPIPE, SI_USER, (INIT.tgid, CTR_A), INIT)
    else {
        unreachable!()
    };
    pipe.flags = signal_flags::NO_SIGINFO;
    let r = only(records(&[
        KernelEvent::Signal(pipe),
        exit_as(INIT, 10 * SEC + 900, u32::from(SIGPIPE), role::INIT, 0),
    ]));
    assert_eq!(r.reason, Reason::Signaled);
    assert_eq!(r.sender.expect("sender").kind, SenderKind::Kernel);
    // kill(getpid(), SIGPIPE) has a siginfo: the process itself.
    let r = only(records(&[
        sent(10 * SEC, SIGPIPE, SI_USER, (INIT.tgid, CTR_A), INIT),
        exit_as(INIT, 10 * SEC + 900, u32::from(SIGPIPE), role::INIT, 0),
    ]));
    assert_eq!(r.sender.expect("sender").kind, SenderKind::SelfSent);
}

#[test]
fn an_old_failed_exec_does_not_relabel_a_later_exit() {
    // A script tried a missing helper long ago, and exits 1 now: an Error, with context.
    let r = only(records(&[
        exec_failure(10 * SEC, INIT.tgid, CTR_A, libc::ENOENT, "/usr/bin/helper"),
        exited(INIT, 60 * SEC, 1, true),
    ]));
    assert_eq!(r.reason, Reason::Error);
    assert_eq!(
        r.exec_failure.map(|x| x.path).as_deref(),
        Some("/usr/bin/helper")
    );
    // A child's failed exec explains 127, not a shell's exit 1.
    let r = only(records(&[
        exec_failure(59 * SEC, 4300, CTR_A, libc::EACCES, "./noshebang"),
        exited(INIT, 60 * SEC, 1, true),
    ]));
    assert_eq!(r.reason, Reason::Error);
    let r = only(records(&[
        exec_failure(59 * SEC, 4300, CTR_A, libc::ENOENT, "/bin/gone"),
        exited(INIT, 60 * SEC, 127, true),
    ]));
    assert_eq!(r.reason, Reason::CommandNotFound);
    // Its own exec failing, then giving up at once: that exec is the cause.
    let r = only(records(&[
        exec_failure(60 * SEC, INIT.tgid, CTR_A, libc::ENOENT, "/app/start"),
        exited(INIT, 60 * SEC + 2_000_000, 1, true),
    ]));
    assert_eq!(r.reason, Reason::CommandNotFound);
}
