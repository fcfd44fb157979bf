//! Security: which capabilities the agent truly needs. (What it holds once running, what it
//! exposes and what it never writes: `security.rs`.) Needs root; run through
//! `cargo xtask test` (or build `coroner` first).
//!
//! Capabilities, found by running the agent with only some of them in its bounding set (as
//! uid 0 without them, the way the `DaemonSet` runs it), on Linux 6.18:
//! - `CAP_BPF` + `CAP_PERFMON`: starts, attaches every probe (`tp_btf` and the syscall
//!   tracepoints), records. Nothing else is needed when tracefs is mounted (the host mounts
//!   it and the `DaemonSet` mounts it in).
//! - `CAP_BPF` alone: the programs do not load (`BPF_PROG_LOAD`: EPERM, tracing programs need
//!   `CAP_PERFMON`); the agent exits with an error.
//! - `CAP_PERFMON` alone: the maps cannot be created (`failed to create map EVENTS`: EPERM);
//!   the agent exits with an error.
//! - Without tracefs, mounting it needs `CAP_SYS_ADMIN`: the agent runs and records, but the
//!   exec-failure probes are not attached; `/livez` says 200 and `/readyz` (and `/healthz`)
//!   200, degraded, naming them.
//! - Without `CAP_SYSLOG` (and `perf_event_paranoid` ≥ 2) /proc/kallsyms hides addresses: the
//!   agent warns and decides OOM scopes from the memory cgroup limits instead.
//! - Without `CAP_SYS_RESOURCE` `setrlimit(RLIMIT_MEMLOCK)` fails: a warning here (BPF memory
//!   is charged to the memory cgroup since 5.11); before 5.11 the maps cannot be created
//!   (EPERM, seen in the 5.10 VM guest), hence `SYS_RESOURCE` in the `DaemonSet`.
//! - Without `CAP_SETPCAP` the agent cannot empty its bounding set; it still ends with no
//!   effective or permitted capability and `no_new_privs`, so an exec (even as uid 0) gains
//!   nothing back.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coroner_tests::agent::bare::{Bare, PreExec, Started};
use coroner_tests::agent::expect::Container;
use coroner_tests::cgroups::Layout;
use coroner_tests::exposition::metric;
use coroner_tests::privileges::unprivileged;
use coroner_tests::victim::reap;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const CAP_PERFMON: i32 = 38;
const CAP_BPF: i32 = 39;

/// Keeps only `keep` in the bounding set: an exec as uid 0 then gets exactly those (what a
/// container runtime does for `capabilities: {drop: [ALL], add: …}`). Async-signal-safe.
#[expect(
    clippy::unnecessary_wraps,
    reason = "the shape `pre_exec` wants, shared by every capability set"
)]
fn bound_to(keep: &[i32]) -> std::io::Result<()> {
    for cap in 0..64 {
        if !keep.contains(&cap) {
            // SAFETY: prctl with integer arguments; EINVAL for numbers the kernel lacks.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    Ok(())
}

fn daemonset_caps() -> std::io::Result<()> {
    bound_to(&[CAP_BPF, CAP_PERFMON])
}

fn bpf_only() -> std::io::Result<()> {
    bound_to(&[CAP_BPF])
}

fn perfmon_only() -> std::io::Result<()> {
    bound_to(&[CAP_PERFMON])
}

/// The `DaemonSet`'s capabilities in a mount namespace of the agent's own where tracefs is not
/// mounted (the rest of the machine keeps it).
fn daemonset_caps_without_tracefs() -> std::io::Result<()> {
    // SAFETY: unshare, mount and umount2 with constant, NUL-terminated arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        for dir in [
            c"/sys/kernel/tracing",
            c"/sys/kernel/debug/tracing",
            c"/sys/kernel/debug",
        ] {
            while libc::umount2(dir.as_ptr(), libc::MNT_DETACH) == 0 {}
        }
    }
    bound_to(&[CAP_BPF, CAP_PERFMON])
}

