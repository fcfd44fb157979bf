//! What a running process may do, as the kernel reports it per thread in
//! `/proc/<pid>/task/<tid>/status`: its capability sets and `NoNewPrivs`.

use std::fs;

use anyhow::{Context as _, Result, bail};

/// One thread's capability sets and `NoNewPrivs`.
#[derive(Debug, PartialEq, Eq)]
pub struct ThreadPrivileges {
    pub tid: String,
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub no_new_privs: bool,
}

/// Every thread of `pid` (a thread that ends while it is read is left out).
pub fn thread_privileges(pid: u32) -> Result<Vec<ThreadPrivileges>> {
    let mut threads = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .with_context(|| format!("no {name} in {status}"))
        };
        let caps = |name: &str| -> Result<u64> {
            let hex = field(name)?;
            u64::from_str_radix(hex, 16).with_context(|| format!("{name}: {hex}"))
        };
        threads.push(ThreadPrivileges {
            tid: task.file_name().to_string_lossy().into_owned(),
            inheritable: caps("CapInh")?,
            permitted: caps("CapPrm")?,
            effective: caps("CapEff")?,
            bounding: caps("CapBnd")?,
            ambient: caps("CapAmb")?,
            no_new_privs: field("NoNewPrivs")? == "1",
        });
    }
    Ok(threads)
}

/// Every thread of the agent `pid` holds no capability, cannot gain one, and has `bounding` as
/// its bounding set.
pub fn unprivileged(pid: u32, bounding: u64) -> Result<()> {
    let threads = thread_privileges(pid)?;
    // The main thread, the kernel stage and the async runtime's workers at least.
    if threads.len() < 3 {
        bail!("only {} threads: {threads:#?}", threads.len());
    }
    for t in &threads {
        if (t.inheritable, t.permitted, t.effective, t.ambient) != (0, 0, 0, 0) {
            bail!("thread {} holds capabilities: {t:?}", t.tid);
        }
        if t.bounding != bounding {
            bail!(
                "thread {}: bounding set {:#x}, want {bounding:#x}: {t:?}",
                t.tid,
                t.bounding
            );
        }
        if !t.no_new_privs {
            bail!("thread {} may gain privileges: {t:?}", t.tid);
        }
    }
    Ok(())
}
