//! The bench's own child processes: the same binary, started with a helper verb. Each is
//! single-threaded (so fork is cheap and safe) and runs where the orchestrator put it: a
//! storm inside a container's cgroup, a pod "shim" on the host.
//!
//! `__storm KIND START_NS DURATION_NS PROGRAM` — from `CLOCK_MONOTONIC` `START_NS` for
//! `DURATION_NS`, repeat one operation (`spawn`, `fork`, `signal`, `kill`, `getpid`, `pipe`);
//! print the count and the CPU time (ns) it took, its own and its reaped children's together.
//! `__deaths RATE START_NS DURATION_NS` — fork a child and kill it (SIGTERM and SIGKILL in
//! turn) `RATE` times a second (0: as fast as possible); print the count.
//! `__pods HOST_PROCS LIST` — for each container cgroup directory in the file `LIST`, stage
//! twelve deaths, one per verdict and role (see [`pod_deaths`]); print the count of deaths.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd as _;

pub const STORM: &str = "__storm";
pub const DEATHS: &str = "__deaths";
pub const PODS: &str = "__pods";

/// Deaths [`pod_deaths`] stages per container: 8 of the main process, 4 of children.
pub const DEATHS_PER_CONTAINER: u64 = 12;

#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i64,
    };
    // SAFETY: an absolute sleep on a timespec we own; an interruption only ends it early.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &raw const ts,
            std::ptr::null_mut(),
        )
    };
}

fn wait_child(pid: i32) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
}

/// A child that waits to be killed.
fn fork_sleeper() -> i32 {
    // SAFETY: single-threaded process; the child only calls pause(2) until a signal ends it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: pause(2) has no preconditions.
            unsafe { libc::pause() };
        }
    }
    pid
}

/// Default action, then raise: the Rust runtime's own SIGSEGV handler would swallow a raise.
fn die_of(sig: i32) -> ! {
    // SAFETY: resetting a disposition and raising a signal in a process of our own.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
        libc::_exit(99)
    }
}

extern "C" fn on_usr1(_: i32) {}

/// User + system time of this process and of its reaped children, in nanoseconds. Unlike the
/// wall clock, it does not count the time other work on the machine takes the CPU away, and
/// it does count what the probes add: tracepoint programs run in the task that hits them.
fn cpu_ns() -> u64 {
    let total = |who| {
        // SAFETY: zeroed rusage is a valid out-parameter of getrusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into a struct we own.
        unsafe { libc::getrusage(who, &raw mut usage) };
        let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
        ns(usage.ru_utime) + ns(usage.ru_stime)
    };
    total(libc::RUSAGE_SELF) + total(libc::RUSAGE_CHILDREN)
}

fn storm(kind: &str, start: u64, duration: u64, program: &str) -> Result<String, String> {
    let path = CString::new(program).map_err(|e| e.to_string())?;
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let op: Box<dyn Fn(u64)> = match kind {
        "spawn" => Box::new(|_| {
            let mut pid = 0;
            // SAFETY: NUL-terminated argv and envp that outlive the call.
            let rc = unsafe {
                libc::posix_spawn(
                    &raw mut pid,
                    path.as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    argv.as_ptr().cast_mut().cast(),
                    envp.as_ptr().cast_mut().cast(),
                )
            };
            if rc == 0 {
                wait_child(pid);
            }
        }),
        "fork" => Box::new(|_| {
            // SAFETY: single-threaded; the child only calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: _exit(2) in the child.
                unsafe { libc::_exit(0) };
            }
            wait_child(pid);
        }),
        "signal" => {
            // SAFETY: a handler that does nothing, for a signal that would otherwise kill.
            unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
            // SAFETY: getpid(2) has no preconditions.
            let me = unsafe { libc::getpid() };
            Box::new(move |_| {
                // SAFETY: kill(2) on ourselves, with a handler installed.
                unsafe { libc::kill(me, libc::SIGUSR1) };
            })
        }
        "kill" => Box::new(kill_one),
        "getpid" => Box::new(|_| {
            // SAFETY: getpid(2) has no preconditions; the raw syscall, so no libc cache.
            unsafe { libc::syscall(libc::SYS_getpid) };
        }),
        "pipe" => {
            let partner = EchoPartner::start()?;
            Box::new(move |_| partner.round_trip())
        }
        other => return Err(format!("unknown storm {other:?}")),
    };
    sleep_until(start);
    let end = start + duration;
    let cpu_before = cpu_ns();
    let mut ops = 0;
    // The clock is read once per batch: a vDSO call is cheap, but not free next to a signal
    // or a syscall.
    let batch = if matches!(kind, "signal" | "getpid") {
        32
    } else {
        1
    };
    while monotonic_ns() < end {
        for _ in 0..batch {
            op(ops);
            ops += 1;
        }
    }
    // The pipe's partner is reaped here, before the CPU time is read: its time counts.
    drop(op);
    Ok(format!("{ops} {}", cpu_ns() - cpu_before))
}

