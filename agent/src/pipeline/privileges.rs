//! Once the programs are attached, the maps open (their fds carry the access), kallsyms read
//! and the output file open, the agent needs no privilege at all: it drops every capability,
//! the bounding set where it can, and forbids gaining any back (`no_new_privs`). A bug in the
//! HTTP server or the API client then runs without CAP_BPF, CAP_PERFMON or CAP_SYS_ADMIN.

use tracing::{info, warn};

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number worth dropping from the bounding set (CAP_CHECKPOINT_RESTORE is
/// 40 in 6.x); higher numbers just fail with EINVAL.
const LAST_CAP: i32 = 63;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties the calling thread's capability sets (capset(2) acts on one thread; threads
/// created afterwards inherit the empty sets).
fn capset_empty() -> std::io::Result<()> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData::default(); 2];
    // SAFETY: capset with a v3 header and two data words, as the ABI defines.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The effective capability set of this thread, from capget(2).
#[must_use]
pub fn effective_capabilities() -> u64 {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and room for two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return u64::MAX;
    }
    u64::from(data[0].effective) | (u64::from(data[1].effective) << 32)
}

/// Drops the bounding set (needs CAP_SETPCAP; skipped without it), sets `no_new_privs`, then
/// empties this thread's capability sets. Threads started afterwards inherit the empty sets;
/// the caller must run this before it starts any other thread that should be unprivileged.
pub fn drop_all() {
    for cap in 0..=LAST_CAP {
        // SAFETY: prctl with integer arguments; failure (EINVAL, EPERM) is harmless.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        warn!("PR_SET_NO_NEW_PRIVS failed: {}", std::io::Error::last_os_error());
    }
    match capset_empty() {
        Ok(()) => info!("dropped all capabilities: the probes are attached and need none from here on"),
        Err(e) => warn!("could not drop capabilities: {e}"),
    }
}
