//! Every drop counted: each stage of `coroner_events_lost_total` is forced here and seen to
//! move. Needs root; run through `cargo xtask test` (or build `coroner` first).
//!
//! Stage by stage:
//! - `kernel`: the real agent with a one-page ring buffer, stopped (SIGSTOP) while thousands
//!   of processes die by signal in a container.
//! - `json`: the real agent writing to `/dev/full`.
//! - `cgroup`: the real agent with a `--cgroup-root` whose ids resolve nothing (and, in
//!   `losses_unit.rs`, the correlator with a lookup answering `None`).
//! - `kube_event`: the real agent, `--kube on`, against the API server double refusing Events.
//! - `label`: `e2e_kube.rs` (`the_api_server_down_at_start_then_up`), not repeated here.
//! - `channel`, `decode`, `correlate`: at unit level, in `losses_unit.rs` (no outside action
//!   forces them deterministically).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use coroner::export::LossStage;
use coroner_tests::agent::bare::Bare;
use coroner_tests::agent::expect::Container;
use coroner_tests::agent::{Agent, Options};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::objects::{pod, with_running};
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::exposition::lost;
use coroner_tests::victim::reap;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
/// The kernel counters reach the metrics every second, the API side's every 2 s.
const COUNTED: Duration = Duration::from_secs(8);

/// The end-to-end tests one at a time: every agent sees every death on the machine, and the
/// storm of one test would move the counters another one reads.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn losses(agent: &Agent, stage: &str) -> u64 {
    lost(&agent.get("/metrics").unwrap().body, stage)
}

fn all_losses(agent: &Agent) -> u64 {
    let body = agent.get("/metrics").unwrap().body;
    LossStage::ALL.iter().map(|s| lost(&body, s.as_str())).sum()
}

/// Polls `check` until it holds; panics with `what` after `limit`.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => panic!("{what} within {limit:?}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Stops a process for as long as it lives, and lets it go on even when the test panics.
struct Stopped(i32);

impl Stopped {
    fn new(pid: u32) -> Self {
        let pid = pid as i32;
        // SAFETY: kill(2) on the agent this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the agent this test stopped.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

fn page_kib() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(page / 1024).unwrap_or(4)
}

#[test]
fn kernel_a_full_ring_buffer_is_counted_and_the_agent_recovers() {
    const DEATHS: u32 = 3_000;
    let _serial = serial();
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    let mut agent = Agent::start_with(&Options {
        args: vec!["--ring-buffer-kib".into(), page_kib().to_string().into()],
        ..Options::default()
    })
    .unwrap();
    let (kernel_before, all_before) = (losses(&agent, "kernel"), all_losses(&agent));

    // While the agent sleeps, a page of ring buffer holds a few dozen events; the storm
    // makes two per death (the SIGKILL and the exit).
    let storm_pid = {
        let _stopped = Stopped::new(agent.pid().unwrap());
        let storm = container
            .spawn(&["fork-kill", &DEATHS.to_string()])
            .unwrap();
        let pid = storm.id();
        assert_eq!(reap(storm).unwrap().exit_code(), Some(0), "the storm ran");
        pid
    };

    eventually("stage kernel counted", COUNTED, || {
        let now = losses(&agent, "kernel");
        (now > kernel_before)
            .then_some(())
            .ok_or(format!("still {now}"))
    });
    let health = agent.get("/healthz").unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    let restarted = container.sibling().unwrap();
    let next = restarted.spawn(&["exit", "3"]).unwrap();
    let next_pid = next.id();
    reap(next).unwrap();
    let record = agent.wait_for_pid(next_pid, WAIT).unwrap();
    assert_eq!(record.reason(), "Error");

    // Nothing lost silently: every child of the storm without a record is a counted loss
    // (other deaths on the machine can only add to the losses, never hide one).
    let mut figures = String::new();
    eventually("every storm death recorded or counted", COUNTED, || {
        let recorded = agent
            .records()
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|r| r.record.ppid == storm_pid && r.record.cgroup == container.path())
            .count() as u64;
        let missing = u64::from(DEATHS) - recorded;
        let counted = all_losses(&agent) - all_before;
        figures = format!(
            "{recorded} of {DEATHS} storm deaths recorded, {missing} missing, {counted} losses \
             counted, {} in stage kernel",
            losses(&agent, "kernel") - kernel_before
        );
        (counted >= missing).then_some(()).ok_or(figures.clone())
    });
    eprintln!("{figures}");
    assert!(
        agent
            .records()
            .unwrap()
            .iter()
            .filter(|r| r.record.ppid == storm_pid)
            .count()
            < DEATHS as usize,
        "the ring buffer of one page held the whole storm: the test staged no loss"
    );
}

