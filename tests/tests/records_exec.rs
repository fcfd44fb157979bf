//! Failed execs from the real `coroner` binary: 127 and 126 with the path and errno of the
//! failed `execve`, by the main process or by a child it forked — and not from a failure
//! that does not explain the death; with `--exec-failures off`, no syscall tracepoint attached
//! and the verdict from the exit code alone. Needs root; run through `cargo xtask test` (or
//! build `coroner` first).

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use coroner_tests::agent::expect::{Container, RECORD_WAIT, main_process_in, quiet};
use coroner_tests::agent::{Agent, Options, Record};
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::victim::reap;

/// A private directory for files the test execs; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("coroner-it-{}", unique_hex(12)));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, mode: u32, content: &[u8]) -> String {
        let file = self.0.join(name);
        std::fs::write(&file, content).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        file.to_str().unwrap().to_string()
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The record's `exec_failure` names `path` and `errno`.
fn assert_exec_failure(record: &Record, path: &str, errno: &str) {
    assert_eq!(record.sub("exec_failure", "path"), path, "{}", record.json);
    assert_eq!(
        record.sub("exec_failure", "errno"),
        errno,
        "{}",
        record.json
    );
}

#[test]
fn exit_127_after_a_failed_exec_is_command_not_found() {
    let mut agent = Agent::start().unwrap();
    let missing = format!("/nonexistent/coroner-{}", unique_hex(8));
    let (_container, record, _) =
        main_process_in(&mut agent, Layout::SystemdCrio, &["exec", &missing]).unwrap();
    assert_eq!(record.reason(), "CommandNotFound");
    assert_eq!(record.record.exit_status, 127);
    assert_exec_failure(&record, &missing, "ENOENT");
    assert_eq!(
        record.sub("exec_failure", "pid"),
        record.pid(),
        "the main process itself failed to exec"
    );
    quiet(&record).unwrap();
}

#[test]
fn a_shell_whose_child_cannot_exec_is_command_not_found() {
    let mut agent = Agent::start().unwrap();
    let missing = format!("/nonexistent/coroner-{}", unique_hex(8));
    let (container, record, _) = main_process_in(
        &mut agent,
        Layout::CgroupfsGuaranteed,
        &["shell-exec", &missing],
    )
    .unwrap();
    assert_eq!(record.reason(), "CommandNotFound");
    assert_eq!(record.record.exit_status, 127);
    assert_exec_failure(&record, &missing, "ENOENT");
    let child = record
        .sub("exec_failure", "pid")
        .as_u64()
        .expect("exec_failure.pid") as u32;
    assert_ne!(
        child,
        record.pid(),
        "the forked child failed, not the main process"
    );
    assert_ne!(child, 0);
    drop(container);
    let all = agent.stop().unwrap();
    assert!(
        all.iter().all(|r| r.pid() != child),
        "the child exited by exit(), not the main process: no record of its own"
    );
}

#[test]
fn exit_126_for_a_file_without_x_is_not_executable() {
    let mut agent = Agent::start().unwrap();
    let scratch = Scratch::new();
    // A script without the x bit: execve says EACCES.
    let path = scratch.file("tool", 0o644, b"#!/bin/sh\nexit 0\n");
    let (_container, record, _) =
        main_process_in(&mut agent, Layout::CgroupfsBurstable, &["exec", &path]).unwrap();
    assert_eq!(record.reason(), "NotExecutable");
    assert_eq!(record.record.exit_status, 126);
    assert_exec_failure(&record, &path, "EACCES");
}

#[test]
fn exit_126_for_a_file_that_is_no_program_is_not_executable() {
    let mut agent = Agent::start().unwrap();
    let scratch = Scratch::new();
    // Executable, but neither ELF nor `#!`: execve says ENOEXEC.
    let path = scratch.file("tool", 0o755, b"\x01\x02 not a program");
    let (_container, record, _) =
        main_process_in(&mut agent, Layout::SystemdContainerd, &["exec", &path]).unwrap();
    assert_eq!(record.reason(), "NotExecutable");
    assert_exec_failure(&record, &path, "ENOEXEC");
}

