//! Ordering, identity, duplicates, what is not recorded, and bounded state.

use std::time::Duration;

use agent_ebpf::KernelEvent;

use super::fixtures::*;
use crate::correlate::verdict::sig::*;
use crate::correlate::{Caps, ConfigError, Correlator, CorrelatorConfig};
use crate::record::Reason;

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
const MAIN: Proc = proc(4242, 7 * SEC, CTR_A);
const SHIM: (u32, u64) = (900, HOST);
const AT: u64 = 100 * SEC;

fn grace_period_events() -> Vec<KernelEvent> {
    vec![
        exec_failure(AT - 40 * SEC, 4300, CTR_A, libc::ENOENT, "/bin/hook"),
        sent(AT - 30 * SEC, SIGTERM, SI_USER, SHIM, MAIN),
        sent(AT - 5, SIGKILL, SI_USER, SHIM, MAIN),
        killed(MAIN, AT, SIGKILL, true),
    ]
}

#[test]
fn out_of_order_within_the_hold_gives_the_same_record() {
    let mut cg = FakeCgroups::new();
    let in_order = only(run(&mut correlator(), &mut cg, &grace_period_events()));
    assert_eq!(in_order.reason, Reason::GracePeriodExpired);
    let mut reversed = grace_period_events();
    reversed.reverse();
    assert_eq!(only(run(&mut correlator(), &mut cg, &reversed)), in_order);

    let oom_events = || {
        vec![
            KernelEvent::Oom(oom(AT - 20, MAIN, 4242, &[(CTR_A, LIMIT_64M, LIMIT_64M)])),
            sent(AT - 10, SIGKILL, SI_KERNEL, (4242, CTR_A), MAIN),
            killed(MAIN, AT, SIGKILL, true),
        ]
    };
    let in_order = only(run(&mut correlator(), &mut cg, &oom_events()));
    let mut reversed = oom_events();
    reversed.reverse();
    assert_eq!(only(run(&mut correlator(), &mut cg, &reversed)), in_order);
    assert_eq!(in_order.reason, Reason::OomKilled);
}

#[test]
fn an_exit_waits_out_the_hold_and_no_longer() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    c.ingest(&killed(MAIN, AT, SIGKILL, true), &mut cg);
    assert!(c.drain_ready(AT + HOLD_NS - 1, &mut cg).is_empty());
    // A straggler within the hold is used.
    c.ingest(&sent(AT - 3, SIGKILL, SI_USER, SHIM, MAIN), &mut cg);
    let r = only(c.drain_ready(AT + HOLD_NS, &mut cg));
    assert_eq!(r.sender.map(|s| s.pid), Some(900));
    // One after the record was final is counted, not used.
    c.ingest(&sent(AT - 2, SIGKILL, SI_USER, SHIM, MAIN), &mut cg);
    // A signal to the zombie (after the death) is neither.
    c.ingest(&sent(AT + 5, SIGKILL, SI_USER, SHIM, MAIN), &mut cg);
    assert_eq!(c.stats().late_events, 1);
    assert_eq!(c.sizes().signal_histories, 0);
}

#[test]
fn a_reused_pid_is_a_new_process() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let old = proc(4242, 7 * SEC, CTR_A);
    let new = proc(4242, 50 * SEC, CTR_A);
    // The old process was sent a SIGTERM and was never seen dying (a child's plain exit).
    c.ingest(&sent(10 * SEC, SIGTERM, SI_USER, SHIM, old), &mut cg);
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            sent(AT - 5, SIGKILL, SI_USER, SHIM, new),
            killed(new, AT, SIGKILL, true),
        ],
    ));
    assert_eq!((r.reason, r.sigterm_time), (Reason::Killed, None));
    // And each incarnation gets its own record.
    let again = proc(4242, AT + SEC, CTR_A);
    let r = only(run(
        &mut c,
        &mut cg,
        &[exited(again, AT + 2 * SEC, 0, true)],
    ));
    assert_eq!(r.reason, Reason::Completed);
    assert_eq!(c.stats().records, 2);
}

