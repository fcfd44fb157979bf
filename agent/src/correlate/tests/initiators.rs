//! The kernel's part of the initiator, through the whole correlator: what it decides at once,
//! and what it leaves to the Kubernetes API (`host`, `unknown`).

use super::fixtures::*;
use crate::correlate::verdict::sig::*;
use crate::record::{Initiator, Reason};

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
const SI_TKILL: i32 = -6;
const SEGV_MAPERR: i32 = 1;

const MAIN: Proc = proc(4242, 7 * SEC, CTR_A);
const SHIM: (u32, u64) = (900, HOST);
const SIDECAR: (u32, u64) = (5000, CTR_B);
const SIBLING: (u32, u64) = (4300, CTR_A);

/// The signal as the kernel reports one it dropped (`TRACE_SIGNAL_IGNORED`).
fn ignored(mut event: agent_ebpf::KernelEvent) -> agent_ebpf::KernelEvent {
    if let agent_ebpf::KernelEvent::Signal(signal) = &mut event {
        signal.result = 1;
    }
    event
}

fn one(events: &[agent_ebpf::KernelEvent]) -> crate::record::TerminationRecord {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    only(run(&mut c, &mut cg, events))
}

#[test]
fn what_the_kernel_decides_and_what_it_leaves_to_the_api() {
    let at = 50 * SEC;
    let cases: Vec<(&str, Vec<agent_ebpf::KernelEvent>, Initiator)> = vec![
        (
            "exit, no signal",
            vec![exited(MAIN, at, 1, true)],
            Initiator::Exited,
        ),
        (
            "a clean exit after the runtime's SIGTERM: the API tells who asked",
            vec![
                sent(at - SEC, SIGTERM, SI_USER, SHIM, MAIN),
                exited(MAIN, at, 0, true),
            ],
            Initiator::Host,
        ),
        (
            "a clean exit after another container's SIGQUIT",
            vec![
                sent(at - SEC, SIGQUIT, SI_USER, SIDECAR, MAIN),
                exited(MAIN, at, 0, true),
            ],
            Initiator::AnotherContainer,
        ),
        (
            "a clean exit after another container's SIGINT the process ignored",
            vec![
                ignored(sent(at - SEC, SIGINT, SI_USER, SIDECAR, MAIN)),
                exited(MAIN, at, 0, true),
            ],
            Initiator::Exited,
        ),
        (
            "a clean exit after a sibling's SIGTERM",
            vec![
                sent(at - SEC, SIGTERM, SI_USER, SIBLING, MAIN),
                exited(MAIN, at, 0, true),
            ],
            Initiator::SelfInflicted,
        ),
        (
            "a tty's SIGHUP asks, the process decides",
            vec![
                sent(at - SEC, SIGHUP, SI_KERNEL, (77, HOST), MAIN),
                exited(MAIN, at, 0, true),
            ],
            Initiator::Exited,
        ),
        (
            "SIGTERM then SIGKILL from the runtime",
            vec![
                sent(at - 30 * SEC, SIGTERM, SI_USER, SHIM, MAIN),
                sent(at - SEC, SIGKILL, SI_USER, SHIM, MAIN),
                killed(MAIN, at, SIGKILL, true),
            ],
            Initiator::Host,
        ),
        (
            "a fault",
            vec![
                sent(at - 10, SIGSEGV, SEGV_MAPERR, (4242, CTR_A), MAIN),
                killed(MAIN, at, SIGSEGV, true),
            ],
            Initiator::Kernel,
        ),
        (
            "abort()",
            vec![
                sent(at - 10, SIGABRT, SI_TKILL, (4242, CTR_A), MAIN),
                killed(MAIN, at, SIGABRT, true),
            ],
            Initiator::SelfInflicted,
        ),
        (
            "killed by a sidecar",
            vec![
                sent(at - 10, SIGKILL, SI_USER, SIDECAR, MAIN),
                killed(MAIN, at, SIGKILL, true),
            ],
            Initiator::AnotherContainer,
        ),
        (
            "a SIGKILL whose sender was never seen",
            vec![killed(MAIN, at, SIGKILL, true)],
            Initiator::Unknown,
        ),
    ];
    for (name, events, want) in cases {
        let r = one(&events);
        assert_eq!(r.initiator, want, "{name}: {r:?}");
        assert_eq!(
            r.grace_allowed_seconds, None,
            "{name}: only the API knows the grace"
        );
    }
}

#[test]
fn the_oom_killer_is_the_initiator_of_an_oom_kill() {
    let at = 60 * SEC;
    let r = one(&[
        agent_ebpf::KernelEvent::Oom(oom(at, MAIN, 4242, &[(CTR_A, 17_000, LIMIT_64M)])),
        sent(at + 10, SIGKILL, SI_KERNEL, (4242, CTR_A), MAIN),
        killed(MAIN, at + 500_000, SIGKILL, true),
    ]);
    assert_eq!(
        (r.reason, r.initiator),
        (Reason::OomKilled, Initiator::OomKiller)
    );
}
