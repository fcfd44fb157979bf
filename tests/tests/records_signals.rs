//! Verdicts of deaths by signal, from the real `coroner` binary: who sent it (the host, another
//! container, the same container, the kernel, the process itself).
//! Needs root; run through `cargo xtask test` (or build `coroner` first).

use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::{
    Container, RECORD_WAIT, common, host_sender, killed, now_ns, victim_sender,
};
use coroner_tests::cgroups::Layout;
use coroner_tests::victim::{Reaped, reap, signal_pid};

/// [`killed`], and no OOM kill was involved.
fn killed_ok(
    agent: &mut Agent,
    container: &Container,
    args: &[&str],
    act: impl FnOnce(u32),
) -> (coroner_tests::agent::Record, Reaped) {
    let (record, reaped) = killed(agent, container, args, act).unwrap();
    assert!(record.field("oom").is_null(), "{}", record.json);
    (record, reaped)
}

/// Kills a `sleep` in `container` with signal `sig`, sent by `coroner-victim kill` in `from`
/// (another container of the pod, or `container` itself): the record and the sender's pid.
fn killed_from(
    agent: &mut Agent,
    container: &Container,
    from: &Container,
    sig: i32,
) -> (coroner_tests::agent::Record, u32) {
    let mut killer = 0;
    let (record, _) = killed_ok(agent, container, &["sleep", "30"], |pid| {
        let child = from
            .spawn(&["kill", &sig.to_string(), &pid.to_string()])
            .unwrap();
        killer = child.id();
        assert_eq!(
            reap(child).unwrap().exit_code(),
            Some(0),
            "the kill was sent"
        );
    });
    (record, killer)
}

#[test]
fn sigterm_from_the_host_is_terminated() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdCrio).unwrap();
    let mut sent = 0;
    let (record, reaped) = killed_ok(&mut agent, &container, &["sleep", "30"], |pid| {
        sent = now_ns();
        signal_pid(pid, libc::SIGTERM);
    });
    assert_eq!(reaped.signal(), Some(libc::SIGTERM));
    assert_eq!(record.reason(), "Terminated");
    host_sender(&record).unwrap();
    let sigterm = record.sigterm_ns().expect("sigterm_time");
    assert!(
        (sigterm - sent).abs() < 300_000_000,
        "sigterm_time {} vs sent at {sent}",
        record.field("sigterm_time")
    );
    assert!(
        record.field("sigkill_time").is_null() && record.field("grace_seconds").is_null(),
        "{}",
        record.json
    );
}

#[test]
fn sigkill_from_another_container_is_killed() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let other = container.sibling().unwrap();
    let (record, killer) = killed_from(&mut agent, &container, &other, libc::SIGKILL);
    assert_eq!(record.reason(), "Killed", "{}", record.json);
    victim_sender(&record, "other_container", killer, &other).unwrap();
    assert!(record.field("sigterm_time").is_null() && record.field("grace_seconds").is_null());
    assert!(
        record.sigkill_ns().is_some(),
        "sigkill_time: {}",
        record.json
    );
    let killer_record = agent.wait_for_pid(killer, RECORD_WAIT).unwrap();
    common(&killer_record, agent.node(), &other, killer, true).unwrap();
    assert_eq!(killer_record.reason(), "Completed");
}

#[test]
fn sigkill_from_the_same_container_is_killed() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let (record, killer) = killed_from(&mut agent, &container, &container, libc::SIGKILL);
    assert_eq!(record.reason(), "Killed", "{}", record.json);
    victim_sender(&record, "same_container", killer, &container).unwrap();
}

#[test]
fn sigint_from_another_container_is_terminated() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdCrio).unwrap();
    let other = container.sibling().unwrap();
    let (record, killer) = killed_from(&mut agent, &container, &other, libc::SIGINT);
    assert_eq!(record.reason(), "Terminated", "{}", record.json);
    victim_sender(&record, "other_container", killer, &other).unwrap();
}

#[test]
fn sigsegv_is_crashed_by_the_kernel() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let (record, reaped) = killed_ok(&mut agent, &container, &["segv"], |_| {});
    assert_eq!(reaped.signal(), Some(libc::SIGSEGV));
    assert_eq!(record.reason(), "Crashed");
    assert_eq!(record.sub("sender", "kind"), "kernel", "{}", record.json);
    assert!(record.field("sigterm_time").is_null() && record.field("sigkill_time").is_null());
}

#[test]
fn sigabrt_is_crashed_by_itself() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    let (record, reaped) = killed_ok(&mut agent, &container, &["abort"], |_| {});
    assert_eq!(reaped.signal(), Some(libc::SIGABRT));
    assert_eq!(record.reason(), "Crashed");
    victim_sender(&record, "self", record.pid(), &container).unwrap();
}

#[test]
fn sigusr1_from_the_host_is_signaled() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let (record, reaped) = killed_ok(&mut agent, &container, &["sleep", "30"], |pid| {
        signal_pid(pid, libc::SIGUSR1);
    });
    assert_eq!(reaped.signal(), Some(libc::SIGUSR1));
    assert_eq!(record.reason(), "Signaled");
    host_sender(&record).unwrap();
}

#[test]
fn sigterm_to_itself_is_signaled() {
    // docs/record.md: Terminated is a SIGTERM "from another process"; one a process raised itself
    // is any other signal's death.
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdCrio).unwrap();
    let (record, reaped) = killed_ok(&mut agent, &container, &["self-term"], |_| {});
    assert_eq!(reaped.signal(), Some(libc::SIGTERM));
    assert_eq!(record.reason(), "Signaled", "{}", record.json);
    victim_sender(&record, "self", record.pid(), &container).unwrap();
    assert!(
        record.field("sigterm_time").is_null(),
        "sigterm_time is for SIGTERMs from another process: {}",
        record.json
    );
}

/// Waits until `pid` runs `n` threads.
fn wait_threads(pid: u32, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|t| t.trim().parse().ok());
        if threads == Some(n) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} never ran {n} threads ({threads:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_multithreaded_process_has_one_record() {
    // Each thread exits on its own; the process dies once, with its last thread.
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let (record, _) = killed_ok(&mut agent, &container, &["threads", "8", "30"], |pid| {
        wait_threads(pid, 9);
        signal_pid(pid, libc::SIGTERM);
    });
    assert_eq!(record.reason(), "Terminated", "{}", record.json);
    host_sender(&record).unwrap();
    let pid = record.pid();
    let records = agent.stop().unwrap();
    let ours: Vec<_> = records
        .iter()
        .filter(|r| r.record.cgroup == container.path())
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one record for the process, none per thread: {ours:#?}"
    );
    assert_eq!(ours[0].pid(), pid);
}

#[test]
fn a_crash_in_a_worker_thread_is_crashed() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    let (record, reaped) = killed_ok(&mut agent, &container, &["thread-segv"], |_| {});
    assert_eq!(reaped.signal(), Some(libc::SIGSEGV));
    assert_eq!(record.reason(), "Crashed", "{}", record.json);
    assert_eq!(record.sub("sender", "kind"), "kernel", "{}", record.json);
    let records = agent.stop().unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.record.cgroup == container.path())
            .count(),
        1
    );
}