#[test]
fn duplicate_exits_make_one_record() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let exit = killed(MAIN, AT, SIGKILL, true);
    // Both held at once, and once more after the record.
    assert_eq!(run(&mut c, &mut cg, &[exit, exit]).len(), 1);
    assert!(run(&mut c, &mut cg, &[exit]).is_empty());
    assert_eq!(c.stats().duplicates, 2);
    // A second OOM event for the same victim is a duplicate too.
    let child = proc(4300, 8 * SEC, CTR_A);
    let kill = KernelEvent::Oom(oom(AT, child, 4300, &[]));
    assert_eq!(
        run(
            &mut c,
            &mut cg,
            &[kill, kill, killed(child, AT + 5, SIGKILL, false)]
        )
        .len(),
        1
    );
    assert_eq!(c.stats().duplicates, 3);
}

#[test]
fn deaths_outside_containers_are_counted_not_recorded() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let host = proc(77, SEC, HOST);
    let pod_level = proc(78, SEC, POD);
    let unknown = proc(79, SEC, GONE);
    let records = run(
        &mut c,
        &mut cg,
        &[
            sent(AT - 5, SIGKILL, SI_USER, SHIM, host),
            killed(host, AT, SIGKILL, true),
            killed(pod_level, AT, SIGTERM, true),
            killed(unknown, AT, SIGKILL, true),
        ],
    );
    assert!(records.is_empty());
    let s = c.stats();
    assert_eq!(
        (s.deaths_outside_containers, s.unresolved_memcgs, s.records),
        (2, 1, 0)
    );
    assert_eq!(
        c.sizes().signal_histories,
        0,
        "their histories are dropped with them"
    );
}

#[test]
fn children_are_recorded_only_when_a_signal_kills_them() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let child = proc(4300, 8 * SEC, CTR_A);
    let other = proc(4301, 8 * SEC, CTR_A);
    let records = run(
        &mut c,
        &mut cg,
        &[
            exited(child, AT, 1, false),
            sent(AT - 9, SIGTERM, SI_USER, (4242, CTR_A), other),
            killed(other, AT, SIGTERM, false),
        ],
    );
    let r = only(records);
    assert_eq!(
        (r.pid, r.main_process, r.reason),
        (4301, false, Reason::Terminated)
    );
    assert_eq!(c.stats().deaths_without_record, 1);
}

#[test]
fn sigterm_memory_outlives_a_long_grace_period_but_not_the_ttl() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let term = AT;
    let kill = AT + 3600 * SEC;
    c.ingest(&sent(term, SIGTERM, SI_USER, SHIM, MAIN), &mut cg);
    assert!(c.drain_ready(kill - 1, &mut cg).is_empty());
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            sent(kill, SIGKILL, SI_USER, SHIM, MAIN),
            killed(MAIN, kill + 9, SIGKILL, true),
        ],
    ));
    assert_eq!(
        (r.reason, r.grace_seconds),
        (Reason::GracePeriodExpired, Some(3600.0))
    );

    // Past the TTL (2 h untouched) the history is gone.
    let other = proc(5000, SEC, CTR_A);
    c.ingest(&sent(term, SIGTERM, SI_USER, SHIM, other), &mut cg);
    assert!(c.drain_ready(term + 2 * 3600 * SEC, &mut cg).is_empty());
    assert_eq!(
        (
            c.sizes().signal_histories,
            c.stats().signal_histories_expired
        ),
        (0, 1)
    );
}

#[test]
fn flush_hands_out_everything_still_waiting() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    c.ingest(&killed(MAIN, AT, SIGKILL, true), &mut cg);
    c.ingest(
        &KernelEvent::Oom(oom(AT, proc(4300, SEC, CTR_A), 1, &[])),
        &mut cg,
    );
    let records = c.flush(&mut cg);
    // The exit is recorded; the OOM kill whose exit never came is counted, not made up.
    assert_eq!(records.len(), 1);
    assert_eq!(c.stats().oom_kills_without_exit, 1);
    assert_eq!(
        c.sizes(),
        crate::correlate::TableSizes {
            finished: 1,
            ..Default::default()
        }
    );
}

