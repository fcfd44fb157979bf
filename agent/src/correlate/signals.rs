//! What was sent to each live process: enough to name the sender of the fatal signal and to
//! time a grace period. Bounded by an LRU cap and a TTL long enough for the longest grace
//! periods (a process sent SIGTERM may be sent SIGKILL hours later).

use std::num::NonZeroUsize;

use agent_ebpf::{COMM_LEN, SignalEvent, signal_flags};
use lru::LruCache;

use super::ProcessKey;
use super::verdict::{kernel_raised, sig};

/// `signal_generate`'s `result` when `prepare_signal` dropped the signal. It does so for a
/// target that ignores it (`SIG_IGN`; a PID namespace's init, `SIGNAL_UNKILLABLE`, without a
/// handler) and for one already exiting (`SIGNAL_GROUP_EXIT`, a core dump), which the programs
/// tell apart (`signal_flags::TARGET_EXITING`).
const TRACE_SIGNAL_IGNORED: u32 = 1;

/// One signal sent to a process, as much of it as a record can need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SignalSeen {
    pub ktime_ns: u64,
    pub sender_tgid: u32,
    pub sender_memcg_id: u64,
    pub code: i32,
    pub sig: u8,
    /// `TRACE_SIGNAL_DELIVERED`: queued, not ignored nor merged into a pending one.
    pub delivered: bool,
    /// Generated without a siginfo: the kernel raised it for `current` (SIGPIPE, SIGXFSZ).
    pub no_siginfo: bool,
    /// The kernel dropped it because of how the target treats it (`SIG_IGN`, or a PID
    /// namespace's init without a handler), not because the target was already exiting.
    pub dropped_by_target: bool,
    pub sender_comm: [u8; COMM_LEN],
}

impl SignalSeen {
    /// Sent by a process other than the target, not raised by the kernel: the kind of signal
    /// that starts (SIGTERM) or ends (SIGKILL) a grace period.
    fn by_other_process(&self, target_tgid: u32) -> bool {
        !kernel_raised(self.code) && self.sender_tgid != target_tgid
    }

    /// Which of two signals of the same number is the one that took effect. A delivered one
    /// beats one that was ignored or merged. Among delivered ones the latest wins: once a
    /// fatal signal is queued the kernel ignores the rest (the group is exiting), so the
    /// latest delivered is the fatal one even when an earlier one was caught by a handler that
    /// was later removed. Among undelivered ones the earliest is kept (the best guess).
    fn supersedes(&self, kept: &SignalSeen) -> bool {
        match (self.delivered, kept.delivered) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => self.ktime_ns > kept.ktime_ns,
            (false, false) => self.ktime_ns < kept.ktime_ns,
        }
    }
}

/// Distinct signal numbers remembered per process. A process is rarely sent more than two
/// kinds of fatal signal (SIGTERM then SIGKILL); when more arrive the oldest is forgotten,
/// the fatal one being among the latest.
const SIGNAL_SLOTS: usize = 3;

/// The stop signals: a handler may catch one, restore the default and raise it again, and
/// the process then dies of the signal another process sent first.
const STOP_SIGNALS: [u8; 4] = [sig::SIGTERM, sig::SIGINT, sig::SIGHUP, sig::SIGQUIT];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct SignalHistory {
    /// The first of each stop signal from another process (any outcome: a handled SIGTERM
    /// starts the grace period just the same), in `STOP_SIGNALS` order.
    first_stop: [Option<SignalSeen>; 4],
    pub first_sigkill: Option<SignalSeen>,
    /// The first stop signal from another process that the kernel dropped for the target.
    first_stop_dropped: Option<SignalSeen>,
    by_number: [Option<SignalSeen>; SIGNAL_SLOTS],
    /// The latest kernel time seen, for the TTL.
    last_ns: u64,
}

impl SignalHistory {
    fn note(&mut self, seen: SignalSeen, target_tgid: u32) {
        self.last_ns = self.last_ns.max(seen.ktime_ns);
        if seen.by_other_process(target_tgid) {
            let first = if seen.sig == sig::SIGKILL {
                Some(&mut self.first_sigkill)
            } else {
                STOP_SIGNALS
                    .iter()
                    .position(|&s| s == seen.sig)
                    .map(|i| &mut self.first_stop[i])
            };
            if let Some(first) = first
                && first.is_none_or(|f| seen.ktime_ns < f.ktime_ns)
            {
                *first = Some(seen);
            }
            if seen.dropped_by_target
                && STOP_SIGNALS.contains(&seen.sig)
                && self
                    .first_stop_dropped
                    .is_none_or(|f| seen.ktime_ns < f.ktime_ns)
            {
                self.first_stop_dropped = Some(seen);
            }
        }
        let slots = &mut self.by_number;
        if let Some(kept) = slots.iter_mut().flatten().find(|s| s.sig == seen.sig) {
            if seen.supersedes(kept) {
                *kept = seen;
            }
        } else if let Some(empty) = slots.iter_mut().find(|s| s.is_none()) {
            *empty = Some(seen);
        } else if let Some(oldest) = slots.iter_mut().min_by_key(|s| s.map_or(0, |s| s.ktime_ns))
            && oldest.is_some_and(|o| o.ktime_ns < seen.ktime_ns)
        {
            *oldest = Some(seen);
        }
    }

