//! The SIGTERM → SIGKILL timing from the real `coroner` binary: `sigterm_time`,
//! `sigkill_time`, `grace_seconds` against the pauses the test really made, and the
//! `GracePeriodExpired` verdict. Needs root; run through `cargo xtask test` (or build
//! `coroner` first).

use std::time::Duration;

use coroner_tests::agent::expect::{
    Container, host_sender, killed, now_ns, victim_sender, wait_ignoring,
};
use coroner_tests::agent::{Agent, Record};
use coroner_tests::cgroups::Layout;
use coroner_tests::victim::{reap, signal_pid};

/// How far a time in the record may be from the moment the test sent the signal.
const SLACK_NS: i128 = 300_000_000;

/// Nanoseconds as seconds.
#[expect(
    clippy::cast_precision_loss,
    reason = "a pause of seconds in nanoseconds fits an f64 exactly"
)]
fn secs(ns: i128) -> f64 {
    ns as f64 / 1e9
}

/// Checks `sigterm_time` ≈ `term_at`, `sigkill_time` ≈ `kill_at`, `grace_seconds` within
/// 0.3 s of the real pause and equal to `sigkill_time − sigterm_time`.
fn assert_timing(record: &Record, term_at: i128, kill_at: i128) {
    let term = record
        .sigterm_ns()
        .unwrap_or_else(|| panic!("sigterm_time: {}", record.json));
    let kill = record
        .sigkill_ns()
        .unwrap_or_else(|| panic!("sigkill_time: {}", record.json));
    assert!(
        (term - term_at).abs() < SLACK_NS,
        "sigterm_time {} vs {term_at}",
        record.field("sigterm_time")
    );
    assert!(
        (kill - kill_at).abs() < SLACK_NS,
        "sigkill_time {} vs {kill_at}",
        record.field("sigkill_time")
    );
    let pause = secs(kill_at - term_at);
    let grace = record
        .record
        .grace_seconds
        .unwrap_or_else(|| panic!("grace_seconds: {}", record.json));
    assert!(
        (grace - pause).abs() <= 0.3,
        "grace_seconds {grace} vs the real pause {pause}"
    );
    let between = secs(kill - term);
    assert!(
        (grace - between).abs() < 1e-3,
        "grace_seconds {grace} is sigkill_time − sigterm_time ({between})"
    );
}

#[test]
fn sigterm_ignored_then_sigkill_is_grace_period_expired() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    let (mut term_at, mut kill_at) = (0, 0);
    let (record, reaped) = killed(&mut agent, &container, &["ignore-term", "30"], |pid| {
        wait_ignoring(pid, libc::SIGTERM).unwrap();
        term_at = now_ns();
        signal_pid(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(1500));
        kill_at = now_ns();
        signal_pid(pid, libc::SIGKILL);
    })
    .unwrap();
    assert_eq!(reaped.signal(), Some(libc::SIGKILL));
    assert_eq!(record.reason(), "GracePeriodExpired", "{}", record.json);
    host_sender(&record).unwrap();
    assert_timing(&record, term_at, kill_at);
}

#[test]
fn the_grace_period_runs_from_the_first_sigterm() {
    // A second SIGTERM (a person's `kill`, a retry) does not restart the clock.
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdCrio).unwrap();
    let (mut term_at, mut kill_at) = (0, 0);
    let (record, _) = killed(&mut agent, &container, &["ignore-term", "30"], |pid| {
        wait_ignoring(pid, libc::SIGTERM).unwrap();
        term_at = now_ns();
        signal_pid(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(700));
        signal_pid(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        kill_at = now_ns();
        signal_pid(pid, libc::SIGKILL);
    })
    .unwrap();
    assert_eq!(record.reason(), "GracePeriodExpired", "{}", record.json);
    assert_timing(&record, term_at, kill_at);
}

#[test]
fn sigterm_from_the_host_then_sigkill_from_another_container() {
    // The kubelet asks, the runtime (or anyone else) kills: still the grace period that ran
    // out, and the sender is the one of the SIGKILL.
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let other = container.sibling().unwrap();
    let (mut term_at, mut kill_at, mut killer) = (0, 0, 0);
    let (record, _) = killed(&mut agent, &container, &["ignore-term", "30"], |pid| {
        wait_ignoring(pid, libc::SIGTERM).unwrap();
        term_at = now_ns();
        signal_pid(pid, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(800));
        kill_at = now_ns();
        let child = other.spawn(&["kill", "9", &pid.to_string()]).unwrap();
        killer = child.id();
        reap(child).unwrap();
    })
    .unwrap();
    assert_eq!(record.reason(), "GracePeriodExpired", "{}", record.json);
    victim_sender(&record, "other_container", killer, &other).unwrap();
    assert_timing(&record, term_at, kill_at);
}

#[test]
fn a_sigterm_survived_is_on_the_record_of_a_clean_exit() {
    // The process ignored the SIGTERM and finished on its own: Completed, and the record
    // still says when it was asked to stop.
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let mut term_at = 0;
    let (record, reaped) = killed(&mut agent, &container, &["ignore-term", "0.5"], |pid| {
        wait_ignoring(pid, libc::SIGTERM).unwrap();
        term_at = now_ns();
        signal_pid(pid, libc::SIGTERM);
    })
    .unwrap();
    assert_eq!(reaped.exit_code(), Some(0));
    assert_eq!(record.reason(), "Completed", "{}", record.json);
    assert!(
        record.field("sender").is_null(),
        "no signal killed it: {}",
        record.json
    );
    let term = record
        .sigterm_ns()
        .unwrap_or_else(|| panic!("sigterm_time: {}", record.json));
    assert!(
        (term - term_at).abs() < SLACK_NS,
        "sigterm_time {} vs {term_at}",
        record.field("sigterm_time")
    );
    assert!(record.field("sigkill_time").is_null() && record.field("grace_seconds").is_null());
}