#[test]
fn malformed_events_are_counted() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let mut bad = signal(AT, 9, SI_USER, SHIM, MAIN);
    bad.sig = 65;
    c.ingest(&KernelEvent::Signal(bad), &mut cg);
    c.ingest(&exec_failure(AT, 1, CTR_A, 0, "x"), &mut cg);
    assert_eq!(c.stats().malformed_events, 2);
    assert_eq!(
        (c.sizes().signal_histories, c.sizes().exec_failure_memcgs),
        (0, 0)
    );
}

#[test]
fn bad_configs_are_errors() {
    let mut config = config();
    config.page_size = 3000;
    assert_eq!(
        Correlator::new(config).err(),
        Some(ConfigError::PageSize(3000))
    );
    let mut config = super::fixtures::config();
    config.caps.finished = 0;
    assert_eq!(
        Correlator::new(config).err(),
        Some(ConfigError::ZeroCap("finished"))
    );
}

const CAP: usize = 1024;
const PROCESSES: u32 = 100_000;

fn small_caps() -> CorrelatorConfig {
    let mut config = config();
    config.caps = Caps {
        signal_histories: CAP,
        pending_exits: CAP,
        oom_victims: CAP,
        exec_failure_memcgs: CAP,
        finished: CAP,
        cause_memcgs: CAP,
    };
    config.hold = Duration::from_hours(1);
    config
}

#[test]
fn tables_stay_at_their_caps_under_100k_processes() {
    let mut c = Correlator::new(small_caps()).expect("config");
    let mut cg = FakeCgroups::new();
    let mut records = Vec::new();
    for i in 0..PROCESSES {
        let at = AT + u64::from(i) * 1000;
        // Signalled and never seen dying; an exec failure in a fresh memcg; an exit held
        // for an hour; an OOM kill whose exit never comes.
        let p = proc(10_000 + i, SEC, CTR_A);
        c.ingest(&sent(at, SIGTERM, SI_USER, SHIM, p), &mut cg);
        c.ingest(
            &exec_failure(at, i, 1_000_000 + u64::from(i), libc::ENOENT, "x"),
            &mut cg,
        );
        c.ingest(&exited(proc(200_000 + i, SEC, CTR_A), at, 0, true), &mut cg);
        c.ingest(
            &KernelEvent::Oom(oom(at, proc(400_000 + i, SEC, CTR_A), 1, &[])),
            &mut cg,
        );
        if i % 1000 == 0 {
            records.extend(c.drain_ready(at, &mut cg));
        }
    }
    let sizes = c.sizes();
    assert_eq!(sizes.signal_histories, CAP);
    assert_eq!(sizes.exec_failure_memcgs, CAP);
    assert_eq!(sizes.pending_exits, CAP);
    assert_eq!(sizes.oom_victims, CAP);
    assert_eq!(sizes.finished, CAP);
    let forced = (PROCESSES as usize - CAP) as u64;
    let s = c.stats();
    assert_eq!(s.evictions.signal_histories, forced);
    assert_eq!(s.evictions.exec_failure_memcgs, forced);
    assert_eq!(s.evictions.pending_exits, forced);
    assert_eq!(s.evictions.oom_victims, forced);
    // Evicted exits were finalised early, not dropped; evicted OOM kills without an exit are
    // counted, never made into records.
    records.extend(c.drain_ready(AT, &mut cg));
    assert_eq!(records.len() as u64, forced);
    assert_eq!(s.records, forced);
    assert_eq!(s.oom_kills_without_exit, forced);
    assert_eq!(s.evictions.finished, forced - CAP as u64);
}