/// A forked process that echoes every byte it reads back on a second pipe, until EOF.
struct EchoPartner {
    pid: i32,
    to: i32,
    from: i32,
}

impl EchoPartner {
    fn start() -> Result<Self, String> {
        let (mut there, mut back) = ([0i32; 2], [0i32; 2]);
        // SAFETY: pipe(2) into arrays we own; the forked child only reads, writes and exits
        // (the helper is single-threaded).
        unsafe {
            if libc::pipe(there.as_mut_ptr()) != 0 || libc::pipe(back.as_mut_ptr()) != 0 {
                return Err(format!("pipe: {}", std::io::Error::last_os_error()));
            }
            let pid = libc::fork();
            if pid == 0 {
                libc::close(there[1]);
                libc::close(back[0]);
                let mut byte = 0u8;
                while libc::read(there[0], (&raw mut byte).cast(), 1) == 1 {
                    if libc::write(back[1], (&raw const byte).cast(), 1) != 1 {
                        break;
                    }
                }
                libc::_exit(0);
            }
            libc::close(there[0]);
            libc::close(back[1]);
            if pid < 0 {
                return Err(format!("fork: {}", std::io::Error::last_os_error()));
            }
            Ok(Self {
                pid,
                to: there[1],
                from: back[0],
            })
        }
    }

    fn round_trip(&self) {
        let mut byte = 1u8;
        // SAFETY: one byte each way on our own pipe ends.
        unsafe {
            libc::write(self.to, (&raw const byte).cast(), 1);
            libc::read(self.from, (&raw mut byte).cast(), 1);
        }
    }
}

impl Drop for EchoPartner {
    fn drop(&mut self) {
        // SAFETY: closing our ends gives the partner EOF; then it is our child to reap.
        unsafe {
            libc::close(self.to);
            libc::close(self.from);
        }
        wait_child(self.pid);
    }
}

/// A child's death by a signal from its parent, in turn SIGTERM and SIGKILL.
fn kill_one(i: u64) {
    let pid = fork_sleeper();
    let sig = if i.is_multiple_of(2) {
        libc::SIGTERM
    } else {
        libc::SIGKILL
    };
    // SAFETY: kill(2) on the child just forked.
    unsafe { libc::kill(pid, sig) };
    wait_child(pid);
}

fn deaths(rate: u64, start: u64, duration: u64) -> u64 {
    sleep_until(start);
    let end = start + duration;
    let mut done = 0;
    loop {
        let now = monotonic_ns();
        if now >= end {
            return done;
        }
        if let Some(due) = (done * 1_000_000_000).checked_div(rate).map(|d| start + d)
            && due > now
        {
            sleep_until(due.min(end));
            continue;
        }
        kill_one(done);
        done += 1;
    }
}

