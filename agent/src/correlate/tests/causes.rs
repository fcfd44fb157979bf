//! `cause`: the child's death that explains its init's exit, and each case that must not be
//! taken for one (a stop, the same OOM kill, a death too long before, a forgotten container).

use agent_ebpf::KernelEvent;

use super::fixtures::*;
use crate::correlate::verdict::sig::*;
use crate::correlate::{CAUSE_WINDOW_NS, Caps, Correlator};
use crate::record::{OomScope, Reason, Role, TerminationRecord};

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
const SEGV_MAPERR: i32 = 1;

fn sigpipe() -> u8 {
    u8::try_from(libc::SIGPIPE).expect("a signal number")
}

const INIT: Proc = proc(4200, 7 * SEC, CTR_A);
const CHILD: Proc = proc(4242, 8 * SEC, CTR_A);
const OTHER_CHILD: Proc = proc(4250, 9 * SEC, CTR_A);
const SHIM: (u32, u64) = (900, HOST);
const AT: u64 = 100 * SEC;
/// The shell's `wait()` returns and it exits 0.2 s after its child died.
const RELAY: u64 = 200_000_000;

fn container_at_limit() -> Vec<(u64, u64, u64)> {
    vec![
        (CTR_A, LIMIT_64M - 3, LIMIT_64M),
        (POD, LIMIT_64M, UNLIMITED),
    ]
}

/// The OOM killer chooses `victim` and kills it; it dies `AT`.
fn oom_killed(victim: Proc, main: bool) -> Vec<KernelEvent> {
    vec![
        KernelEvent::Oom(oom(AT - 1000, victim, victim.tgid, &container_at_limit())),
        sent(
            AT - 900,
            SIGKILL,
            SI_KERNEL,
            (victim.tgid, victim.memcg),
            victim,
        ),
        killed(victim, AT, SIGKILL, main),
    ]
}

fn crashed(victim: Proc, at: u64) -> Vec<KernelEvent> {
    vec![
        sent(
            at - 100,
            SIGSEGV,
            SEGV_MAPERR,
            (victim.tgid, victim.memcg),
            victim,
        ),
        killed(victim, at, SIGSEGV, false),
    ]
}

fn records(events: &[KernelEvent]) -> Vec<TerminationRecord> {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    run(&mut c, &mut cg, events)
}

fn init_of(records: &[TerminationRecord]) -> &TerminationRecord {
    let inits: Vec<_> = records.iter().filter(|r| r.role == Role::Init).collect();
    assert_eq!(inits.len(), 1, "{records:#?}");
    inits[0]
}

#[test]
fn a_shell_relaying_its_childs_oom_kill_names_it() {
    let mut events = oom_killed(CHILD, false);
    events.push(exited(INIT, AT + RELAY, 137, true));
    let all = records(&events);
    let init = init_of(&all);
    // The init's own verdict stays what the kernel says.
    assert_eq!((init.reason, init.exit_code), (Reason::Error, Some(137)));
    let cause = init
        .cause
        .as_ref()
        .expect("the child's OOM kill explains the exit");
    assert_eq!((cause.pid, cause.reason), (CHILD.tgid, Reason::OomKilled));
    assert_eq!((cause.comm.as_str(), cause.signal), ("app", Some(SIGKILL)));
    let oom = cause.oom.as_ref().expect("the child's OOM kill");
    assert_eq!(
        (oom.scope, oom.memory_limit_bytes),
        (OomScope::Memcg, Some(64 << 20))
    );
    assert!((cause.seconds_before - 0.2).abs() < 1e-6, "{cause:?}");
    let child = all.iter().find(|r| r.pid == CHILD.tgid).expect("child");
    assert!(child.cause.is_none(), "a child's record has no cause");
}

#[test]
fn a_tini_style_init_relaying_a_crash_names_it() {
    let mut events = crashed(CHILD, AT);
    events.push(exited(INIT, AT + RELAY, 128 + SIGSEGV, true));
    let all = records(&events);
    let cause = init_of(&all)
        .cause
        .clone()
        .expect("the crash explains the exit");
    assert_eq!(
        (cause.pid, cause.reason, cause.signal, cause.oom),
        (CHILD.tgid, Reason::Crashed, Some(SIGSEGV), None)
    );
}

