//! The real `coroner` binary's interface around the records: container identity over every
//! kubelet layout, no record for deaths outside containers, `/v1/terminations`, `/healthz`,
//! `/metrics`, and the clean shutdown that leaves whole lines. Needs root; run through
//! `cargo xtask test` (or build `coroner` first).

use std::process::{Command, Stdio};
use std::time::Duration;

use coroner_tests::agent::expect::{
    Container, PathOf, common, death, own_memcg, sender, thread_comm,
};
use coroner_tests::agent::{Agent, Record};
use coroner_tests::cgroups::{Layout, TestCgroup, kubepods_top, unique_hex};
use coroner_tests::exposition::metric;
use coroner_tests::victim::{reap, signal_pid, victim_bin};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// Layouts beyond [`Layout`]: cgroupfs best-effort with CRI-O's `crio-` prefix, and a
/// guaranteed pod under the systemd driver with docker.
const CGROUPFS_BESTEFFORT_CRIO: PathOf =
    |top, uid, id| format!("{top}/kubepods/besteffort/pod{uid}/crio-{id}");
const SYSTEMD_GUARANTEED_DOCKER: PathOf = |top, uid, id| {
    format!(
        "{top}/kubepods.slice/kubepods-pod{}.slice/docker-{id}.scope",
        uid.replace('-', "_")
    )
};

#[test]
fn every_layout_gives_pod_uid_container_id_and_cgroup() {
    let mut agent = Agent::start().unwrap();
    let containers = [
        (
            "cgroupfs burstable",
            Container::new(Layout::CgroupfsBurstable),
        ),
        (
            "cgroupfs guaranteed",
            Container::new(Layout::CgroupfsGuaranteed),
        ),
        (
            "systemd containerd",
            Container::new(Layout::SystemdContainerd),
        ),
        ("systemd CRI-O", Container::new(Layout::SystemdCrio)),
        (
            "cgroupfs besteffort CRI-O",
            Container::with_path(CGROUPFS_BESTEFFORT_CRIO),
        ),
        (
            "systemd guaranteed docker",
            Container::with_path(SYSTEMD_GUARANTEED_DOCKER),
        ),
    ];
    let comm = thread_comm().unwrap();
    for (layout, container) in containers {
        let container = container.unwrap();
        // A container has one init; the second death is the pod's next container.
        let next = container.sibling().unwrap();
        let exits = container.spawn(&["exit", "0"]).unwrap();
        let sleeper = next.spawn(&["sleep", "30"]).unwrap();
        let (exits_pid, sleeper_pid) = (exits.id(), sleeper.id());
        signal_pid(sleeper_pid, libc::SIGKILL);
        let (exited, killed) = (reap(exits).unwrap(), reap(sleeper).unwrap());

        let record = agent.wait_for_pid(exits_pid, WAIT).unwrap();
        common(&record, agent.node(), &container, exits_pid, true)
            .unwrap_or_else(|e| panic!("{layout}: {e:#}"));
        death(&record, exited).unwrap();
        assert_eq!(record.reason(), "Completed", "{layout}");

        let record = agent.wait_for_pid(sleeper_pid, WAIT).unwrap();
        common(&record, agent.node(), &next, sleeper_pid, true)
            .unwrap_or_else(|e| panic!("{layout}: {e:#}"));
        death(&record, killed).unwrap();
        assert_eq!(record.reason(), "Killed", "{layout}");
        sender(
            &record,
            "host",
            std::process::id(),
            Some(&comm),
            Some(&own_memcg().unwrap()),
        )
        .unwrap_or_else(|e| panic!("{layout}: {e:#}"));
    }
}

/// The value of an unlabelled counter in `/metrics`.
fn counter(agent: &Agent, name: &str) -> u64 {
    let metrics = agent.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    metric(&metrics.body, name, &[]).unwrap_or_else(|| panic!("no {name} in /metrics")) as u64
}

