//! The kernel programs on the running kernel: load them, stage real deaths in memory cgroups
//! this test creates, and check the raw events against what the test did (and `wait4`).
//! Needs root; run through `cargo xtask test`. A failure to load is a failure, not a skip.

use std::time::{Duration, Instant};

use agent_ebpf::{
    ExecFailureEvent, ExitEvent, KernelEvent, OomEvent, SignalEvent, c_str_bytes, exit_flags,
};
use coroner::probes::btf::Btf;
use coroner::{events::EventReader, probes::Probes};
use coroner_tests::cgroups::{
    Layout, TestCgroup, container_path, kubepods_top, pod_uid, unique_hex,
};
use coroner_tests::victim::{reap, spawn_in};

struct Capture {
    _probes: Probes,
    reader: EventReader,
    seen: Vec<KernelEvent>,
}

impl Capture {
    fn start() -> Self {
        let mut probes = Probes::load().expect("the kernel programs load and attach (run as root)");
        assert!(
            probes.readiness().is_ok(),
            "every probe attached: {:?}",
            probes.readiness()
        );
        let events = probes.take_events().expect("the ring buffer");
        Self {
            _probes: probes,
            reader: EventReader::new(events),
            seen: Vec::new(),
        }
    }

    /// Reads events until `done` holds for what was seen, or fails after `limit`.
    fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&[KernelEvent]) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; saw {} events",
                self.seen.len()
            );
            let seen = &mut self.seen;
            self.reader
                .poll(Duration::from_millis(20), |e| seen.push(e));
        }
    }

    fn exit_of(&self, tgid: u32) -> Option<ExitEvent> {
        self.seen.iter().find_map(|e| match e {
            KernelEvent::Exit(x) if x.tgid == tgid => Some(*x),
            _ => None,
        })
    }

    fn signals_to(&self, tgid: u32) -> Vec<SignalEvent> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                KernelEvent::Signal(s) if s.target_tgid == tgid => Some(*s),
                _ => None,
            })
            .collect()
    }
}

fn has_exit(tgid: u32) -> impl Fn(&[KernelEvent]) -> bool {
    move |seen| {
        seen.iter()
            .any(|e| matches!(e, KernelEvent::Exit(x) if x.tgid == tgid))
    }
}

fn container() -> TestCgroup {
    let path = container_path(
        Layout::CgroupfsBurstable,
        &kubepods_top(),
        &pod_uid(),
        &unique_hex(64),
    );
    TestCgroup::create(&path).expect("creating a test memory cgroup")
}

fn comm(bytes: &[u8]) -> String {
    String::from_utf8_lossy(c_str_bytes(bytes)).into_owned()
}

#[test]
fn exit_code_memcg_and_peak_rss_of_a_main_process() {
    let mut capture = Capture::start();
    let cg = container();
    let child = spawn_in(&cg, &["rss", "48"]).unwrap();
    let pid = child.id();
    let reaped = reap(child).unwrap();
    assert_eq!(reaped.exit_code(), Some(0));
    capture.until("the exit", Duration::from_secs(5), has_exit(pid));
    let exit = capture.exit_of(pid).unwrap();
    assert_eq!(
        exit.memcg_id,
        cg.id(),
        "memcg id is the cgroup directory's inode"
    );
    assert_ne!(
        exit.flags & exit_flags::PARENT_OUTSIDE,
        0,
        "parent (the test) is outside: main process"
    );
    assert_eq!(exit.parent_tgid, std::process::id());
    assert_eq!(comm(&exit.comm), "coroner-victim");
    let kernel_kib = exit.maxrss_pages as i64 * 4;
    // Within 5%, in integers: |kernel - wait4| / wait4 ≤ 1/20.
    assert!(
        (kernel_kib - reaped.maxrss_kib).abs() * 20 <= reaped.maxrss_kib,
        "peak RSS {kernel_kib} KiB vs wait4's {} KiB",
        reaped.maxrss_kib
    );
    assert!(
        kernel_kib > 48 * 1024,
        "the 48 MiB touched show in the peak ({kernel_kib} KiB)"
    );

    // A container has one init: the next start is a container of its own.
    let cg = container();
    let child = spawn_in(&cg, &["exit", "3"]).unwrap();
    let pid = child.id();
    assert_eq!(reap(child).unwrap().exit_code(), Some(3));
    capture.until("exit 3", Duration::from_secs(5), has_exit(pid));
    assert_eq!(
        capture.exit_of(pid).unwrap().exit_code,
        768,
        "exit 3 is 3 << 8 in task->exit_code"
    );
}

