//! The role rule for a runtime's helper that re-executes itself, staged the way runc does it
//! (deterministically, in a hand-made kubelet-layout cgroup): `runc create` executes `runc init`
//! from the host's cgroup, moves it into the container's, and `runc init` executes a copy of
//! itself there. That process is the runtime's, not the container's init: its clean exit is no
//! record, and the process the runtime starts next (which executes first in the container) is
//! the init. Needs root; run through `cargo xtask test` (or build `coroner` first).

use std::io::Write as _;
use std::process::{Command, Stdio};

use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::{Container, main_process, quiet};
use coroner_tests::cgroups::Layout;
use coroner_tests::victim::{reap, victim_bin};

#[test]
fn a_helper_moved_in_that_re_executes_itself_is_not_the_init() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    // The helper: executed on the host (this test's cgroup), then moved into the container.
    let mut helper = Command::new(victim_bin())
        .args(["reexec", "exit", "0"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let helper_pid = helper.id();
    std::fs::write(container.cgroup.procs_file(), helper_pid.to_string()).unwrap();
    // Now it executes itself again, inside the container, and exits 0.
    let mut stdin = helper.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    assert_eq!(reap(helper).unwrap().exit_code(), Some(0));

    // The init the runtime starts next: its death is the container's, recorded as the init's.
    let (record, _) = main_process(&mut agent, &container, &["exit", "3"]).unwrap();
    assert_eq!(record.field("role"), "init", "{}", record.json);
    assert_eq!(record.reason(), "Error", "{}", record.json);
    quiet(&record).unwrap();

    let all = agent.stop().unwrap();
    let helper_records: Vec<_> = all
        .iter()
        .filter(|r| r.pid() == helper_pid)
        .map(|r| &r.json)
        .collect();
    assert!(
        helper_records.is_empty(),
        "the helper's clean exit is no record: {helper_records:#?}"
    );
}