/// Stages deaths outside every container — in a memory cgroup of no kubelet layout, and in
/// the test's own — then one in a container, twice (the second round after the agent has
/// seen those cgroups), and returns the outside pids once the agent recorded the container's
/// death: events are handled in order, so the ones before it were too.
fn deaths_outside(agent: &mut Agent) -> (Vec<u32>, TestCgroup) {
    let plain = TestCgroup::create(&format!("{}/plain-{}", kubepods_top(), unique_hex(8))).unwrap();
    let mut outside = Vec::new();
    // The second round is larger, so that a count that misses it cannot be made up by the
    // first deaths of unrelated host cgroups on the node.
    for round in 0..2 {
        let exits = if round == 0 { 1 } else { 20 };
        let plain_deaths = [&["segv"][..], &["exit", "1"], &["abort"], &["sleep", "30"]]
            .into_iter()
            .chain(std::iter::repeat_n(&["exit", "0"][..], exits));
        for args in plain_deaths {
            let child = coroner_tests::victim::spawn_in(&plain, args).unwrap();
            outside.push(child.id());
            if args[0] == "sleep" {
                signal_pid(child.id(), libc::SIGKILL);
            }
            reap(child).unwrap();
        }
        for args in [&["segv"][..], &["exit", "2"]] {
            let own = Command::new(victim_bin())
                .args(args)
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            outside.push(own.id());
            reap(own).unwrap();
        }
        let sentinel = Container::new(Layout::CgroupfsBurstable).unwrap();
        let child = sentinel.spawn(&["exit", "0"]).unwrap();
        let sentinel_pid = child.id();
        reap(child).unwrap();
        agent.wait_for_pid(sentinel_pid, WAIT).unwrap();
    }
    (outside, plain)
}

#[test]
fn deaths_outside_containers_have_no_record() {
    let mut agent = Agent::start().unwrap();
    let (outside, plain) = deaths_outside(&mut agent);
    let records = agent.stop().unwrap();
    let leaked: Vec<&Record> = records
        .iter()
        .filter(|r| outside.contains(&r.pid()))
        .collect();
    assert!(
        leaked.is_empty(),
        "deaths outside containers were recorded: {leaked:#?}"
    );
    assert!(
        records
            .iter()
            .all(|r| !r.record.cgroup.contains(&plain.rel)),
        "a record for the plain cgroup"
    );
}

#[test]
fn deaths_outside_containers_are_counted() {
    // docs/record.md: "Deaths outside containers are counted but not recorded"; the agent counts
    // them in coroner_deaths_outside_containers_total, which it updates every second.
    let mut agent = Agent::start().unwrap();
    let before = counter(&agent, "coroner_deaths_outside_containers_total");
    let (outside, _plain) = deaths_outside(&mut agent);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut counted = 0;
    while std::time::Instant::now() < deadline {
        counted = counter(&agent, "coroner_deaths_outside_containers_total") - before;
        if counted >= outside.len() as u64 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{counted} deaths outside containers counted, {} staged (pids {outside:?})",
        outside.len()
    );
}

fn pids_in(body: &str) -> Vec<u32> {
    let array: Vec<Value> =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON array ({e}): {body}"));
    array
        .iter()
        .filter_map(|r| r.get("pid")?.as_u64().map(|p| p as u32))
        .collect()
}

