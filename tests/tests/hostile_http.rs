//! Hostile HTTP clients against the real `coroner` binary: clients that ask for a big body
//! and never read it, and thousands that connect and then do nothing. The agent keeps
//! recording, answers the next scrape, and leaks no descriptor. Needs root.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::{Container, still_records};
use coroner_tests::cgroups::Layout;
use coroner_tests::victim::reap;

const WAIT: Duration = Duration::from_secs(10);

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

/// The agent's open sockets: what a client's connection holds. Other descriptors (the memory
/// files of containers that died meanwhile, kept open by a bounded cache) are not the
/// clients' to leak.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
        dir.flatten()
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
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
        still_records(&mut agent, &container).unwrap();
    }
    drop(stuck);
    still_records(&mut agent, &container).unwrap();
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
    killed_in(&mut agent, &container);
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
    killed_in(&mut agent, &container);
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

/// A death in `container` itself (an exec session killed: recorded whatever its role), so that
/// the agent opens no new container's memory files while descriptors are counted.
fn killed_in(agent: &mut coroner_tests::agent::Agent, container: &Container) {
    let child = container.spawn(&["sleep", "30"]).unwrap();
    let pid = child.id();
    coroner_tests::victim::signal_pid(pid, libc::SIGKILL);
    coroner_tests::victim::reap(child).unwrap();
    let record = agent
        .wait_for_pid(pid, coroner_tests::agent::expect::RECORD_WAIT)
        .unwrap();
    assert_eq!(record.reason(), "Killed", "{}", record.json);
}