#[test]
fn an_init_that_re_raises_its_childs_signal_on_itself_gets_the_cause() {
    let mut events = crashed(CHILD, AT);
    events.push(sent(AT + 1000, SIGSEGV, SI_USER, (INIT.tgid, CTR_A), INIT));
    events.push(killed(INIT, AT + RELAY, SIGSEGV, true));
    let all = records(&events);
    let init = init_of(&all);
    assert_eq!(init.reason, Reason::Crashed);
    assert_eq!(init.cause.as_ref().map(|c| c.pid), Some(CHILD.tgid));
}

/// Pitfall: the runtime stops a container by killing every process in it (`runc kill --all`):
/// the children's deaths are the stop's, not a cause.
#[test]
fn children_killed_by_the_runtime_are_no_cause() {
    let all = records(&[
        sent(AT - 100, SIGKILL, SI_USER, SHIM, CHILD),
        killed(CHILD, AT, SIGKILL, false),
        exited(INIT, AT + RELAY, 137, true),
    ]);
    assert!(init_of(&all).cause.is_none(), "{all:#?}");
}

/// Pitfall: tini forwards the runtime's SIGTERM to its child (a sender in the same container)
/// and exits 143 after it: the stop explains the exit, not the child.
#[test]
fn an_init_stopped_from_outside_gets_no_cause() {
    let all = records(&[
        sent(AT - SEC, SIGTERM, SI_USER, SHIM, INIT),
        sent(AT - 100, SIGTERM, SI_USER, (INIT.tgid, CTR_A), CHILD),
        killed(CHILD, AT, SIGTERM, false),
        exited(INIT, AT + RELAY, 128 + SIGTERM, true),
    ]);
    let child = all.iter().find(|r| r.pid == CHILD.tgid).expect("child");
    assert_eq!(child.reason, Reason::Terminated);
    assert!(init_of(&all).cause.is_none(), "{all:#?}");
}

/// Pitfall: with `memory.oom.group` the OOM killer kills the whole container, the init too:
/// it keeps its own `OOMKilled` and no cause.
#[test]
fn an_init_oom_killed_with_its_child_keeps_its_own_verdict() {
    let mut events = oom_killed(CHILD, false);
    events.extend([
        KernelEvent::Oom(oom(AT + 10, INIT, CHILD.tgid, &container_at_limit())),
        sent(AT + 20, SIGKILL, SI_KERNEL, (CHILD.tgid, CTR_A), INIT),
        killed(INIT, AT + 1000, SIGKILL, true),
    ]);
    let all = records(&events);
    let init = init_of(&all);
    assert_eq!(init.reason, Reason::OomKilled);
    assert!(init.cause.is_none(), "{init:#?}");
}

#[test]
fn an_init_that_crashed_itself_gets_no_cause() {
    let mut events = crashed(CHILD, AT);
    events.extend([
        sent(AT + 100, SIGSEGV, SEGV_MAPERR, (INIT.tgid, CTR_A), INIT),
        killed(INIT, AT + RELAY, SIGSEGV, true),
    ]);
    assert!(init_of(&records(&events)).cause.is_none());
}

#[test]
fn a_death_outside_the_window_or_a_clean_exit_is_no_cause() {
    let mut events = crashed(CHILD, AT);
    events.push(exited(INIT, AT + CAUSE_WINDOW_NS + 1, 1, true));
    assert!(
        init_of(&records(&events)).cause.is_none(),
        "too long before"
    );

    let mut events = crashed(CHILD, AT);
    events.push(exited(INIT, AT + RELAY, 0, true));
    assert!(init_of(&records(&events)).cause.is_none(), "exit 0");

    let mut events = crashed(proc(4242, 8 * SEC, CTR_B), AT);
    events.push(exited(INIT, AT + RELAY, 1, true));
    assert!(
        init_of(&records(&events)).cause.is_none(),
        "another container"
    );
}

