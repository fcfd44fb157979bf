//! Hostile input through the real `coroner` binary: cgroup paths that look like kubelet's but
//! are not, a comm that is not UTF-8, container cgroups nested very deep and very long, and
//! thousands of HTTP clients that connect and then do nothing. The agent keeps recording and
//! answers the next scrape. (The API side's hostile input: `hostile_kube.rs`.) Needs root.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt as _;
use std::time::{Duration, Instant};

use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::{Container, common};
use coroner_tests::cgroups::{Layout, TestCgroup, kubepods_top};
use coroner_tests::victim::{reap, signal_pid, spawn_in};

const WAIT: Duration = Duration::from_secs(10);

/// The comm `coroner-victim renamed …` gives itself (15 bytes, none of them UTF-8).
const HOSTILE_COMM: [u8; 15] = [
    0x80, 0x81, 0xfe, 0xff, 0xc0, 0xc1, 0xf5, 0xf8, 0x90, 0xa0, 0xb0, 0xe0, 0xed, 0xf0, 0x9f,
];

fn metric(agent: &Agent, name: &str) -> f64 {
    let body = agent.get("/metrics").expect("/metrics").body;
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A death in a container: proof the agent still records.
fn still_records(agent: &mut Agent, container: &Container) {
    let child = container.spawn(&["exit", "3"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    let record = agent.wait_for_pid(pid, WAIT).unwrap();
    common(&record, agent.node(), container, pid, true).unwrap();
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
    let mut pids = Vec::new();
    let mut cgroups = Vec::new();
    for path in &bogus {
        let cgroup = TestCgroup::create(path).unwrap();
        for args in [&["segv"][..], &["exit", "1"]] {
            let child = spawn_in(&cgroup, args).unwrap();
            pids.push(child.id());
            reap(child).unwrap();
        }
        cgroups.push(cgroup);
    }
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    still_records(&mut agent, &container);
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
            "deaths in bogus cgroups not counted"
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
    still_records(&mut agent, &container);
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
    let mut cmd = std::process::Command::new(coroner_tests::victim::victim_bin());
    let child = spawn_via(&mut cmd, &procs, &["segv"]);
    let pid = child.id();
    reap(child).unwrap();
    let record = agent.wait_for_pid(pid, WAIT).unwrap();
    let lossy = format!("/{}/s\u{fffd}\u{fffd}", container.cgroup.rel);
    if record.record.cgroup != lossy || record.reason() != "Crashed" {
        wrong.push(format!("non-UTF-8 name: {}", record.json));
    }
    still_records(&mut agent, &container);
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
    still_records(&mut agent, &container);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Starts `cmd args` inside the cgroup whose `cgroup.procs` is `procs` (for directories a
/// `TestCgroup` cannot name).
fn spawn_via(
    cmd: &mut std::process::Command,
    procs: &std::fs::File,
    args: &[&str],
) -> std::process::Child {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let fd = procs.as_raw_fd();
    cmd.args(args).stdin(std::process::Stdio::null());
    // SAFETY: only write(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// Lets this process hold thousands of sockets.
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit);
        limit.rlim_cur = limit.rlim_max.min(want.max(limit.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// A client that asks for `path` and never reads the answer, with a tiny receive buffer.
fn never_reads(addr: SocketAddr, path: &str) -> Option<TcpStream> {
    let socket = socket2_free_connect(addr)?;
    let mut stream = socket;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    Some(stream)
}

/// `connect` with a 4 KiB receive buffer set before the handshake (so the window stays
/// small), without a socket crate: socket(2), setsockopt(2), connect(2).
fn socket2_free_connect(addr: SocketAddr) -> Option<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it is wrapped.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let stream = TcpStream::from_raw_fd(fd);
        let rc = libc::connect(
            fd,
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        (rc == 0).then_some(stream)
    }
}

/// Fills `/v1/terminations` (the agent keeps the last 1024 records): a body of about a MiB.
fn big_terminations_body(agent: &mut Agent, container: &Container) -> usize {
    let child = container.spawn(&["fork-kill", "1100"]).unwrap();
    reap(child).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let body = agent.get("/v1/terminations").unwrap().body;
        if body.len() > 512 << 10 || Instant::now() > deadline {
            return body.len();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn clients_that_never_read_hold_one_connection_each_and_nothing_else() {
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    let body = big_terminations_body(&mut agent, &container);
    assert!(body > 512 << 10, "/v1/terminations is only {body} bytes");
    let stuck: Vec<TcpStream> = ["/v1/terminations", "/metrics", "/v1/terminations"]
        .iter()
        .filter_map(|p| never_reads(agent.addr(), p))
        .collect();
    assert_eq!(stuck.len(), 3);
    // While they hang, scrapes are answered at once and deaths recorded.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(agent.get("/metrics").unwrap().status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        still_records(&mut agent, &container);
    }
    drop(stuck);
    still_records(&mut agent, &container);
}

#[test]
fn thousands_of_idle_clients_then_the_next_scrape_is_answered() {
    const CLIENTS: usize = 2000;
    raise_fd_limit(CLIENTS as u64 + 1024);
    let mut agent = Agent::start().unwrap();
    let pid = agent.pid().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    big_terminations_body(&mut agent, &container);
    let fds_before = open_fds(pid);

    // A third connect and send nothing, a third send half a request head, a third ask for a
    // big body and never read it; all opened at once from many threads.
    let addr = agent.addr();
    let clients: Vec<TcpStream> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                s.spawn(move || {
                    (w..CLIENTS)
                        .step_by(8)
                        .filter_map(|i| match i % 3 {
                            0 => TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok(),
                            1 => {
                                let mut c =
                                    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                                        .ok()?;
                                c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").ok()?;
                                Some(c)
                            }
                            _ => never_reads(addr, "/v1/terminations"),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let opened = clients.len();
    assert!(opened > CLIENTS / 2, "only {opened} of {CLIENTS} connected");
    // The agent keeps recording while they sit there.
    still_records(&mut agent, &container);
    let metrics_during = agent.get("/metrics").map(|r| r.status);

    drop(clients);
    let gone = Instant::now();
    let answered = loop {
        if let Ok(r) = agent.get("/metrics")
            && r.status == 200
        {
            break gone.elapsed();
        }
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "no scrape answered 10 s after the clients went:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        answered < Duration::from_secs(3),
        "next scrape after {answered:?}"
    );
    still_records(&mut agent, &container);
    // Every connection the clients made is closed again: no descriptor leaks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(pid) > fds_before + 2 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors open, {fds_before} before the clients",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{opened} clients connected; a scrape during them: {metrics_during:?}; the next one \
         after they went: {answered:?}"
    );
}
