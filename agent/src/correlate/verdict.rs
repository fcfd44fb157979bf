//! The verdict and the sender's kind: pure rules, no state, from docs/record.md.
//!
//! Where the record contract (`docs/record.md`) leaves a case open, these rules decide it (and the tests pin them):
//! - A SIGKILL that is not an OOM kill is `Killed` whoever sent it (a process, itself, or the
//!   kernel, e.g. a PID namespace torn down after its init died); it is `GracePeriodExpired`
//!   only when another process had sent a SIGTERM first and the SIGKILL was not raised by the
//!   kernel.
//! - SIGTERM/SIGINT/SIGHUP/SIGQUIT are `Terminated` unless the process sent them to itself
//!   (`Signaled`); a tty's SIGINT/SIGHUP (raised by the kernel for a person) and a sender we
//!   never saw count as "another process".
//! - The init of a container that never executed the container's command (the runtime failed
//!   to start it) is `StartError`, however it died, unless the OOM killer chose it.
//! - A failed exec names the cause of an exit other than 126/127 only when it was the
//!   process's own, moments before it exited non-zero: a script that once tried a missing
//!   helper and much later exits 1 is an `Error`.
//! - An OOM victim that did not die of SIGKILL was already exiting when the OOM killer chose
//!   it (the kernel marks such a task a victim without killing it): the verdict follows how it
//!   really died, and the record still carries the `oom` object.

use crate::record::{Initiator, Reason, SenderKind};

/// `si_code` values that mean "raised by the kernel on nobody's behalf": the task that is
/// `current` when they are generated is whoever happened to run (a timer interrupt, an I/O
/// completion), not a sender. `si_code > 0` (faults, `SI_KERNEL`) is the kernel too.
const SI_TIMER: i32 = -2;
const SI_ASYNCIO: i32 = -4;
const SI_SIGIO: i32 = -5;
const SI_DETHREAD: i32 = -7;

/// Signal numbers as the running kernel's architecture has them (libc is built for it).
pub mod sig {
    #![expect(
        clippy::cast_possible_truncation,
        reason = "signal numbers are below 65"
    )]
    pub const SIGHUP: u8 = libc::SIGHUP as u8;
    pub const SIGINT: u8 = libc::SIGINT as u8;
    pub const SIGQUIT: u8 = libc::SIGQUIT as u8;
    pub const SIGILL: u8 = libc::SIGILL as u8;
    pub const SIGTRAP: u8 = libc::SIGTRAP as u8;
    pub const SIGABRT: u8 = libc::SIGABRT as u8;
    pub const SIGBUS: u8 = libc::SIGBUS as u8;
    pub const SIGFPE: u8 = libc::SIGFPE as u8;
    pub const SIGKILL: u8 = libc::SIGKILL as u8;
    pub const SIGSEGV: u8 = libc::SIGSEGV as u8;
    pub const SIGTERM: u8 = libc::SIGTERM as u8;
    pub const SIGSYS: u8 = libc::SIGSYS as u8;
}

/// How a process ended, decoded from the kernel's `task->exit_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// It called `exit()` (or returned from `main`) with this status.
    Exited(u8),
    /// A signal killed it.
    Signaled { signal: u8, core_dumped: bool },
}

impl Death {
    /// `task->exit_code` is `status << 8` after `exit()`, or the signal (`| 0x80` with a core).
    #[must_use]
    pub const fn from_exit_code(raw: u32) -> Self {
        let signal = (raw & 0x7f) as u8;
        if signal == 0 {
            Death::Exited(((raw >> 8) & 0xff) as u8)
        } else {
            Death::Signaled {
                signal,
                core_dumped: raw & 0x80 != 0,
            }
        }
    }

    /// What the kubelet reports: the exit code, or 128 + the signal.
    #[must_use]
    pub const fn exit_status(self) -> u16 {
        match self {
            Death::Exited(code) => code as u16,
            Death::Signaled { signal, .. } => 128 + signal as u16,
        }
    }

    #[must_use]
    pub const fn signal(self) -> Option<u8> {
        match self {
            Death::Exited(_) => None,
            Death::Signaled { signal, .. } => Some(signal),
        }
    }
}

/// Whether a signal with this `si_code` was raised by the kernel rather than sent by a
/// process (`kill`, `tgkill`, `sigqueue`, `mq_notify`: codes 0, -1, -3, -6 and any other
/// negative code user space may put in `rt_sigqueueinfo`).
#[must_use]
pub const fn kernel_raised(si_code: i32) -> bool {
    si_code > 0 || matches!(si_code, SI_TIMER | SI_ASYNCIO | SI_SIGIO | SI_DETHREAD)
}

