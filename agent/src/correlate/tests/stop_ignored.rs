//! `stop_signal_ignored`: a stop signal from another process that the kernel dropped because of
//! how the process treats it — never one dropped because the process was already exiting, nor
//! one it sent itself or the kernel raised.

use agent_ebpf::{KernelEvent, SignalEvent, signal_flags};

use super::fixtures::*;
use crate::correlate::verdict::sig::*;
use crate::record::{Reason, TerminationRecord};

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
/// `TRACE_SIGNAL_IGNORED`, `TRACE_SIGNAL_ALREADY_PENDING`.
const IGNORED: u32 = 1;
const ALREADY_PENDING: u32 = 2;

const MAIN: Proc = proc(4242, 7 * SEC, CTR_A);
const SHIM: (u32, u64) = (900, HOST);
const TERM_AT: u64 = 70 * SEC;
const KILL_AT: u64 = 100 * SEC;

fn dropped(at: u64, sig: u8, code: i32, sender: (u32, u64), flags: u32) -> KernelEvent {
    KernelEvent::Signal(SignalEvent {
        result: IGNORED,
        flags,
        ..signal(at, sig, code, sender, MAIN)
    })
}

fn one(events: &[KernelEvent]) -> TerminationRecord {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    only(run(&mut c, &mut cg, events))
}

/// `sh -c 'sleep 600'`: PID 1 without a handler, the runtime's SIGTERM dropped, SIGKILL at the
/// end of the grace period.
#[test]
fn pid_1_without_a_handler_drops_the_runtimes_sigterm() {
    let r = one(&[
        dropped(TERM_AT, SIGTERM, SI_USER, SHIM, 0),
        sent(KILL_AT, SIGKILL, SI_USER, SHIM, MAIN),
        killed(MAIN, KILL_AT + 1000, SIGKILL, true),
    ]);
    assert_eq!(r.reason, Reason::GracePeriodExpired);
    assert!(r.stop_signal_ignored, "{r:#?}");
}

#[test]
fn a_process_with_sig_ign_drops_sigint_too() {
    let r = one(&[
        dropped(
            TERM_AT,
            SIGINT,
            SI_USER,
            SHIM,
            signal_flags::HANDLER_IGNORED,
        ),
        sent(KILL_AT, SIGKILL, SI_USER, SHIM, MAIN),
        killed(MAIN, KILL_AT + 1000, SIGKILL, true),
    ]);
    assert!(r.stop_signal_ignored, "{r:#?}");
}

/// Pitfall: `prepare_signal` drops every signal sent to a process already exiting; the
/// programs flag it (`TARGET_EXITING`) and it says nothing about the process.
#[test]
fn a_sigterm_dropped_because_the_process_was_exiting_does_not_count() {
    let r = one(&[
        sent(TERM_AT, SIGTERM, SI_USER, SHIM, MAIN),
        dropped(
            TERM_AT + 1000,
            SIGTERM,
            SI_USER,
            SHIM,
            signal_flags::TARGET_EXITING,
        ),
        killed(MAIN, TERM_AT + 2000, SIGTERM, true),
    ]);
    assert_eq!(r.reason, Reason::Terminated);
    assert!(!r.stop_signal_ignored, "{r:#?}");
}

#[test]
fn a_handled_or_merged_sigterm_is_not_ignored() {
    let r = one(&[
        sent(TERM_AT, SIGTERM, SI_USER, SHIM, MAIN),
        KernelEvent::Signal(SignalEvent {
            result: ALREADY_PENDING,
            ..signal(TERM_AT + 10, SIGTERM, SI_USER, SHIM, MAIN)
        }),
        exited(MAIN, TERM_AT + SEC, 0, true),
    ]);
    assert_eq!(r.reason, Reason::Completed);
    assert!(!r.stop_signal_ignored, "{r:#?}");
}

/// Only another process's stop signal counts: not one the process sent itself, not one the
/// kernel raised (a tty's SIGHUP), not SIGKILL, not one dropped after the death.
#[test]
fn only_a_stop_from_another_process_before_the_death_counts() {
    let cases = [
        (
            "self",
            dropped(TERM_AT, SIGTERM, SI_USER, (MAIN.tgid, CTR_A), 0),
        ),
        ("kernel", dropped(TERM_AT, SIGHUP, SI_KERNEL, SHIM, 0)),
        (
            "not a stop signal",
            dropped(TERM_AT, SIGSEGV, SI_USER, SHIM, 0),
        ),
        (
            "after the death",
            dropped(KILL_AT + 2000, SIGTERM, SI_USER, SHIM, 0),
        ),
    ];
    for (what, event) in cases {
        let r = one(&[
            sent(KILL_AT, SIGKILL, SI_USER, SHIM, MAIN),
            event,
            killed(MAIN, KILL_AT + 1000, SIGKILL, true),
        ]);
        assert!(!r.stop_signal_ignored, "{what}: {r:#?}");
    }
}
