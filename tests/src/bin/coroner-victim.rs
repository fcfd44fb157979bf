//! The tests' own helper process: dies, allocates, ignores, forks and kills on command, so a
//! test knows exactly what happened and can check coroner's record against it.
//!
//! `coroner-victim exit N | alloc MIB | rss MIB | sleep SECS | ignore-term SECS |
//!  handle-usr1 SECS | segv | abort | exec PATH | shell-exec PATH | kill SIG PID |
//!  child-alloc MIB SECS | self-term | threads N SECS | thread-segv | fork-kill N |
//!  bounded CAP,CAP… PROGRAM ARGS…`, each optionally after `renamed` (the comm becomes 15
//! bytes that are not UTF-8 first) or `reexec` (it executes itself again with the rest once a
//! line arrives on stdin). `bounded` runs PROGRAM with only the capability numbers given, as a
//! container runtime does for `capabilities: {drop: [ALL], add: …}` (the VM guests start the
//! agent so).

use std::time::Duration;

fn touch(mib: usize) -> Vec<u8> {
    let mut memory = vec![0u8; mib << 20];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    memory
}

fn sleep(secs: &str) {
    std::thread::sleep(Duration::from_secs_f64(secs.parse().unwrap_or(30.0)));
}

extern "C" fn on_usr1(_: i32) {}

