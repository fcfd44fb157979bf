//! Faults around the real `coroner` binary: stopped (SIGTERM) and killed (SIGKILL) in the
//! middle of a storm of deaths, then started again on the same `--events-json` file. The
//! file stays a file of whole JSON lines, and deaths after the restart are recorded.
//! (API server faults: `faults_kube.rs`.) Needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coroner::record::TerminationRecord;
use coroner_tests::agent::bare::Bare;
use coroner_tests::agent::expect::Container;
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::victim::reap;

/// Two agents must share one `--events-json` file, which the harness's `Agent` (a file of
/// its own each) does not do: [`Bare`] with the file given.
fn launch(events: &Path) -> Bare {
    let node = format!("node-{}", unique_hex(6));
    let events = events.to_str().expect("a UTF-8 temporary path");
    Bare::start_ready(&["--node-name", &node, "--events-json", events])
        .expect("the agent starts and its probes attach")
}

/// Deaths in one container, one after another, each with the time it was reaped.
struct Storm {
    stop: Arc<AtomicBool>,
    deaths: Arc<Mutex<Vec<(u32, Instant)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Storm {
    fn start(container: Arc<Container>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let deaths = Arc::new(Mutex::new(Vec::new()));
        let (s, d) = (Arc::clone(&stop), Arc::clone(&deaths));
        let thread = std::thread::spawn(move || {
            let mut i = 0u32;
            while !s.load(Ordering::Relaxed) {
                // Each death a start of the pod's next container: a container has one init.
                let start = container.sibling().unwrap();
                let child = start.spawn(&["exit", &(i % 4).to_string()]).unwrap();
                let pid = child.id();
                reap(child).unwrap();
                d.lock().unwrap().push((pid, Instant::now()));
                i += 1;
            }
        });
        Self {
            stop,
            deaths,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<(u32, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.deaths.lock().unwrap())
    }
}

/// The file's lines: each whole line parsed, and the unterminated rest (if any).
fn lines(events: &Path) -> (Vec<Result<TerminationRecord, String>>, String) {
    let text = fs::read(events).unwrap();
    let text = String::from_utf8(text).expect("the record file is UTF-8");
    let (whole, rest) = match text.rfind('\n') {
        Some(end) => (&text[..=end], &text[end + 1..]),
        None => ("", text.as_str()),
    };
    let parsed = whole
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}")))
        .collect();
    (parsed, rest.to_owned())
}

fn records_of(events: &Path) -> Vec<TerminationRecord> {
    let (parsed, rest) = lines(events);
    assert!(rest.is_empty(), "a partial last line: {rest:?}");
    parsed
        .into_iter()
        .map(|l| l.unwrap_or_else(|e| panic!("a line is not a record: {e}")))
        .collect()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coroner-faults-{}", unique_hex(10)));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for_pid(events: &Path, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines(events).0.iter().flatten().any(|r| r.pid == pid) {
        assert!(Instant::now() < deadline, "no record of pid {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_mid_storm_then_a_new_agent_on_the_same_file_appends() {
    let dir = temp_dir();
    let events = dir.join("events.json");
    let container = Arc::new(Container::new(Layout::CgroupfsBurstable).unwrap());
    let first = launch(&events);
    let storm = Storm::start(Arc::clone(&container));
    std::thread::sleep(Duration::from_millis(1500));
    let terminated = Instant::now();
    let status = first.signal(libc::SIGTERM);
    assert!(status.is_some_and(|s| s.success()), "SIGTERM: {status:?}");
    let stopped = Instant::now();
    let before_restart = records_of(&events).len();
    let second = launch(&events);
    let ready = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let deaths = storm.stop();
    wait_for_pid(&events, deaths.last().unwrap().0);
    let status = second.signal(libc::SIGTERM);
    assert!(status.is_some_and(|s| s.success()), "SIGTERM: {status:?}");

    let records = records_of(&events);
    assert!(
        records.len() > before_restart,
        "the second agent appended nothing"
    );
    let recorded = |pid: u32| records.iter().filter(|r| r.pid == pid).count();
    let dup: Vec<u32> = deaths
        .iter()
        .map(|d| d.0)
        .filter(|p| recorded(*p) > 1)
        .collect();
    assert!(dup.is_empty(), "recorded twice: {dup:?}");
    let missed = |from: Instant, to: Instant| -> Vec<u32> {
        deaths
            .iter()
            .filter(|(pid, at)| *at >= from && *at <= to && recorded(*pid) == 0)
            .map(|d| d.0)
            .collect()
    };
    let start = deaths[0].1;
    assert_eq!(missed(start, terminated), [0u32; 0], "before the SIGTERM");
    assert_eq!(
        missed(ready, Instant::now()),
        [0u32; 0],
        "after the restart"
    );
    let gap = deaths
        .iter()
        .filter(|(_, at)| *at > terminated && *at < ready)
        .count();
    eprintln!(
        "{} deaths, {} records; {gap} deaths while no agent was ready ({:?} to stop, {:?} to \
         restart)",
        deaths.len(),
        records.len(),
        stopped - terminated,
        ready - stopped
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_mid_storm_leaves_whole_lines_and_the_restart_appends_after_them() {
    let dir = temp_dir();
    let events = dir.join("events.json");
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let first = launch(&events);
    // As fast as deaths come: children killed by their parent, a record each.
    let storm = container.spawn(&["fork-kill", "20000"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(&events).0.len() < 500 {
        assert!(Instant::now() < deadline, "the storm made no records");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = first.signal(libc::SIGKILL);
    assert_eq!(
        status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        Some(9)
    );
    let _ = reap(storm);
    let (parsed, rest) = lines(&events);
    let broken: Vec<&String> = parsed.iter().filter_map(|l| l.as_ref().err()).collect();
    assert!(broken.is_empty(), "torn lines before the last: {broken:?}");
    eprintln!(
        "{} whole lines at the SIGKILL; unterminated rest: {} bytes",
        parsed.len(),
        rest.len()
    );

    let second = launch(&events);
    let child = container.spawn(&["exit", "5"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    wait_for_pid(&events, pid);
    let status = second.signal(libc::SIGTERM);
    assert!(status.is_some_and(|s| s.success()));
    let (after, rest) = lines(&events);
    assert!(
        rest.is_empty(),
        "partial last line after a clean stop: {rest:?}"
    );
    assert!(
        after
            .iter()
            .flatten()
            .any(|r| r.pid == pid && r.exit_code == Some(5))
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_last_line_does_not_swallow_the_next_record() {
    // What a SIGKILL during a write that spans pages, a full disk or a power cut leaves: a
    // last line without its end. The agent started on that file must not glue its first
    // record (whoever's: every container death on the node is recorded) to it.
    const TORN: &str = "{\"time\":\"2026-11-22T03:00:00Z\",\"node\":\"n";
    let dir = temp_dir();
    let events = dir.join("events.json");
    fs::write(&events, TORN).unwrap();
    let container = Container::new(Layout::CgroupfsGuaranteed).unwrap();
    let agent = launch(&events);
    let child = container.spawn(&["exit", "6"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&events)
        .unwrap()
        .contains(&format!("\"pid\":{pid},"))
    {
        assert!(Instant::now() < deadline, "no record of pid {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(agent.signal(libc::SIGTERM).is_some_and(|s| s.success()));
    let text = fs::read_to_string(&events).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    assert_eq!(
        first, TORN,
        "the first record after a torn line is glued to it"
    );
    for line in lines {
        let record: Result<TerminationRecord, _> = serde_json::from_str(line);
        assert!(record.is_ok(), "not a record: {line:?}");
    }
    let _ = fs::remove_dir_all(&dir);
}
