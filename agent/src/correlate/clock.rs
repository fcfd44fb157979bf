//! Kernel timestamps (`CLOCK_BOOTTIME`) → wall clock.
//!
//! The offset is sampled by the caller (and re-sampled now and then: NTP steps the real-time
//! clock, never the boot-time one) so that the correlator stays deterministic under test.

use std::io;

use time::OffsetDateTime;

/// `CLOCK_REALTIME − CLOCK_BOOTTIME`, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootClock {
    realtime_minus_boottime_ns: i128,
}

impl BootClock {
    #[must_use]
    pub const fn from_offset_ns(realtime_minus_boottime_ns: i128) -> Self {
        Self {
            realtime_minus_boottime_ns,
        }
    }

    /// Samples the offset now. Real time is read between two boot-time reads and set against
    /// their midpoint, which halves the error a preemption between the reads could add.
    pub fn now() -> io::Result<Self> {
        let boot_before = read_ns(libc::CLOCK_BOOTTIME)?;
        let real = read_ns(libc::CLOCK_REALTIME)?;
        let boot_after = read_ns(libc::CLOCK_BOOTTIME)?;
        let boot = boot_before + (boot_after - boot_before) / 2;
        Ok(Self::from_offset_ns(real - boot))
    }

    #[must_use]
    pub const fn offset_ns(self) -> i128 {
        self.realtime_minus_boottime_ns
    }

    /// The wall-clock time of a boot-time instant. An instant the `time` crate cannot
    /// represent (only a nonsensical offset makes one) is clamped to the epoch, not a panic.
    #[must_use]
    pub fn wall(self, boot_ns: u64) -> OffsetDateTime {
        let unix_ns = i128::from(boot_ns) + self.realtime_minus_boottime_ns;
        OffsetDateTime::from_unix_timestamp_nanos(unix_ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// `CLOCK_BOOTTIME` now, the clock of every kernel timestamp and of `drain_ready`'s `now`.
pub fn boottime_ns() -> io::Result<u64> {
    let ns = read_ns(libc::CLOCK_BOOTTIME)?;
    u64::try_from(ns).map_err(|_| io::Error::other("CLOCK_BOOTTIME is negative"))
}

/// The system's page size, the unit of every `*_pages` field of the kernel events.
pub fn page_size() -> io::Result<u64> {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(io::Error::last_os_error)
}

fn read_ns(clock: libc::clockid_t) -> io::Result<i128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used are constants the kernel
    // knows, and an unknown one is reported as an error, not undefined behaviour.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
}

#[cfg(test)]
mod tests {
    use super::{BootClock, boottime_ns, page_size};

    #[test]
    fn wall_adds_the_offset_exactly() {
        let clock = BootClock::from_offset_ns(1_700_000_000_000_000_000);
        let t = clock.wall(1_500);
        assert_eq!(t.unix_timestamp_nanos(), 1_700_000_000_000_001_500);
    }

    #[test]
    fn an_unrepresentable_time_is_clamped_not_a_panic() {
        let clock = BootClock::from_offset_ns(i128::MAX / 2);
        assert_eq!(clock.wall(1), time::OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn sampled_offset_puts_boot_now_near_real_now() {
        let clock = BootClock::now().expect("clocks readable");
        let boot = boottime_ns().expect("boottime readable");
        let wall = clock.wall(boot);
        let skew = (time::OffsetDateTime::now_utc() - wall).abs();
        assert!(skew < time::Duration::seconds(1), "skew {skew}");
        assert!(page_size().expect("page size") >= 4096);
    }
}
