//! Once the programs are attached, the maps open (their fds carry the access), kallsyms read
//! and the output file open, the agent needs no privilege at all: it drops every capability,
//! the bounding set where it can, and forbids gaining any back (`no_new_privs`). A bug in the
//! HTTP server or the API client then runs without `CAP_BPF`, `CAP_PERFMON` or `CAP_SYS_ADMIN`.

use tracing::{info, warn};

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number worth dropping from the bounding set (`CAP_CHECKPOINT_RESTORE` is
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

/// `CAP_BPF`: kept only on kernels whose `bpf()` wants it for every command (see `drop_all`).
const CAP_BPF: u32 = 39;

/// Sets the calling thread's capability sets to `keep` (a bit mask) and nothing else.
/// capset(2) acts on one thread; threads created afterwards inherit the sets.
fn capset_only(keep: u64) -> std::io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |shift: u32| CapData {
        effective: (keep >> shift) as u32,
        permitted: (keep >> shift) as u32,
        inheritable: 0,
    };
    let data = [word(0), word(32)];
    // SAFETY: capset with a v3 header and two data words, as the ABI defines.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The effective capability set of this thread, from capget(2).
#[must_use]
pub fn effective_capabilities() -> u64 {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and room for two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return u64::MAX;
    }
    u64::from(data[0].effective) | (u64::from(data[1].effective) << 32)
}

/// Whether a map operation still works without any capability. Kernels before ≈6.5 with
/// `kernel.unprivileged_bpf_disabled` set (most distributions) refuse every `bpf()` command
/// to a task without `CAP_BPF` — map reads and updates on fds it already holds included; newer
/// ones check per command. Capabilities are per thread, so this is tried on a throwaway
/// thread that drops everything first: the answer costs the process nothing.
fn map_ops_work_unprivileged(map_op: &(dyn Fn() -> bool + Sync)) -> bool {
    std::thread::scope(|scope| {
        scope
            .spawn(|| capset_only(0).is_ok() && map_op())
            .join()
            .unwrap_or(false)
    })
}

/// Drops the bounding set (needs `CAP_SETPCAP`; skipped without it), sets `no_new_privs`, then
/// empties this thread's capability sets — all but `CAP_BPF` where this kernel needs it for the
/// map operations the agent does later (`map_op` is one of them, tried unprivileged first).
/// Threads started afterwards inherit the sets: call this before starting any.
pub fn drop_all(map_op: &(dyn Fn() -> bool + Sync)) {
    let keep = if map_ops_work_unprivileged(map_op) {
        0
    } else {
        1u64 << CAP_BPF
    };
    for cap in 0..=LAST_CAP {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments; failure (EINVAL, EPERM) is harmless.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        warn!(
            "PR_SET_NO_NEW_PRIVS failed: {}",
            std::io::Error::last_os_error()
        );
    }
    match capset_only(keep) {
        Ok(()) if keep == 0 => {
            info!("dropped all capabilities: the probes are attached and need none from here on");
        }
        Ok(()) => info!(
            "dropped all capabilities but CAP_BPF: this kernel's bpf() wants it for map reads and updates"
        ),
        Err(e) => warn!("could not drop capabilities: {e}"),
    }
}
