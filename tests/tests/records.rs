//! Verdicts of exits and OOM kills, from the real `coroner` binary: each test
//! starts an agent, stages a death in a kubelet-style memory cgroup the way a runtime shim
//! would (the test stays outside), and checks the record against what it did and what
//! `wait4` saw. Needs root; run through `cargo xtask test` (or build `coroner` first).

use std::time::Duration;

use coroner_tests::agent::expect::{
    Container, common, death, main_process, main_process_in, quiet,
};
use coroner_tests::agent::{Agent, Record};
use coroner_tests::cgroups::Layout;
use coroner_tests::victim::reap;

const WAIT: Duration = Duration::from_secs(10);
const MIB: u64 = 1 << 20;

#[test]
fn exit_0_is_completed_with_the_peak_rss() {
    let mut agent = Agent::start().unwrap();
    let (container, record, reaped) =
        main_process_in(&mut agent, Layout::CgroupfsBurstable, &["rss", "32"]).unwrap();
    assert_eq!(reaped.exit_code(), Some(0));
    assert_eq!(record.reason(), "Completed");
    quiet(&record).unwrap();
    assert!(record.field("exec_failure").is_null());
    let peak = record.record.peak_rss_bytes;
    let wait4 = reaped.maxrss_kib as u64 * 1024;
    assert!(
        peak.abs_diff(wait4) * 20 <= wait4,
        "peak_rss_bytes {peak} vs wait4's {wait4}"
    );
    assert!(
        peak > 32 * MIB,
        "the 32 MiB touched show in peak_rss_bytes {peak}"
    );
    let cg_peak = record
        .record
        .container_memory_peak_bytes
        .expect("container_memory_peak_bytes");
    assert!(
        cg_peak > 32 * MIB,
        "container_memory_peak_bytes {cg_peak} holds the 32 MiB"
    );
    assert_eq!(
        record.record.container_memory_limit_bytes, None,
        "no limit was set: {}",
        record.json
    );
    drop(container);
    let all = agent.stop().unwrap();
    assert_eq!(
        all.iter().filter(|r| r.pid() == record.pid()).count(),
        1,
        "one record per death"
    );
}

#[test]
fn exit_1_is_error() {
    let mut agent = Agent::start().unwrap();
    let (_container, record, _) =
        main_process_in(&mut agent, Layout::SystemdContainerd, &["exit", "1"]).unwrap();
    assert_eq!(record.reason(), "Error");
    assert_eq!(record.record.exit_code, Some(1));
    quiet(&record).unwrap();
    assert!(record.field("exec_failure").is_null());
}

const LIMIT: u64 = 64 * MIB;

/// `oom` of a kill at a 64 MiB limit set on `limit_cgroup`.
fn assert_memcg_oom(record: &Record, limit_cgroup: &str) {
    assert_eq!(record.reason(), "OOMKilled", "{}", record.json);
    assert_eq!(record.record.signal, Some(9));
    assert_eq!(record.record.exit_status, 137);
    assert_eq!(record.sub("oom", "scope"), "memcg", "{}", record.json);
    assert_eq!(
        record.sub("oom", "memory_limit_bytes"),
        LIMIT,
        "{}",
        record.json
    );
    assert_eq!(
        record.sub("oom", "limit_cgroup"),
        limit_cgroup,
        "{}",
        record.json
    );
    let rss = record
        .sub("oom", "victim_rss_bytes")
        .as_u64()
        .expect("victim_rss_bytes");
    assert!(
        rss > LIMIT * 8 / 10 && rss < LIMIT * 11 / 10,
        "victim_rss_bytes {rss} near the {LIMIT} limit"
    );
    let parts: u64 = ["anon_rss_bytes", "file_rss_bytes", "shmem_rss_bytes"]
        .iter()
        .map(|f| {
            record
                .sub("oom", f)
                .as_u64()
                .unwrap_or_else(|| panic!("oom.{f}: {}", record.json))
        })
        .sum();
    assert_eq!(parts, rss, "victim_rss_bytes is anon + file + shmem");
    // The task that hit the limit is `current` at the kill; the sender is still the kernel.
    assert_eq!(
        record.sub("sender", "kind"),
        "kernel",
        "the OOM killer sent the SIGKILL: {}",
        record.json
    );
    assert_eq!(
        record.sub("sender", "cgroup"),
        "",
        "the kernel has no cgroup: {}",
        record.json
    );
    assert!(record.field("sigterm_time").is_null() && record.field("grace_seconds").is_null());
}

#[test]
fn oom_of_the_main_process_at_the_container_limit() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    container.cgroup.set_limit(LIMIT).unwrap();
    let (record, reaped) = main_process(&mut agent, &container, &["alloc", "300"]).unwrap();
    assert_eq!(reaped.signal(), Some(9), "the OOM killer took it");
    assert_memcg_oom(&record, &container.path());
    assert_eq!(record.record.container_memory_limit_bytes, Some(LIMIT));
    let peak = record
        .record
        .container_memory_peak_bytes
        .expect("container_memory_peak_bytes");
    assert!(
        (LIMIT - MIB..=LIMIT).contains(&peak),
        "container_memory_peak_bytes {peak} at the limit"
    );
}

#[test]
fn oom_of_a_child_while_the_main_process_lives_on() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    container.cgroup.set_limit(LIMIT).unwrap();
    let child = container.spawn(&["child-alloc", "300", "1"]).unwrap();
    let main = child.id();
    let path = container.path();
    let victim = agent
        .wait_for("the child's OOM kill", WAIT, |r| {
            r.record.cgroup == path && r.pid() != main
        })
        .unwrap();
    common(&victim, agent.node(), &container, victim.pid(), false).unwrap();
    assert_eq!(
        victim.record.ppid, main,
        "the child's parent is the main process"
    );
    assert!(victim.record.exit_code.is_none());
    assert_memcg_oom(&victim, &path);
    assert_eq!(victim.record.container_memory_limit_bytes, Some(LIMIT));

    let reaped = reap(child).unwrap();
    assert_eq!(
        reaped.exit_code(),
        Some(0),
        "the main process survived its child"
    );
    let record = agent.wait_for_pid(main, WAIT).unwrap();
    common(&record, agent.node(), &container, main, true).unwrap();
    death(&record, reaped).unwrap();
    assert_eq!(record.reason(), "Completed");
    assert!(
        record.field("oom").is_null(),
        "the main process was not the victim: {}",
        record.json
    );
}

#[test]
fn oom_at_the_pod_limit_names_the_pods_cgroup() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdCrio).unwrap();
    let pod_dir = container.pod_dir();
    let limit_file = if container.cgroup.root.v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    std::fs::write(pod_dir.join(limit_file), LIMIT.to_string()).unwrap();
    let pod_path = format!(
        "/{}",
        pod_dir
            .strip_prefix(&container.cgroup.root.root)
            .unwrap()
            .display()
    );
    let (record, reaped) = main_process(&mut agent, &container, &["alloc", "300"]).unwrap();
    assert_eq!(reaped.signal(), Some(9), "the OOM killer took it");
    assert_memcg_oom(&record, &pod_path);
    assert_eq!(
        record.record.container_memory_limit_bytes, None,
        "the container itself has no limit"
    );
}