/// Twelve deaths in the container cgroup `dir`, each a different series of
/// `coroner_terminations_total`: a "shim" forks into the container, forks eight processes
/// there, leaves the container (so they become main processes: their parent is outside),
/// then they exit 0, 1, 126, 127, crash (SIGSEGV), die of SIGUSR2, or are killed by the shim
/// (SIGKILL, SIGTERM). The one that exits 0 first kills or crashes four children of its own
/// (deaths of non-main processes). Two cgroup migrations per container, not twelve.
fn pod_deaths(dir: &str, host_procs: i32) -> Result<(), String> {
    let procs = OpenOptions::new()
        .write(true)
        .open(format!("{dir}/cgroup.procs"))
        .map_err(|e| format!("{dir}: {e}"))?;
    let container = procs.as_raw_fd();
    // SAFETY: single-threaded; the shim and its children use only async-signal-safe calls
    // (write, pipe, read, fork, kill, waitpid, raise, _exit) on descriptors opened before.
    unsafe {
        let shim = libc::fork();
        if shim == 0 {
            if libc::write(container, b"0\n".as_ptr().cast(), 2) < 0 {
                libc::_exit(3);
            }
            let mut pipe = [0i32; 2];
            if libc::pipe(pipe.as_mut_ptr()) != 0 {
                libc::_exit(4);
            }
            let mut roles = [0i32; 8];
            for (role, pid) in roles.iter_mut().enumerate() {
                *pid = libc::fork();
                if *pid == 0 {
                    libc::close(pipe[1]);
                    if role >= 6 {
                        loop {
                            libc::pause();
                        }
                    }
                    let mut byte = 0u8;
                    libc::read(pipe[0], (&raw mut byte).cast(), 1);
                    role_death(role);
                }
            }
            libc::close(pipe[0]);
            if libc::write(host_procs, b"0\n".as_ptr().cast(), 2) < 0 {
                libc::_exit(5);
            }
            libc::close(pipe[1]);
            libc::kill(roles[6], libc::SIGKILL);
            libc::kill(roles[7], libc::SIGTERM);
            for pid in roles {
                wait_child(pid);
            }
            libc::_exit(0);
        }
        wait_child(shim);
    }
    Ok(())
}

fn role_death(role: usize) -> ! {
    match role {
        0 => {
            let (killed, terminated) = (fork_sleeper(), fork_sleeper());
            // SAFETY: kill(2) on our own children; forked children only raise or exit.
            unsafe {
                libc::kill(killed, libc::SIGKILL);
                libc::kill(terminated, libc::SIGTERM);
                for sig in [libc::SIGSEGV, libc::SIGUSR2] {
                    let pid = libc::fork();
                    if pid == 0 {
                        die_of(sig);
                    }
                    wait_child(pid);
                }
            }
            wait_child(killed);
            wait_child(terminated);
            // SAFETY: _exit(2).
            unsafe { libc::_exit(0) }
        }
        // SAFETY: _exit(2).
        1 => unsafe { libc::_exit(1) },
        // SAFETY: _exit(2).
        2 => unsafe { libc::_exit(126) },
        // SAFETY: _exit(2).
        3 => unsafe { libc::_exit(127) },
        4 => die_of(libc::SIGSEGV),
        _ => die_of(libc::SIGUSR2),
    }
}

fn pods(host_procs: &str, list: &str) -> Result<u64, String> {
    let host = OpenOptions::new()
        .write(true)
        .open(host_procs)
        .map_err(|e| format!("{host_procs}: {e}"))?;
    let dirs = std::fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
    let mut deaths = 0;
    for dir in dirs.lines().filter(|l| !l.is_empty()) {
        pod_deaths(dir, host.as_raw_fd())?;
        deaths += DEATHS_PER_CONTAINER;
    }
    Ok(deaths)
}

/// Runs the helper verb in `args` (the whole argv) and returns its exit code, or `None` when
/// this process is not a helper.
#[must_use]
pub fn run(args: &[String]) -> Option<i32> {
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    let num = |i: usize| {
        arg(i)
            .parse::<u64>()
            .map_err(|e| format!("argument {i} ({:?}): {e}", arg(i)))
    };
    let result = match arg(1) {
        STORM => (|| storm(arg(2), num(3)?, num(4)?, arg(5)))(),
        DEATHS => (|| Ok(deaths(num(2)?, num(3)?, num(4)?).to_string()))(),
        PODS => pods(arg(2), arg(3)).map(|n| n.to_string()),
        _ => return None,
    };
    Some(match result {
        Ok(output) => {
            println!("{output}");
            0
        }
        Err(e) => {
            eprintln!("coroner-bench {}: {e}", arg(1));
            2
        }
    })
}