#[test]
fn kernel_the_ring_buffer_size_is_checked() {
    for kib in ["0", "3", "6", "2097152", "four"] {
        let out = std::process::Command::new(coroner_tests::agent::coroner_bin())
            .args(["--kube", "off", "--ring-buffer-kib", kib])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(2) && stderr.contains("--ring-buffer-kib"),
            "--ring-buffer-kib {kib}: {}\n{stderr}",
            out.status
        );
    }
}

#[test]
fn json_a_failing_output_is_counted_and_records_are_still_served() {
    let _serial = serial();
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let agent = Bare::start_ready(&["--events-json", "/dev/full"]).unwrap();
    let mut pids = Vec::new();
    let starts: Vec<Container> = (0..3).map(|_| container.sibling().unwrap()).collect();
    for (start, code) in starts.iter().zip(["0", "1", "2"]) {
        let child = start.spawn(&["exit", code]).unwrap();
        pids.push(child.id());
        reap(child).unwrap();
    }
    let mut served = Vec::new();
    eventually("the deaths in /v1/terminations", WAIT, || {
        let answer = agent.get("/v1/terminations").map_err(|e| e.to_string())?;
        let status = answer.status;
        served = serde_json::from_str::<Vec<Value>>(&answer.body).map_err(|e| e.to_string())?;
        let found: Vec<u64> = served.iter().filter_map(|r| r["pid"].as_u64()).collect();
        (status == 200 && pids.iter().all(|p| found.contains(&u64::from(*p))))
            .then_some(())
            .ok_or(format!("{status}: {found:?} lacks some of {pids:?}"))
    });
    // The metric moves before a record reaches the recent ring, so every record served has
    // been counted by now; deaths elsewhere on the machine only add to both.
    let failed = lost(&agent.get("/metrics").unwrap().body, "json");
    assert!(
        failed >= served.len() as u64 && failed >= 3,
        "{failed} JSON write failures counted, {} records written to /dev/full",
        served.len()
    );
    agent.stop().unwrap();
}

/// A copy of the memory hierarchy made of plain directories: `--cgroup-root` accepts it (a
/// v1 `memory` directory with `memory.limit_in_bytes`), its paths are those of the real one,
/// but its inode numbers are not memory cgroup ids.
struct FakeCgroupRoot(PathBuf);