/// exec like a shell: on failure, 127 for a missing file, 126 for one that cannot run.
fn exec_or_exit(path: &str) -> ! {
    let c_path = std::ffi::CString::new(path).expect("path without NUL");
    let argv = [c_path.as_ptr(), std::ptr::null()];
    // SAFETY: a NUL-terminated argv; execv only returns on failure.
    unsafe { libc::execv(c_path.as_ptr(), argv.as_ptr()) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    std::process::exit(if errno == libc::ENOENT { 127 } else { 126 });
}

/// Like runc's `runc init`: waits for a line on stdin (the starter moved it into the container
/// meanwhile), then executes a copy of itself again with `action`, by `fexecve` as runc does
/// with its memfd clone.
fn reexec(action: &[String]) -> ! {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let exe = std::ffi::CString::new("/proc/self/exe").expect("no NUL");
    let words: Vec<std::ffi::CString> = std::iter::once("coroner-victim")
        .chain(action.iter().map(String::as_str))
        .map(|a| std::ffi::CString::new(a).expect("argument without NUL"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = words.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env: Vec<std::ffi::CString> = std::env::vars()
        .map(|(k, v)| std::ffi::CString::new(format!("{k}={v}")).expect("no NUL"))
        .collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: open(2) of a NUL-terminated path; fexecve with NUL-terminated argv and envp of
    // live CStrings only returns on failure.
    unsafe {
        let fd = libc::open(exe.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        libc::fexecve(fd, argv.as_ptr(), envp.as_ptr());
    }
    std::process::exit(126);
}

/// The comm a hostile process may pick: 15 bytes (the most there is), none of them UTF-8.
const HOSTILE_COMM: [u8; 15] = [
    0x80, 0x81, 0xfe, 0xff, 0xc0, 0xc1, 0xf5, 0xf8, 0x90, 0xa0, 0xb0, 0xe0, 0xed, 0xf0, 0x9f,
];

/// The arguments; `renamed ACTION…` takes [`HOSTILE_COMM`] as the comm first and leaves
/// `ACTION…`; `reexec ACTION…` never returns (see [`reexec`]).
fn arguments() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "reexec") {
        reexec(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "renamed") {
        args.remove(0);
        let mut name = [0u8; 16];
        name[..15].copy_from_slice(&HOSTILE_COMM);
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
    args
}

/// Execs `program` with only `keep` in the bounding set: as uid 0 it then gets exactly those.
fn exec_bounded(keep: &str, program: &[String]) -> ! {
    let keep: Vec<i32> = keep.split(',').filter_map(|c| c.parse().ok()).collect();
    for cap in 0..64 {
        if !keep.contains(&cap) {
            // SAFETY: prctl with integer arguments; EINVAL for numbers the kernel lacks.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
    }
    let strings: Vec<std::ffi::CString> = program
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()).expect("argument without NUL"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = strings.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: NUL-terminated strings in a NULL-terminated argv; execvp returns only on failure.
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    eprintln!(
        "coroner-victim bounded: exec {program:?}: {}",
        std::io::Error::last_os_error()
    );
    std::process::exit(127);
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per action: the helper's whole command line in one place"
)]
fn main() {
    // A shell without job control starts background commands with SIGINT and SIGQUIT ignored,
    // and the ignoring is inherited across exec: a suite run as `cargo xtask test &` would
    // make every victim immune to them. The tests' signals mean their default actions.
    for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
        // SAFETY: setting a default disposition before any thread exists.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    let args = arguments();
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    match arg(0) {
        "bounded" => exec_bounded(arg(1), &args[args.len().min(2)..]),
        "exit" => std::process::exit(arg(1).parse().unwrap_or(1)),
        "alloc" => {
            let memory = touch(arg(1).parse().unwrap_or(300));
            std::hint::black_box(&memory);
            sleep("30");
        }
        "rss" => {
            let memory = touch(arg(1).parse().unwrap_or(50));
            std::hint::black_box(&memory);
        }
        "sleep" => sleep(arg(1)),
        "ignore-term" => {
            // SAFETY: SIG_IGN for SIGTERM.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            sleep(arg(1));
        }
        "handle-usr1" => {
            // SAFETY: a handler that does nothing.
            unsafe {
                libc::signal(
                    libc::SIGUSR1,
                    on_usr1 as extern "C" fn(i32) as libc::sighandler_t,
                )
            };
            sleep(arg(1));
        }
        "segv" => {
            // SAFETY: deliberately faulting is the point.
            unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u8>(), 1) };
        }
        "abort" => std::process::abort(),
        "exec" => exec_or_exit(arg(1)),
        "shell-exec" => {
            // SAFETY: fork; the child only execs or exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                exec_or_exit(arg(1));
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            std::process::exit(libc::WEXITSTATUS(status));
        }
        "kill" => {
            let (sig, pid): (i32, i32) = (arg(1).parse().unwrap_or(9), arg(2).parse().unwrap_or(0));
            if pid > 0 {
                // SAFETY: kill(2) on the pid the test named.
                unsafe { libc::kill(pid, sig) };
            }
        }
        "child-alloc" => {
            // SAFETY: fork; the child allocates until the OOM killer takes it.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let memory = touch(arg(1).parse().unwrap_or(300));
                std::hint::black_box(&memory);
                std::process::exit(0);
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            sleep(arg(2));
        }
        "self-term" => {
            // SAFETY: raise(3) on ourselves.
            unsafe { libc::raise(libc::SIGTERM) };
            sleep("5");
        }
        "threads" => {
            // A multi-threaded process (every Go or Java program): N threads and the main
            // one, all sleeping.
            let secs = arg(2).to_string();
            for _ in 0..arg(1).parse().unwrap_or(4) {
                let secs = secs.clone();
                std::thread::spawn(move || sleep(&secs));
            }
            sleep(&secs);
        }
        "thread-segv" => {
            // A worker thread faults, not the main one.
            let worker = std::thread::spawn(|| {
                // SAFETY: deliberately faulting is the point.
                unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u8>(), 1) };
            });
            let _ = worker.join();
            sleep("5");
        }
        "fork-kill" => {
            // A storm of deaths by signal, as fast as one process makes them: N children,
            // each killed by SIGKILL from this parent and reaped before the next.
            for _ in 0..arg(1).parse::<u32>().unwrap_or(1000) {
                // SAFETY: fork; the child only waits for its signal.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    loop {
                        // SAFETY: pause(2) until the SIGKILL.
                        unsafe { libc::pause() };
                    }
                }
                if pid < 0 {
                    std::process::exit(1);
                }
                let mut status = 0;
                // SAFETY: kill and reap our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &raw mut status, 0);
                }
            }
        }
        other => {
            eprintln!("coroner-victim: unknown action {other:?}");
            std::process::exit(2);
        }
    }
}
