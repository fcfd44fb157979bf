//! Hostile input through the real `coroner` binary: cgroup paths that look like kubelet's but
//! are not, a comm that is not UTF-8, container cgroups nested very deep and very long. The
//! agent keeps recording. (Hostile HTTP clients: `hostile_http.rs`; the API side's hostile
//! input: `hostile_kube.rs`.) Needs root.

use std::os::unix::ffi::OsStrExt as _;
use std::time::{Duration, Instant};

use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::{Container, still_records};
use coroner_tests::cgroups::{Layout, TestCgroup, kubepods_top};
use coroner_tests::exposition::sum;
use coroner_tests::victim::{reap, signal_pid, spawn_in, spawn_joining, victim_bin};

const WAIT: Duration = Duration::from_secs(10);

/// The comm `coroner-victim renamed …` gives itself (15 bytes, none of them UTF-8).
const HOSTILE_COMM: [u8; 15] = [
    0x80, 0x81, 0xfe, 0xff, 0xc0, 0xc1, 0xf5, 0xf8, 0x90, 0xa0, 0xb0, 0xe0, 0xed, 0xf0, 0x9f,
];

fn metric(agent: &Agent, name: &str) -> f64 {
    sum(&agent.get("/metrics").expect("/metrics").body, name)
}

#[test]
fn kubepods_paths_of_no_layout_are_counted_and_logged_not_recorded() {
    let mut agent = Agent::start().unwrap();
    let top = kubepods_top();
    let bogus = [
        format!("{top}/kubepods/burstable/podNOTAUUID/xyz"),
        format!(
            "{top}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podZZ.slice/cri-containerd-nothex.scope"
        ),
        format!(
            "{top}/kubepods/burstable/pod{}/{}",
            "0".repeat(36),
            "A".repeat(64)
        ),
    ];
    let outside_before = metric(&agent, "coroner_deaths_outside_containers_total");
    let cgroups: Vec<TestCgroup> = bogus
        .iter()
        .map(|path| TestCgroup::create(path).unwrap())
        .collect();
    // A record after the mkdirs: the agent has read them (one ring, in order). From then on the
    // kernel knows these cgroups are no container's, however fast their processes come: the
    // second exec in one is no exec session, its plain exit no exec session's (which would
    // be counted as such, not as a death outside containers).
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    still_records(&mut agent, &container).unwrap();
    let mut pids = Vec::new();
    for cgroup in &cgroups {
        // Two processes in the cgroup at once, so that the second execs before any death in
        // the cgroup could have told the kernel: a plain exit and a kill.
        let first = spawn_in(cgroup, &["sleep", "30"]).unwrap();
        let second = spawn_in(cgroup, &["exit", "1"]).unwrap();
        pids.extend([first.id(), second.id()]);
        reap(second).unwrap();
        signal_pid(first.id(), libc::SIGKILL);
        reap(first).unwrap();
    }
    still_records(&mut agent, &container).unwrap();
    let log = agent.log_tail();
    assert!(
        log.contains("matches no known layout") && log.contains("podNOTAUUID"),
        "no warning about the unmatched layout:\n{log}"
    );
    // Counted as deaths outside containers (the counter is refreshed every second).
    let deadline = Instant::now() + Duration::from_secs(3);
    while metric(&agent, "coroner_deaths_outside_containers_total") - outside_before
        < f64::from(u32::try_from(pids.len()).unwrap())
    {
        assert!(
            Instant::now() < deadline,
            "deaths in bogus cgroups not counted: {} of {}",
            metric(&agent, "coroner_deaths_outside_containers_total") - outside_before,
            pids.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = agent.stop().unwrap();
    assert!(
        records.iter().all(|r| !pids.contains(&r.pid())),
        "a record for a cgroup of no layout"
    );
}

#[test]
fn a_comm_that_is_not_utf8_makes_a_valid_record() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let lossy = String::from_utf8_lossy(&HOSTILE_COMM).into_owned();
    // Dies of its own exit, then one killed by a sibling that also renamed itself: the
    // victim's and the sender's comm are both hostile.
    let exits = container.spawn(&["renamed", "exit", "4"]).unwrap();
    let exits_pid = exits.id();
    reap(exits).unwrap();
    let sleeper = container.spawn(&["renamed", "sleep", "30"]).unwrap();
    let sleeper_pid = sleeper.id();
    std::thread::sleep(Duration::from_millis(100));
    let killer = container
        .spawn(&["renamed", "kill", "9", &sleeper_pid.to_string()])
        .unwrap();
    reap(killer).unwrap();
    reap(sleeper).unwrap();
    for pid in [exits_pid, sleeper_pid] {
        let record = agent.wait_for_pid(pid, WAIT).unwrap();
        assert_eq!(record.record.comm, lossy, "{}", record.json);
        assert_eq!(
            record.record.container_id.as_deref(),
            Some(container.container_id.as_str())
        );
    }
    let record = agent.wait_for_pid(sleeper_pid, WAIT).unwrap();
    assert_eq!(record.sub("sender", "comm"), lossy.as_str());
    assert_eq!(record.sub("sender", "kind"), "same_container");
    // The API serves the same records as JSON.
    let api = agent.get("/v1/terminations").unwrap();
    assert_eq!(api.status, 200);
    let array: Vec<serde_json::Value> = serde_json::from_str(&api.body).unwrap();
    assert!(
        array
            .iter()
            .any(|r| r["pid"] == exits_pid && r["comm"] == lossy.as_str())
    );
    still_records(&mut agent, &container).unwrap();
}

/// A container that nests cgroups of its own: `depth` levels named `name(level)` below its
/// cgroup, the last one returned (the guard of the container removes them all).
fn nest(container: &Container, depth: usize, name: impl Fn(usize) -> String) -> TestCgroup {
    let mut rel = container.cgroup.rel.clone();
    for level in 0..depth {
        rel.push('/');
        rel.push_str(&name(level));
    }
    TestCgroup::create(&rel).unwrap()
}

/// Four directories of 100 bytes above kubepods: the container's own path is ~590 bytes.
const LONG_PREFIX: &str = concat!(
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "/ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
    "/ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
);

/// Kills a sleeper in `cgroup` and returns what is wrong with its record, if anything.
fn killed_in(
    agent: &mut Agent,
    what: &str,
    container: &Container,
    cgroup: &TestCgroup,
) -> Option<String> {
    let child = spawn_in(cgroup, &["sleep", "30"]).unwrap();
    let pid = child.id();
    signal_pid(pid, libc::SIGKILL);
    reap(child).unwrap();
    let Ok(record) = agent.wait_for_pid(pid, Duration::from_secs(5)) else {
        return Some(format!(
            "{what} ({} bytes): no record of the death",
            cgroup.path().len()
        ));
    };
    let r = &record.record;
    let identity = (r.pod_uid.as_deref(), r.container_id.as_deref());
    let want = (
        Some(container.pod_uid.as_str()),
        Some(container.container_id.as_str()),
    );
    if identity != want || record.reason() != "Killed" || r.cgroup != cgroup.path() {
        return Some(format!(
            "{what}: {identity:?} {} cgroup {:?} ({} bytes); want {want:?} Killed {:?} ({} \
             bytes)",
            record.reason(),
            r.cgroup,
            r.cgroup.len(),
            cgroup.path(),
            cgroup.path().len()
        ));
    }
    None
}

#[test]
fn deep_and_oddly_named_container_paths_are_recorded() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdCrio).unwrap();
    // 80 levels below the container: deeper than the hierarchy walk goes (64).
    let deep = nest(&container, 80, |l| l.to_string());
    let mut wrong: Vec<String> = killed_in(&mut agent, "80 levels deep", &container, &deep)
        .into_iter()
        .collect();
    // A directory name that is not UTF-8 below a container: the record spells it lossily.
    let odd = container
        .cgroup
        .dir()
        .join(std::ffi::OsStr::from_bytes(&[b's', 0xff, 0xfe]));
    std::fs::create_dir(&odd).unwrap();
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(odd.join("cgroup.procs"))
        .unwrap();
    let mut cmd = std::process::Command::new(victim_bin());
    let child = spawn_joining(cmd.arg("segv"), &procs).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    let record = agent.wait_for_pid(pid, WAIT).unwrap();
    let lossy = format!("/{}/s\u{fffd}\u{fffd}", container.cgroup.rel);
    if record.record.cgroup != lossy || record.reason() != "Crashed" {
        wrong.push(format!("non-UTF-8 name: {}", record.json));
    }
    still_records(&mut agent, &container).unwrap();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A cgroup path longer than the 512 bytes a `cgroup_mkdir` event carries: the event's cut
/// path must not stand for the cgroup (a wrong `cgroup` below a container; no container at
/// all when the cut falls in the container's own name, and then no record).
#[test]
fn paths_longer_than_a_kernel_event_are_recorded_whole() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdCrio).unwrap();
    let long_prefixed = Container::with_path(|top, uid, id| {
        format!("{top}/{LONG_PREFIX}/kubepods/burstable/pod{uid}/{id}")
    })
    .unwrap();
    let long = nest(&container, 10, |l| format!("{l}{}", "x".repeat(120)));
    let wrong: Vec<String> = [
        killed_in(&mut agent, "1.3 KB below a container", &container, &long),
        killed_in(
            &mut agent,
            "a container's own path of 540 bytes",
            &long_prefixed,
            &long_prefixed.cgroup,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    still_records(&mut agent, &container).unwrap();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
