//! Security: what the running agent holds (no capability, no way to regain one), what it
//! exposes (three GET paths, loopback when asked), what it never writes (argv, environment),
//! which capabilities it truly needs, and the dependency policy (`cargo deny`). Needs root;
//! run through `cargo xtask test` (or build `coroner` first).
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
//!   exec-failure probes are not attached and `/healthz` says 503 naming them.
//! - Without `CAP_SYSLOG` (and `perf_event_paranoid` ≥ 2) /proc/kallsyms hides addresses: the
//!   agent warns and decides OOM scopes from the memory cgroup limits instead.
//! - Without `CAP_SYS_RESOURCE` `setrlimit(RLIMIT_MEMLOCK)` fails: a warning (BPF memory is
//!   charged to the memory cgroup since 5.11).
//! - Without `CAP_SETPCAP` the agent cannot empty its bounding set; it still ends with no
//!   effective or permitted capability and `no_new_privs`, so an exec (even as uid 0) gains
//!   nothing back.

#[allow(dead_code, reason = "shared with losses.rs; each uses part of it")]
mod support;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::Container;
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::victim::{reap, signal_pid, victim_bin};
use serde_json::Value;
use support::{Bare, Started, metric, request};

const WAIT: Duration = Duration::from_secs(10);
const CAP_PERFMON: i32 = 38;
const CAP_BPF: i32 = 39;

/// One thread's capability sets and `NoNewPrivs`, from `/proc/<pid>/task/<tid>/status`.
#[derive(Debug, PartialEq, Eq)]
struct ThreadPrivileges {
    tid: String,
    inheritable: u64,
    permitted: u64,
    effective: u64,
    bounding: u64,
    ambient: u64,
    no_new_privs: bool,
}

fn thread_privileges(pid: u32) -> Vec<ThreadPrivileges> {
    let mut threads = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map_or_else(|| panic!("no {name} in {status}"), str::trim)
                .to_owned()
        };
        let caps = |name: &str| u64::from_str_radix(&field(name), 16).unwrap();
        threads.push(ThreadPrivileges {
            tid: task.file_name().to_string_lossy().into_owned(),
            inheritable: caps("CapInh"),
            permitted: caps("CapPrm"),
            effective: caps("CapEff"),
            bounding: caps("CapBnd"),
            ambient: caps("CapAmb"),
            no_new_privs: field("NoNewPrivs") == "1",
        });
    }
    threads
}

/// Every thread of `pid` holds no capability, cannot gain one, and has `bounding` as its
/// bounding set.
fn assert_unprivileged(pid: u32, bounding: u64) {
    let threads = thread_privileges(pid);
    // The main thread, the kernel stage and the async runtime's workers at least.
    assert!(threads.len() >= 3, "{threads:#?}");
    for t in &threads {
        assert_eq!(
            (t.inheritable, t.permitted, t.effective, t.ambient),
            (0, 0, 0, 0),
            "thread {} holds capabilities: {t:?}",
            t.tid
        );
        assert_eq!(t.bounding, bounding, "thread {}: {t:?}", t.tid);
        assert!(
            t.no_new_privs,
            "thread {} may gain privileges: {t:?}",
            t.tid
        );
    }
}

/// A death in a container, so that every part of the agent has run.
fn one_death(agent: &mut Agent) {
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    let child = container.spawn(&["exit", "0"]).unwrap();
    let pid = child.id();
    reap(child).unwrap();
    agent.wait_for_pid(pid, WAIT).unwrap();
}

#[test]
fn every_thread_ends_without_capabilities_and_without_new_privileges() {
    let mut agent = Agent::start().unwrap();
    one_death(&mut agent);
    // Started as root with every capability: the agent holds CAP_SETPCAP until it drops,
    // so the bounding set goes too.
    assert_unprivileged(agent.pid().unwrap(), 0);
}

#[test]
fn http_serves_only_metrics_healthz_and_terminations() {
    let agent = Agent::start().unwrap();
    let addr = agent.addr();
    let send = |method: &str, path: &str| {
        let (status, _) = request(
            addr,
            &format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
        status
    };
    for path in ["/metrics", "/healthz", "/v1/terminations"] {
        assert_eq!(send("GET", path), 200, "GET {path}");
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            assert_eq!(send(method, path), 405, "{method} {path}");
        }
    }
    for path in [
        "/",
        "/debug",
        "/debug/pprof",
        "/v1",
        "/v1/",
        "/v1/terminations/1",
        "/metrics/x",
        "/healthz/x",
        "/../etc/passwd",
        "/admin",
        "/config",
        "/env",
    ] {
        assert_eq!(send("GET", path), 404, "GET {path}");
    }
}

/// Sockets listening on `port` in `/proc/net/<table>`: their local addresses, as the kernel
/// writes them (hex, host byte order for IPv4).
fn listening(table: &str, port: u16) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            let (addr, hex_port) = local.rsplit_once(':')?;
            (*state == "0A" && u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| addr.to_owned())
        })
        .collect()
}