/// Where the sender's memory cgroup is, relative to the victim's container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderPlace {
    VictimContainer,
    OtherContainer,
    /// Outside every container, or a memcg that could not be resolved.
    Outside,
}

/// `sender.kind` of a signal: the kernel first (a fault raised in the victim's own context is
/// still the kernel's doing), then the victim itself, then by where the sender lives.
#[must_use]
pub const fn sender_kind(
    si_code: i32,
    sender_tgid: u32,
    victim_tgid: u32,
    place: SenderPlace,
) -> SenderKind {
    if kernel_raised(si_code) {
        SenderKind::Kernel
    } else if sender_tgid == victim_tgid {
        SenderKind::SelfSent
    } else {
        match place {
            SenderPlace::VictimContainer => SenderKind::SameContainer,
            SenderPlace::OtherContainer => SenderKind::OtherContainer,
            SenderPlace::Outside => SenderKind::Host,
        }
    }
}

/// Everything the verdict depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerdictInput {
    pub death: Death,
    /// The OOM killer chose this process.
    pub oom_victim: bool,
    /// The kind of whoever sent the fatal signal; `None` when no such signal was seen.
    pub fatal_sender: Option<SenderKind>,
    /// Another process sent a SIGTERM before the fatal SIGKILL.
    pub sigterm_before_kill: bool,
    /// errno of a failed exec that explains this exit: its own, just before it exited
    /// non-zero (exits 126 and 127 speak for themselves).
    pub exec_errno: Option<i32>,
    /// The container's init died before it executed the container's command.
    pub start_failed: bool,
}

const CRASH_SIGNALS: [u8; 7] = [
    sig::SIGSEGV,
    sig::SIGBUS,
    sig::SIGILL,
    sig::SIGFPE,
    sig::SIGABRT,
    sig::SIGSYS,
    sig::SIGTRAP,
];
const TERMINATION_SIGNALS: [u8; 4] = [sig::SIGTERM, sig::SIGINT, sig::SIGHUP, sig::SIGQUIT];

#[must_use]
pub fn reason(input: VerdictInput) -> Reason {
    if input.start_failed && input.death != Death::Exited(0) && !input.oom_victim {
        return Reason::StartError;
    }
    match input.death {
        Death::Exited(0) => Reason::Completed,
        Death::Exited(127) => Reason::CommandNotFound,
        Death::Exited(126) => Reason::NotExecutable,
        Death::Exited(_) => match input.exec_errno {
            Some(libc::ENOENT) => Reason::CommandNotFound,
            Some(libc::EACCES | libc::ENOEXEC) => Reason::NotExecutable,
            _ => Reason::Error,
        },
        Death::Signaled { signal, .. } => {
            if signal == sig::SIGKILL {
                if input.oom_victim {
                    Reason::OomKilled
                } else if input.sigterm_before_kill
                    && input.fatal_sender != Some(SenderKind::Kernel)
                {
                    Reason::GracePeriodExpired
                } else {
                    Reason::Killed
                }
            } else if TERMINATION_SIGNALS.contains(&signal) {
                if input.fatal_sender == Some(SenderKind::SelfSent) {
                    Reason::Signaled
                } else {
                    Reason::Terminated
                }
            } else if CRASH_SIGNALS.contains(&signal) {
                Reason::Crashed
            } else {
                Reason::Signaled
            }
        }
    }
}

/// Who decided the death, as far as the kernel knows: the OOM killer, a fault, the process or
/// its own container, another container, a clean exit. A stop signal from the host leaves it
/// `Host` and one whose sender was not seen `Unknown`: only the Kubernetes API can tell those
/// apart (the kubelet's Events and the pod's state, `kube::kubelet`).
///
/// `stop_sender` is the sender of the first stop signal another process sent before an exit:
/// a process that exits by itself after a SIGTERM was stopped by whoever sent it.
#[must_use]
pub const fn initiator(
    reason: Reason,
    death: Death,
    fatal_sender: Option<SenderKind>,
    stop_sender: Option<SenderKind>,
) -> Initiator {
    if matches!(reason, Reason::OomKilled) {
        return Initiator::OomKiller;
    }
    let sender = match death {
        Death::Exited(_) => match stop_sender {
            // The kernel's stop signals (a tty's SIGINT, SIGHUP) ask, they do not decide.
            None | Some(SenderKind::Kernel) => return Initiator::Exited,
            Some(kind) => kind,
        },
        Death::Signaled { .. } => match fatal_sender {
            Some(kind) => kind,
            None => return Initiator::Unknown,
        },
    };
    match sender {
        SenderKind::Kernel => Initiator::Kernel,
        SenderKind::SelfSent | SenderKind::SameContainer => Initiator::SelfInflicted,
        SenderKind::OtherContainer => Initiator::AnotherContainer,
        SenderKind::Host => Initiator::Host,
    }
}