#[test]
fn an_exec_failure_of_another_main_process_is_not_this_ones() {
    // An exec probe (`kubectl exec`, a liveness probe) runs in the container with its parent
    // outside, like the main process. Its failure to find a command must not become the
    // main process's exec_failure, nor turn the main process's exit 1 into CommandNotFound:
    // docs/record.md: the failed execve "by it or a child it forked".
    let mut agent = Agent::start().unwrap();
    let scratch = Scratch::new();
    let fifo = scratch.path().join("go");
    let c_fifo = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    // Builtins only: dash execs nothing until the test writes to the fifo, then exits 1.
    let script = scratch.file(
        "main.sh",
        0o755,
        format!("#!/bin/sh\nread line < {}\nexit 1\n", fifo.display()).as_bytes(),
    );
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    let main = container.spawn(&["exec", &script]).unwrap();
    let main_pid = main.id();

    // The probe is an exec session: its exit 127 is counted, never a record of its own.
    let missing = format!("/nonexistent/probe-{}", unique_hex(8));
    let probe = container.spawn(&["exec", &missing]).unwrap();
    let probe_pid = probe.id();
    assert_eq!(reap(probe).unwrap().exit_code(), Some(127));

    std::fs::write(&fifo, "go\n").unwrap();
    let reaped = reap(main).unwrap();
    assert_eq!(reaped.exit_code(), Some(1));
    let record = agent.wait_for_pid(main_pid, RECORD_WAIT).unwrap();
    assert_eq!(record.record.cgroup, container.path());
    assert!(record.record.main_process);
    assert_eq!(record.record.exit_code, Some(1));
    assert!(
        record.field("exec_failure").is_null(),
        "the probe's failure is not the main process's: {}",
        record.json
    );
    assert_eq!(record.reason(), "Error", "{}", record.json);
    assert_eq!(record.record.role, coroner::record::Role::Init);
    let probe_records: Vec<_> = agent
        .records()
        .unwrap()
        .iter()
        .filter(|r| r.record.pid == probe_pid)
        .map(|r| r.json.clone())
        .collect();
    assert!(
        probe_records.is_empty(),
        "an exec session's exit is no record: {probe_records:?}"
    );
}

#[test]
fn a_command_found_on_path_after_a_miss_is_no_command_not_found() {
    // `#!/usr/bin/env python3` and every execvp(3) try each PATH directory in turn: the misses
    // before the hit are failed execs with ENOENT, then the exec succeeds. The process ran
    // the command it wanted; its exit 1 is an Error, not a command that was not found.
    let mut agent = Agent::start().unwrap();
    let scratch = Scratch::new();
    let miss = format!("/nonexistent-{}", unique_hex(8));
    let script = scratch.file(
        "tool",
        0o755,
        format!("#!/usr/bin/env -S PATH={miss}:/usr/bin:/bin sh\nexit 1\n").as_bytes(),
    );
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let child = container.spawn(&["exec", &script]).unwrap();
    let pid = child.id();
    assert_eq!(reap(child).unwrap().exit_code(), Some(1));
    let record = agent.wait_for_pid(pid, RECORD_WAIT).unwrap();
    assert_eq!(record.record.cgroup, container.path());
    assert_eq!(record.record.comm, "sh", "env exec'd sh after the miss");
    assert_eq!(
        record.reason(),
        "Error",
        "a PATH miss before a successful exec: {}",
        record.json
    );
}

/// The syscall tracepoints `pid` holds programs attached to: its BPF links' `tp_name` in
/// `/proc/<pid>/fdinfo` (the agent attaches them as perf-event links).
fn syscall_tracepoints_of(pid: u32) -> Vec<String> {
    let mut tracepoints: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("the agent's fdinfo")
        .filter_map(|fd| std::fs::read_to_string(fd.ok()?.path()).ok())
        .filter_map(|info| {
            let tp = info.lines().find_map(|l| l.strip_prefix("tp_name:"))?;
            Some(tp.trim().to_owned())
        })
        .filter(|tp| tp.starts_with("sys_"))
        .collect();
    tracepoints.sort();
    tracepoints
}

#[test]
fn with_exec_failures_off_no_syscall_pays_and_127_is_still_command_not_found() {
    // The control: as deployed, the agent's exec-failure programs sit on syscall tracepoints.
    let agent = Agent::start().unwrap();
    let on = syscall_tracepoints_of(agent.pid().unwrap());
    assert_eq!(
        on.len(),
        4,
        "the four execve(at) enter/exit tracepoints: {on:?}"
    );
    agent.stop().unwrap();

    let mut agent = Agent::start_with(&Options {
        args: vec!["--exec-failures".into(), "off".into()],
        ..Options::default()
    })
    .unwrap();
    let off = syscall_tracepoints_of(agent.pid().unwrap());
    assert_eq!(
        off,
        Vec::<String>::new(),
        "--exec-failures off attaches none"
    );
    let missing = format!("/nonexistent/coroner-{}", unique_hex(8));
    let (_container, record, _) =
        main_process_in(&mut agent, Layout::SystemdCrio, &["exec", &missing]).unwrap();
    assert_eq!(record.reason(), "CommandNotFound", "{}", record.json);
    assert_eq!(record.record.exit_status, 127);
    assert!(
        record.field("exec_failure").is_null(),
        "nothing captured the failed exec: {}",
        record.json
    );
    let metrics = agent.get("/metrics").unwrap().body;
    assert!(
        metrics.contains("coroner_probe_attached{probe=\"signal_generate\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("probe=\"execve_enter\""),
        "a probe the operator turned off is not a probe that failed: {metrics}"
    );
    assert_eq!(
        agent.get("/readyz").unwrap().status,
        200,
        "ready without them"
    );
}