    /// The signal of this number that killed the process, if it was seen before the death.
    pub fn fatal(&self, signal: u8, died_ns: u64) -> Option<SignalSeen> {
        self.by_number
            .iter()
            .flatten()
            .find(|s| s.sig == signal && s.ktime_ns <= died_ns)
            .copied()
    }

    pub fn sigterm_before(&self, died_ns: u64) -> Option<SignalSeen> {
        self.first_from_other(sig::SIGTERM, died_ns)
    }

    /// The first stop signal of this number another process sent before `died_ns`.
    pub fn first_from_other(&self, signal: u8, died_ns: u64) -> Option<SignalSeen> {
        let i = STOP_SIGNALS.iter().position(|&s| s == signal)?;
        self.first_stop[i].filter(|s| s.ktime_ns <= died_ns)
    }

    /// The earliest stop signal (any of them: a container's stop signal need not be SIGTERM)
    /// another process sent before `died_ns`.
    pub fn first_stop_before(&self, died_ns: u64) -> Option<SignalSeen> {
        self.first_stop
            .iter()
            .flatten()
            .filter(|s| s.ktime_ns <= died_ns)
            .min_by_key(|s| s.ktime_ns)
            .copied()
    }

    /// The first stop signal another process sent before `died_ns` that the process dropped
    /// (`SIG_IGN`, or PID 1 without a handler): what makes a stop wait out its grace period.
    pub fn stop_dropped_before(&self, died_ns: u64) -> Option<SignalSeen> {
        self.first_stop_dropped.filter(|s| s.ktime_ns <= died_ns)
    }

    pub fn sigkill_before(&self, died_ns: u64) -> Option<SignalSeen> {
        self.first_sigkill.filter(|s| s.ktime_ns <= died_ns)
    }
}

/// Signal histories of live processes, keyed by process identity.
pub(super) struct SignalTable {
    entries: LruCache<ProcessKey, SignalHistory>,
    ttl_ns: u64,
    /// Pushed out by the cap before their TTL.
    pub evicted: u64,
    /// Dropped at the TTL: processes that outlived what they were sent (or whose death
    /// needed no record and so never claimed their history).
    pub expired: u64,
}

impl SignalTable {
    pub fn new(cap: NonZeroUsize, ttl_ns: u64) -> Self {
        Self {
            entries: LruCache::new(cap),
            ttl_ns,
            evicted: 0,
            expired: 0,
        }
    }

    /// Remembers a signal; `false` for one whose number no kernel has (a malformed event).
    pub fn note(&mut self, event: &SignalEvent) -> bool {
        let Ok(signal) = u8::try_from(event.sig) else {
            return false;
        };
        if !(1..=64).contains(&signal) {
            return false;
        }
        let seen = SignalSeen {
            ktime_ns: event.header.ktime_ns,
            sender_tgid: event.sender_tgid,
            sender_memcg_id: event.sender_memcg_id,
            code: event.code,
            sig: signal,
            delivered: event.result == 0,
            no_siginfo: event.flags & signal_flags::NO_SIGINFO != 0,
            dropped_by_target: event.result == TRACE_SIGNAL_IGNORED
                && event.flags & signal_flags::TARGET_EXITING == 0,
            sender_comm: event.sender_comm,
        };
        let key = ProcessKey::new(event.target_tgid, event.target_start_boottime_ns);
        if let Some(history) = self.entries.get_mut(&key) {
            history.note(seen, key.tgid);
        } else {
            let mut history = SignalHistory::default();
            history.note(seen, key.tgid);
            if self.entries.push(key, history).is_some() {
                self.evicted += 1;
            }
        }
        true
    }

    pub fn take(&mut self, key: &ProcessKey) -> Option<SignalHistory> {
        self.entries.pop(key)
    }

    /// Drops histories untouched for the TTL, least recently touched first; stops at the
    /// first live one, so a call costs O(1) when nothing is due.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some((_, history)) = self.entries.peek_lru() {
            if history.last_ns.saturating_add(self.ttl_ns) > now_ns {
                break;
            }
            self.entries.pop_lru();
            self.expired += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