fn ensure_tracefs() {
    if !Path::new("/sys/kernel/tracing/events").is_dir() {
        let status = Command::new("mount")
            .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "tracefs is needed (the host mounts it for the DaemonSet)"
        );
    }
}

fn start_answering(pre_exec: PreExec) -> Bare {
    match Bare::start(&[], Some(pre_exec)).unwrap() {
        Started::Answering(bare) => bare,
        Started::Exited { status, log } => panic!("coroner exited ({status}):\n{log}"),
    }
}

/// The record of `pid` that `/v1/terminations` serves, waiting for it.
fn wait_served(agent: &Bare, pid: u32) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = agent.get("/v1/terminations").unwrap().body;
        let records: Vec<Value> = serde_json::from_str(&body).unwrap();
        if let Some(found) = records.into_iter().find(|r| r["pid"] == pid) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no record of pid {pid}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn container_death(agent: &Bare) -> Value {
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let child = container.spawn(&["exit", "5"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    wait_served(agent, pid)
}

#[test]
fn cap_bpf_and_cap_perfmon_are_enough() {
    ensure_tracefs();
    let agent = start_answering(daemonset_caps);
    for path in ["/livez", "/readyz", "/healthz"] {
        let health = agent.get(path).unwrap();
        assert_eq!(
            (health.status, health.body.as_str()),
            (200, "ok\n"),
            "{path}: every probe attached\n{}",
            agent.log()
        );
    }
    let metrics = agent.get("/metrics").unwrap().body;
    let probes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("coroner_probe_attached{"))
        .collect();
    assert!(
        !probes.is_empty() && probes.iter().all(|l| l.ends_with(" 1")),
        "{probes:#?}"
    );
    let record = container_death(&agent);
    assert_eq!(record["reason"], "Error", "{record}");
    // Without CAP_SETPCAP the bounding set stays as it was given.
    unprivileged(agent.pid().unwrap(), (1 << CAP_BPF) | (1 << CAP_PERFMON)).unwrap();
    assert!(
        agent.log().contains("/proc/kallsyms hides addresses"),
        "without CAP_SYSLOG the OOM scope falls back, and says so:\n{}",
        agent.log()
    );
    agent.stop().unwrap();
}

#[test]
fn cap_bpf_or_cap_perfmon_alone_is_not_enough() {
    for (name, pre_exec) in [
        ("CAP_BPF alone", bpf_only as PreExec),
        ("CAP_PERFMON alone", perfmon_only),
    ] {
        match Bare::start(&[], Some(pre_exec)).unwrap() {
            Started::Answering(bare) => {
                panic!("{name}: coroner runs:\n{}", bare.log())
            }
            Started::Exited { status, log } => {
                assert!(
                    log.contains("loading the kernel probes"),
                    "{name}: exited ({status}) for another reason:\n{log}"
                );
            }
        }
    }
}

#[test]
fn without_tracefs_mounting_it_needs_cap_sys_admin_and_deaths_are_still_recorded() {
    let agent = start_answering(daemonset_caps_without_tracefs);
    // Degraded, not down: a liveness probe must not restart an agent that records deaths,
    // and it stays ready (it does record). /healthz is /readyz's old name.
    let live = agent.get("/livez").unwrap();
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    for path in ["/readyz", "/healthz"] {
        let health = agent.get(path).unwrap();
        assert_eq!(health.status, 200, "{path}: {}", health.body);
        assert!(
            health.body.starts_with("ok, degraded: ") && health.body.contains("execve"),
            "{path} names the exec probes: {}",
            health.body
        );
    }
    let metrics = agent.get("/metrics").unwrap().body;
    for (probe, attached) in [
        ("process_exit", 1.0),
        ("signal_generate", 1.0),
        ("execve_exit", 0.0),
    ] {
        assert_eq!(
            metric(&metrics, "coroner_probe_attached", &[("probe", probe)]),
            Some(attached),
            "{probe}"
        );
    }
    let record = container_death(&agent);
    assert_eq!(record["reason"], "Error", "{record}");
    agent.stop().unwrap();
}