#[test]
fn http_terminations_healthz_metrics_and_sigterm() {
    let mut agent = Agent::start().unwrap();
    let health = agent.get("/healthz").unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    let container = Container::new(Layout::SystemdCrio).unwrap();
    let restarted = container.sibling().unwrap();
    let mut pids = Vec::new();
    for (start, code) in [(&container, "0"), (&restarted, "3")] {
        let child = start.spawn(&["exit", code]).unwrap();
        pids.push(child.id());
        reap(child).unwrap();
    }
    let first = agent.wait_for_pid(pids[0], WAIT).unwrap();
    let second = agent.wait_for_pid(pids[1], WAIT).unwrap();

    let all = agent.get("/v1/terminations").unwrap();
    assert_eq!(all.status, 200);
    let array: Vec<Value> = serde_json::from_str(&all.body).unwrap();
    let ours: Vec<&Value> = array
        .iter()
        .filter(|r| r["pod_uid"] == container.pod_uid.as_str())
        .collect();
    assert_eq!(
        ours,
        [&first.json, &second.json],
        "the same records as the file, oldest first"
    );

    // With --kube off no pod is known: `pod=` (empty) selects them, a name does not.
    for query in ["?pod=", "?namespace=&pod=", "?namespace="] {
        let answer = agent.get(&format!("/v1/terminations{query}")).unwrap();
        assert_eq!(answer.status, 200);
        let found = pids_in(&answer.body);
        assert!(
            pids.iter().all(|p| found.contains(p)),
            "{query}: {found:?} lacks {pids:?}"
        );
    }
    for query in [
        format!("?pod=web-{}", unique_hex(6)),
        "?namespace=kube-system".into(),
        "?namespace=default&pod=".into(),
    ] {
        let answer = agent.get(&format!("/v1/terminations{query}")).unwrap();
        assert_eq!(answer.status, 200);
        let found = pids_in(&answer.body);
        assert!(
            pids.iter().all(|p| !found.contains(p)),
            "{query} selected records of no pod: {found:?}"
        );
    }

    let metrics = agent.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    for reason in ["Completed", "Error"] {
        let line = metrics
            .body
            .lines()
            .find(|l| {
                l.starts_with("coroner_terminations_total{")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no coroner_terminations_total for {reason}"));
        for label in ["namespace=\"\"", "pod=\"\"", "container=\"\""] {
            assert!(
                line.contains(label),
                "unknown metadata is an empty label: {line}"
            );
        }
    }
    assert_eq!(agent.get("/nothing-here").unwrap().status, 404);

    let records = agent.stop().unwrap();
    for pid in pids {
        assert_eq!(
            records.iter().filter(|r| r.pid() == pid).count(),
            1,
            "one record of pid {pid}"
        );
    }
}

#[test]
fn sigterm_flushes_every_death_seen_before_it() {
    let agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let mut pids = Vec::new();
    let mut starts = Vec::new();
    for i in 0..30 {
        // Thirty starts of the pod's containers, each an init of its own cgroup.
        starts.push(container.sibling().unwrap());
        let child = starts[i].spawn(&["exit", &(i % 3).to_string()]).unwrap();
        pids.push(child.id());
        reap(child).unwrap();
    }
    // No waiting: every exit above happened before the SIGTERM.
    let records = agent.stop().unwrap();
    let missing: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| !records.iter().any(|r| r.pid() == *p))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} deaths before SIGTERM have no record: {missing:?}",
        missing.len(),
        pids.len()
    );
}

#[test]
fn sigint_stops_cleanly_too() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let child = container.spawn(&["exit", "0"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    agent.wait_for_pid(pid, WAIT).unwrap();
    let records = agent.stop_with(libc::SIGINT).unwrap();
    assert_eq!(records.iter().filter(|r| r.pid() == pid).count(), 1);
}

#[test]
fn a_container_removed_right_after_its_death_still_has_a_record() {
    // A runtime deletes a container's cgroup as soon as it has reaped the main process:
    // containerd's CRI plugin deletes the task on its exit event, tens of milliseconds later.
    // A container that fails at once (command not found, crash-looping) is new to the agent
    // and gone soon after its death; its record is the one that matters most.
    let mut agent = Agent::start().unwrap();
    let missing = format!("/nonexistent/coroner-{}", unique_hex(8));
    let mut staged = Vec::new();
    for _ in 0..5 {
        let container = Container::new(Layout::CgroupfsBurstable).unwrap();
        let child = container.spawn(&["exec", &missing]).unwrap();
        let pid = child.id();
        assert_eq!(reap(child).unwrap().exit_code(), Some(127));
        std::thread::sleep(Duration::from_millis(20));
        staged.push((
            pid,
            container.pod_uid.clone(),
            container.container_id.clone(),
        ));
        drop(container);
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let missing_records = loop {
        let records = agent.records().unwrap();
        let missing: Vec<u32> = staged
            .iter()
            .map(|s| s.0)
            .filter(|p| !records.iter().any(|r| r.pid() == *p))
            .collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lost = agent
        .get("/metrics")
        .unwrap()
        .body
        .lines()
        .find(|l| l.contains("stage=\"cgroup\""))
        .map(str::to_string);
    assert!(
        missing_records.is_empty(),
        "{} of {} containers removed 20 ms after their death have no record (pids {missing_records:?}); {lost:?}",
        missing_records.len(),
        staged.len()
    );
    let records = agent.stop().unwrap();
    for (pid, pod_uid, container_id) in staged {
        let record = records.iter().find(|r| r.pid() == pid).unwrap();
        assert_eq!(record.reason(), "CommandNotFound");
        assert_eq!(record.record.pod_uid.as_deref(), Some(pod_uid.as_str()));
        assert_eq!(
            record.record.container_id.as_deref(),
            Some(container_id.as_str())
        );
        assert_eq!(record.sub("exec_failure", "path"), missing.as_str());
    }
}