/// The machine's IPv4 addresses that are not loopback.
fn other_ipv4_addresses() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list that freeifaddrs releases; entries are only read.
    unsafe {
        if libc::getifaddrs(&raw mut list) != 0 {
            return out;
        }
        let mut next = list;
        while !next.is_null() {
            let addr = (*next).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                // An AF_INET address is a sockaddr_in; read it without assuming alignment.
                let v4 = addr.cast::<libc::sockaddr_in>().read_unaligned();
                let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                if !ip.is_loopback() {
                    out.push(ip);
                }
            }
            next = (*next).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

#[test]
fn listen_on_loopback_is_reachable_on_loopback_only() {
    // The harness starts the agent with `--listen 127.0.0.1:<port>`.
    let agent = Agent::start().unwrap();
    let port = agent.addr().port();
    assert_eq!(
        listening("tcp", port),
        ["0100007F"],
        "one IPv4 listener on 127.0.0.1"
    );
    assert!(
        listening("tcp6", port).is_empty(),
        "no IPv6 listener on port {port}"
    );
    assert_eq!(agent.get("/healthz").unwrap().status, 200);
    let others: Vec<IpAddr> = std::iter::once(IpAddr::from([127, 0, 0, 2]))
        .chain(other_ipv4_addresses().into_iter().map(IpAddr::from))
        .chain([IpAddr::from(std::net::Ipv6Addr::LOCALHOST)])
        .collect();
    for ip in others {
        let refused =
            TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2));
        // Refused, or unreachable where the address family is off: never an answer.
        assert!(refused.is_err(), "{ip}:{port} accepted a connection");
    }
}

/// Starts the helper in `container` with an extra argument and environment variable.
fn spawn_with_secret(container: &Container, args: &[&str], secret: &str) -> Child {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(container.cgroup.procs_file())
        .unwrap();
    let fd = procs.as_raw_fd();
    let mut cmd = Command::new(victim_bin());
    cmd.args(args)
        .arg(format!("--token={secret}"))
        .env("CORONER_TEST_API_TOKEN", secret)
        .env("DATABASE_URL", format!("postgres://app:{secret}@db/app"))
        .stdin(Stdio::null());
    // SAFETY: only write(2) between fork and exec; "0" moves the writing process itself.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(procs);
    child
}

#[test]
fn records_never_carry_argv_or_environment() {
    let secret = format!("s3cr3t{}", unique_hex(16));
    let mut agent = Agent::start().unwrap();
    let container = Container::new(Layout::SystemdContainerd).unwrap();
    let exits = spawn_with_secret(&container, &["exit", "3"], &secret);
    let killed = spawn_with_secret(&container, &["sleep", "30"], &secret);
    let crashes = spawn_with_secret(&container, &["segv"], &secret);
    let pids = [exits.id(), killed.id(), crashes.id()];
    std::thread::sleep(Duration::from_millis(100));
    signal_pid(killed.id(), libc::SIGTERM);
    for child in [exits, killed, crashes] {
        reap(child).unwrap();
    }
    for pid in pids {
        agent.wait_for_pid(pid, WAIT).unwrap();
    }
    let mut outputs: Vec<(String, String)> = agent
        .records()
        .unwrap()
        .iter()
        .map(|r| ("the JSON lines".to_owned(), r.json.to_string()))
        .collect();
    for path in ["/v1/terminations", "/metrics", "/healthz"] {
        outputs.push((path.to_owned(), agent.get(path).unwrap().body));
    }
    outputs.push(("the log".to_owned(), agent.log_tail()));
    for (what, text) in &outputs {
        assert!(
            !text.contains(&secret) && !text.contains("CORONER_TEST_API_TOKEN"),
            "{what} carries the victim's argv or environment:\n{text}"
        );
    }
    // The records are there, and name the process by its comm only.
    let records: Vec<Value> = agent
        .records()
        .unwrap()
        .iter()
        .filter(|r| pids.contains(&r.pid()))
        .map(|r| r.json.clone())
        .collect();
    assert_eq!(records.len(), 3, "{records:#?}");
    assert!(
        records.iter().all(|r| r["comm"] == "coroner-victim"),
        "{records:#?}"
    );
}

// ---- the capabilities the agent needs ---------------------------------------------------

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

fn start_answering(pre_exec: support::PreExec) -> Bare {
    match Bare::start(&[], Some(pre_exec)).unwrap() {
        Started::Answering(bare) => bare,
        Started::Exited { status, log } => panic!("coroner exited ({status}):\n{log}"),
    }
}

/// The pids of `/v1/terminations` once `pid` is among them.
fn wait_served(agent: &Bare, pid: u32) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = agent.get("/v1/terminations").unwrap();
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
    let (status, body) = agent.get("/healthz").unwrap();
    assert_eq!(status, 200, "every probe attached: {body}\n{}", agent.log());
    let metrics = agent.get("/metrics").unwrap().1;
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
    assert_unprivileged(agent.pid().unwrap(), (1 << CAP_BPF) | (1 << CAP_PERFMON));
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
        ("CAP_BPF alone", bpf_only as support::PreExec),
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
    let (status, body) = agent.get("/healthz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("execve"), "the exec probes are named: {body}");
    let metrics = agent.get("/metrics").unwrap().1;
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

// ---- dependencies ----------------------------------------------------------------------

#[test]
fn cargo_deny_licenses_bans_sources() {
    // `cargo xtask test` installs cargo-deny under ~/.cache/coroner/tools and puts it on PATH;
    // the advisory database cannot be fetched on these machines, so advisories are not checked.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let mut path = vec![Path::new(&home).join(".cache/coroner/tools/bin")];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .env("PATH", std::env::join_paths(path).unwrap())
        .args(["deny", "--offline", "check", "licenses", "bans", "sources"])
        .output()
        .expect("running cargo deny");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cargo deny check licenses bans sources failed (is cargo-deny installed? \
         `cargo xtask test` installs it):\n{stderr}"
    );
}