/// Of two children's deaths, the one whose status the init relayed.
#[test]
fn the_relayed_status_picks_among_several_deaths() {
    let mut events = crashed(CHILD, AT);
    events.extend([
        sent(AT + 100, SIGKILL, SI_USER, (INIT.tgid, CTR_A), OTHER_CHILD),
        killed(OTHER_CHILD, AT + 1000, SIGKILL, false),
        exited(INIT, AT + RELAY, 128 + SIGSEGV, true),
    ]);
    let all = records(&events);
    assert_eq!(
        init_of(&all).cause.as_ref().map(|c| c.pid),
        Some(CHILD.tgid)
    );

    // Without a match, the latest crash or OOM kill: the later kill is relayed by nobody.
    let mut events = crashed(CHILD, AT);
    events.extend([
        sent(AT + 100, SIGKILL, SI_USER, (INIT.tgid, CTR_A), OTHER_CHILD),
        killed(OTHER_CHILD, AT + 1000, SIGKILL, false),
        exited(INIT, AT + RELAY, 1, true),
    ]);
    let all = records(&events);
    let cause = init_of(&all).cause.clone().expect("cause");
    assert_eq!((cause.pid, cause.reason), (CHILD.tgid, Reason::Crashed));
}

/// A pipeline's SIGPIPE (`yes | head -1`) before an unrelated `exit 1` is no cause; relayed
/// (`exit $?`, 141) it is.
#[test]
fn a_signal_death_that_is_not_news_explains_only_an_exit_that_relays_it() {
    let pipe = |init_status: u8| {
        let mut broken = signal(AT - 100, sigpipe(), SI_USER, (CHILD.tgid, CTR_A), CHILD);
        broken.flags = agent_ebpf::signal_flags::NO_SIGINFO;
        let events = [
            KernelEvent::Signal(broken),
            killed(CHILD, AT, sigpipe(), false),
            exited(INIT, AT + RELAY, init_status, true),
        ];
        let all = records(&events);
        init_of(&all).cause.clone()
    };
    assert!(pipe(1).is_none());
    let relayed = pipe(128 + sigpipe()).expect("relayed");
    assert_eq!(
        (relayed.reason, relayed.signal),
        (Reason::Signaled, Some(sigpipe()))
    );
}

/// Pitfall: the init's exit may be consumed before its child's (another CPU) within the hold;
/// the child's death is still known when the init's record is assembled.
#[test]
fn events_out_of_order_within_the_hold_still_give_the_cause() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let init_exit = exited(INIT, AT + HOLD_NS / 2, 137, true);
    c.ingest(&init_exit, &mut cg);
    for e in oom_killed(CHILD, false) {
        c.ingest(&e, &mut cg);
    }
    let all = c.drain_ready(AT + 2 * HOLD_NS, &mut cg);
    let cause = init_of(&all).cause.clone().expect("cause");
    assert_eq!((cause.pid, cause.reason), (CHILD.tgid, Reason::OomKilled));
}

/// Pitfall: the table is bounded per container memcg; a container pushed out is counted, and
/// its init's record then has no cause rather than another container's.
#[test]
fn the_cause_table_is_bounded_and_counts_what_it_forgets() {
    let mut config = config();
    config.caps = Caps {
        cause_memcgs: 1,
        ..Caps::default()
    };
    let mut c = Correlator::new(config).expect("config");
    let mut cg = FakeCgroups::new();
    let other = proc(5300, 8 * SEC, CTR_B);
    let mut events = crashed(CHILD, AT);
    events.extend(crashed(other, AT + 1000));
    events.push(exited(INIT, AT + RELAY, 139, true));
    let all = run(&mut c, &mut cg, &events);
    assert!(init_of(&all).cause.is_none(), "{all:#?}");
    assert_eq!(c.stats().evictions.cause_memcgs, 1);
    assert_eq!(c.sizes().cause_memcgs, 1, "container B's death is kept");
}

/// The init's death ends its container's entry.
#[test]
fn an_inits_death_forgets_its_containers_deaths() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let mut events = crashed(CHILD, AT);
    events.push(exited(INIT, AT + RELAY, 139, true));
    run(&mut c, &mut cg, &events);
    assert_eq!(c.sizes().cause_memcgs, 0);
}