#[test]
fn sigkill_names_the_sender_and_sigchld_never_crosses() {
    let mut capture = Capture::start();
    let cg = container();
    let other = container();
    let victim = spawn_in(&cg, &["sleep", "30"]).unwrap();
    let victim_pid = victim.id();
    std::thread::sleep(Duration::from_millis(100));
    let sender = spawn_in(&other, &["kill", "9", &victim_pid.to_string()]).unwrap();
    let sender_pid = sender.id();
    assert_eq!(reap(sender).unwrap().exit_code(), Some(0));
    assert_eq!(reap(victim).unwrap().signal(), Some(9));
    capture.until(
        "the SIGKILL and the exit",
        Duration::from_secs(5),
        has_exit(victim_pid),
    );
    let exit = capture.exit_of(victim_pid).unwrap();
    assert_eq!(exit.exit_code, 9, "SIGKILL is 9 in task->exit_code");
    let kills: Vec<_> = capture
        .signals_to(victim_pid)
        .into_iter()
        .filter(|s| s.sig == 9)
        .collect();
    assert_eq!(kills.len(), 1, "one SIGKILL: {kills:?}");
    let kill = kills[0];
    assert_eq!(kill.sender_tgid, sender_pid);
    assert_eq!(comm(&kill.sender_comm), "coroner-victim");
    assert_eq!(kill.sender_memcg_id, other.id());
    assert_eq!(kill.target_memcg_id, cg.id());
    assert_eq!(kill.code, 0, "SI_USER from kill(2)");

    // A handled SIGUSR1 cannot kill, so it stays in the kernel; so does every SIGCHLD the
    // test's children sent the test.
    // In a container of its own: in `cg` it would be an exec session, whose clean exit
    // stays in the kernel.
    let cg = container();
    let handler = spawn_in(&cg, &["handle-usr1", "1"]).unwrap();
    let handler_pid = handler.id();
    std::thread::sleep(Duration::from_millis(200));
    coroner_tests::victim::signal_pid(handler_pid, libc::SIGUSR1);
    assert_eq!(reap(handler).unwrap().exit_code(), Some(0));
    capture.until(
        "the handler's exit",
        Duration::from_secs(5),
        has_exit(handler_pid),
    );
    assert!(
        capture.signals_to(handler_pid).iter().all(|s| s.sig != 10),
        "handled SIGUSR1 crossed"
    );
    let sigchld = capture
        .seen
        .iter()
        .filter(|e| matches!(e, KernelEvent::Signal(s) if s.sig == 17))
        .count();
    assert_eq!(sigchld, 0, "SIGCHLD crossed to user space");
}

#[test]
fn memcg_oom_kill_reports_the_victim_near_the_limit() {
    const LIMIT: u64 = 64 << 20;
    let mut capture = Capture::start();
    let cg = container();
    cg.set_limit(LIMIT).unwrap();
    let victim = spawn_in(&cg, &["alloc", "300"]).unwrap();
    let pid = victim.id();
    assert_eq!(
        reap(victim).unwrap().signal(),
        Some(9),
        "the OOM killer took it"
    );
    capture.until("the OOM kill", Duration::from_secs(10), has_exit(pid));
    let oom: OomEvent = capture
        .seen
        .iter()
        .find_map(|e| match e {
            KernelEvent::Oom(o) if o.victim_tgid == pid => Some(*o),
            _ => None,
        })
        .expect("an OOM event for the victim");
    assert_eq!(oom.victim_memcg_id, cg.id());
    assert_ne!(oom.flags & agent_ebpf::oom_flags::RSS_FROM_MM, 0);
    let rss = (oom.anon_rss_pages + oom.file_rss_pages + oom.shmem_rss_pages) * 4096;
    assert!(
        rss > LIMIT * 8 / 10 && rss < LIMIT * 11 / 10,
        "victim RSS {rss} near the {LIMIT} limit"
    );
    let own = oom.memcg_chain[0];
    assert_eq!(own.id, cg.id());
    assert_eq!(own.max_pages * 4096, LIMIT);
    assert!(
        own.usage_pages * 4096 >= LIMIT - (1 << 20),
        "usage at the limit at the kill: {own:?}"
    );
}

