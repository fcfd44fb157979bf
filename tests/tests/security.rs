//! Security: what the running agent holds (no capability, no way to regain one), what it
//! exposes (three GET paths, loopback when asked), what it never writes (argv, environment),
//! and the dependency policy (`cargo deny`). Which capabilities it truly needs:
//! `security_caps.rs`. Needs root; run through `cargo xtask test` (or build `coroner` first).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use coroner_tests::agent::Agent;
use coroner_tests::agent::expect::{Container, still_records};
use coroner_tests::cgroups::{Layout, unique_hex};
use coroner_tests::http;
use coroner_tests::privileges::unprivileged;
use coroner_tests::victim::{reap, signal_pid, spawn_joining, victim_bin};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn every_thread_ends_without_capabilities_and_without_new_privileges() {
    let mut agent = Agent::start().unwrap();
    // A death in a container first, so that every part of the agent has run.
    let container = Container::new(Layout::CgroupfsBurstable).unwrap();
    still_records(&mut agent, &container).unwrap();
    // Started as root with every capability: the agent holds CAP_SETPCAP until it drops,
    // so the bounding set goes too.
    unprivileged(agent.pid().unwrap(), 0).unwrap();
}

#[test]
fn http_serves_only_metrics_health_and_terminations() {
    let agent = Agent::start().unwrap();
    let addr = agent.addr();
    let send = |method: &str, path: &str| {
        http::exchange(
            addr,
            &format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
        .status
    };
    for path in [
        "/metrics",
        "/livez",
        "/readyz",
        "/healthz",
        "/v1/terminations",
    ] {
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
        "/livez/x",
        "/readyz/x",
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
    let procs = fs::File::options()
        .write(true)
        .open(container.cgroup.procs_file())
        .unwrap();
    let mut cmd = Command::new(victim_bin());
    cmd.args(args)
        .arg(format!("--token={secret}"))
        .env("CORONER_TEST_API_TOKEN", secret)
        .env("DATABASE_URL", format!("postgres://app:{secret}@db/app"));
    spawn_joining(&mut cmd, &procs).unwrap()
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