impl FakeCgroupRoot {
    fn with(containers: &[&Container]) -> Self {
        let root = std::env::temp_dir().join(format!("coroner-fake-cgroup-{}", unique_hex(10)));
        let memory = root.join("memory");
        fs::create_dir_all(&memory).unwrap();
        fs::write(
            memory.join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        fs::write(memory.join("cgroup.procs"), "").unwrap();
        for c in containers {
            fs::create_dir_all(memory.join(c.path().trim_start_matches('/'))).unwrap();
        }
        Self(root)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for FakeCgroupRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn cgroup_deaths_in_memcgs_that_do_not_resolve_are_counted() {
    // What really happens with a wrong --cgroup-root: walks find the right paths under the
    // wrong inode numbers, so no memcg id resolves through them — but the cgroup_mkdir probe
    // names every cgroup created while the agent runs, whatever the root. Only containers
    // older than the agent depend on the walk, so the one that loses is made before it.
    const DEATHS: usize = 5;
    let _serial = serial();
    let old = Container::new(Layout::CgroupfsBurstable).unwrap();
    let fake = FakeCgroupRoot::with(&[&old]);
    let mut agent = Agent::start_with(&Options {
        args: vec![OsString::from("--cgroup-root"), fake.path().into()],
        ..Options::default()
    })
    .unwrap();
    let before = losses(&agent, "cgroup");
    let mut pids = Vec::new();
    for _ in 0..DEATHS {
        // Deaths by a signal: whatever their role, each one needs a record.
        let child = old.spawn(&["abort"]).unwrap();
        pids.push(child.id());
        reap(child).unwrap();
    }
    let fresh = Container::new(Layout::CgroupfsBurstable).unwrap();
    let child = fresh.spawn(&["exit", "1"]).unwrap();
    let fresh_pid = child.id();
    reap(child).unwrap();
    let record = agent.wait_for_pid(fresh_pid, WAIT).unwrap();
    assert_eq!(
        record.record.container_id.as_deref(),
        Some(fresh.container_id.as_str()),
        "a container made while the agent runs resolves through its cgroup_mkdir event"
    );

    eventually("stage cgroup counted", COUNTED, || {
        let counted = losses(&agent, "cgroup") - before;
        (counted >= DEATHS as u64)
            .then_some(())
            .ok_or(format!("{counted} of {DEATHS} unresolved deaths counted"))
    });
    let records = agent.stop().unwrap();
    let recorded: Vec<u32> = records
        .iter()
        .map(coroner_tests::agent::Record::pid)
        .filter(|p| pids.contains(p))
        .collect();
    assert!(
        recorded.is_empty(),
        "deaths in a memcg that did not resolve have records: {recorded:?}"
    );
}

#[test]
fn kube_event_events_the_api_server_refuses_are_counted() {
    const NS: &str = "shop";
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let server = ApiServer::start().unwrap();
    server.fail_events(true);
    let node = format!("node-losses-{}", unique_hex(8));
    let c = Container::new(Layout::CgroupfsBurstable).unwrap();
    let name = format!("api-{}", unique_hex(5));
    server.put_pod(&with_running(
        pod(NS, &name, &c.pod_uid, &node),
        "api",
        &c.container_id,
    ));
    let mut agent = Agent::start_with(&Options {
        kube: Some("on".into()),
        node: Some(node),
        env: vec![("KUBECONFIG".into(), server.kubeconfig().into())],
        args: Vec::new(),
    })
    .unwrap();
    assert!(
        rt.block_on(server.wait_until(WAIT, |s| s.open_watches() >= 1)),
        "the agent never watched its pods\n{}",
        agent.log_tail()
    );
    let (before, label_before) = (losses(&agent, "kube_event"), losses(&agent, "label"));
    let child = c.spawn(&["exit", "2"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    let record = agent.wait_for_pid(pid, WAIT).unwrap();
    // Labelled, so the Event had a pod to name: what is lost is the post.
    assert_eq!(record.record.pod.as_deref(), Some(name.as_str()));
    let posts = || {
        server.count_requests(
            "POST",
            &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
        )
    };
    eventually("stage kube_event counted", COUNTED, || {
        let counted = losses(&agent, "kube_event") - before;
        (posts() >= 1 && counted == posts() as u64)
            .then_some(())
            .ok_or(format!(
                "{counted} Events counted lost, {} refused\n{}",
                posts(),
                agent.log_tail()
            ))
    });
    // Nothing went out unlabelled meanwhile (that counts in kube_event too).
    assert_eq!(losses(&agent, "label"), label_before);
    assert!(server.events().is_empty(), "the double took no Event");
}