#[test]
fn failed_exec_gives_path_and_errno() {
    let mut capture = Capture::start();
    let cg = container();
    let missing = format!("/nonexistent/coroner-{}", unique_hex(8));
    let child = spawn_in(&cg, &["exec", &missing]).unwrap();
    let pid = child.id();
    assert_eq!(reap(child).unwrap().exit_code(), Some(127));
    capture.until("the exit", Duration::from_secs(5), has_exit(pid));
    let failure: ExecFailureEvent = capture
        .seen
        .iter()
        .find_map(|e| match e {
            KernelEvent::ExecFailure(x) if x.tgid == pid => Some(*x),
            _ => None,
        })
        .expect("an exec-failure event");
    assert_eq!(failure.errno, libc::ENOENT);
    assert_eq!(
        &failure.path[..failure.path_len as usize],
        missing.as_bytes()
    );
    assert_eq!(failure.memcg_id, cg.id());
    assert_eq!(capture.exit_of(pid).unwrap().exit_code, 127 << 8);
}

/// Offsets of `(struct, member)` as bpftool prints them (`bits_offset / 8`).
fn bpftool_offset(raw: &str, ty: &str, member: &str) -> Option<u32> {
    let header = format!("STRUCT '{ty}' ");
    let mut lines = raw
        .lines()
        .skip_while(|l| !(l.starts_with('[') && l.contains(&header)));
    lines.next()?;
    lines.take_while(|l| l.starts_with('\t')).find_map(|l| {
        let l = l.trim();
        let name = l.strip_prefix('\'')?.split('\'').next()?;
        if name != member {
            return None;
        }
        let bits: u32 = l
            .split("bits_offset=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(bits / 8)
    })
}

#[test]
fn btf_offsets_match_bpftool_on_the_running_kernel() {
    let btf = Btf::from_sys().expect("this kernel has BTF");
    let out = std::process::Command::new("bpftool")
        .args([
            "btf",
            "dump",
            "file",
            "/sys/kernel/btf/vmlinux",
            "format",
            "raw",
        ])
        .output()
        .expect("bpftool is installed by `cargo xtask test`");
    assert!(out.status.success(), "bpftool failed");
    let raw = String::from_utf8_lossy(&out.stdout);
    for (ty, member) in [
        ("task_struct", "pid"),
        ("task_struct", "tgid"),
        ("task_struct", "comm"),
        ("task_struct", "exit_code"),
        ("task_struct", "real_parent"),
        ("task_struct", "signal"),
        ("task_struct", "cgroups"),
        ("task_struct", "start_boottime"),
        ("task_struct", "mm"),
        ("task_struct", "sighand"),
        ("signal_struct", "maxrss"),
        ("signal_struct", "oom_score_adj"),
        ("signal_struct", "flags"),
        ("signal_struct", "group_exit_code"),
        ("cgroup_subsys_state", "cgroup"),
        ("cgroup_subsys_state", "parent"),
        ("cgroup", "kn"),
        ("kernfs_node", "id"),
        ("mm_struct", "rss_stat"),
    ] {
        let ours = btf
            .offset_of(ty, member)
            .unwrap_or_else(|e| panic!("{ty}.{member}: {e}"));
        // Members inside anonymous unions/structs are not listed at the top by bpftool.
        if let Some(theirs) = bpftool_offset(&raw, ty, member) {
            assert_eq!(ours, theirs, "{ty}.{member}");
        }
    }
}
