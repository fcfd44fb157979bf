//! Signals that can kill (and every stop signal): `signal_generate`, with why the kernel dropped
//! a stop signal it reports as ignored.

use agent_ebpf::{COMM_LEN, KernelLayout, SignalEvent, counter, kind, signal_flags};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use super::{EVENTS, LAYOUT, count, header, is_host_memcg, oom, wakeup};
use crate::read::{Task, field};

const SIGHUP: u32 = 1;
const SIGINT: u32 = 2;
const SIGQUIT: u32 = 3;
const SIGKILL: u32 = 9;
const SIGTERM: u32 = 15;
/// `SIG_DFL`: the default action; anything else is a handler or `SIG_IGN`.
const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
/// `signal_generate`'s `result`: the signal was dropped (`prepare_signal` said no).
const TRACE_SIGNAL_IGNORED: u32 = 1;
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
/// `SEND_SIG_NOINFO` / `SEND_SIG_PRIV`: special `kernel_siginfo` pointer values.
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;

#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    let _ = try_signal_generate(&ctx);
    0
}

fn try_signal_generate(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let layout = LAYOUT.load();
    let sig = ctx.arg::<u64>(0) as u32;
    if sig == 0 || sig > 64 || layout.fatal_signals & (1u64 << (sig - 1)) == 0 {
        count(counter::SIGNAL_FILTERED);
        return Ok(());
    }
    let target = Task::<true>(ctx.arg::<*const u8>(2));
    // A handled signal does not kill. The stop signals are kept anyway: SIGTERM's time starts
    // the grace period a later SIGKILL may end, and a handler that restores the default and
    // re-raises (Go, Node, C cleanup handlers) dies of the signal another process sent.
    if !matches!(sig, SIGKILL | SIGTERM | SIGINT | SIGHUP | SIGQUIT) {
        let sighand: *const u8 = target.read(layout.task_sighand)?;
        let slot = layout.sighand_handler + (sig - 1) * layout.sighand_k_sigaction_size;
        let handler: u64 = field(sighand, slot)?;
        if handler != SIG_DFL {
            count(counter::SIGNAL_FILTERED);
            return Ok(());
        }
    }
    let target_memcg_id = target.memcg_id(&layout);
    if is_host_memcg(target_memcg_id) {
        count(counter::SIGNAL_FILTERED);
        return Ok(());
    }
    let info = ctx.arg::<u64>(1);
    if sig == SIGKILL && info == SEND_SIG_PRIV {
        oom::note_kernel_kill(&layout, target);
    }
    let code = match info {
        SEND_SIG_NOINFO => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        _ => field::<i32>(info as *const u8, layout.siginfo_code).unwrap_or(SI_USER),
    };
    let result = ctx.arg::<u64>(4) as u32;
    let mut flags = if info == SEND_SIG_NOINFO {
        signal_flags::NO_SIGINFO
    } else {
        0
    };
    if result == TRACE_SIGNAL_IGNORED && sig != SIGKILL {
        flags |= why_ignored(&layout, target, sig);
    }
    // SAFETY: always callable from tracing programs; the task it returns is only read.
    let sender = Task::<false>(unsafe { bpf_get_current_task() } as *const u8);
    let Some(mut entry) = EVENTS.reserve::<SignalEvent>(0) else {
        count(counter::LOST_SIGNAL);
        return Ok(());
    };
    let sender_ids = bpf_get_current_pid_tgid();
    let event = SignalEvent {
        header: header(kind::SIGNAL),
        sig,
        code,
        result,
        group: ctx.arg::<u64>(3) as u32,
        flags,
        pad: 0,
        sender_pid: sender_ids as u32,
        sender_tgid: (sender_ids >> 32) as u32,
        target_pid: target.read(layout.task_pid).unwrap_or(0),
        target_tgid: target.read(layout.task_tgid).unwrap_or(0),
        sender_memcg_id: sender.memcg_id(&layout),
        target_memcg_id,
        target_start_boottime_ns: target.process_start(&layout),
        sender_comm: sender
            .read::<[u8; COMM_LEN]>(layout.task_comm)
            .unwrap_or([0; COMM_LEN]),
        target_comm: target
            .read::<[u8; COMM_LEN]>(layout.task_comm)
            .unwrap_or([0; COMM_LEN]),
    };
    entry.write(event);
    entry.submit(wakeup());
    count(counter::EMITTED);
    Ok(())
}

/// Why the kernel dropped a stop signal (`TRACE_SIGNAL_IGNORED`), read under the siglock the
/// tracepoint runs in, so it is what `prepare_signal` saw. A group already exiting (or dumping
/// core) drops every signal whatever its handlers: `TARGET_EXITING`, which says nothing about
/// the process. Otherwise a non-blocked, untraced stop signal is dropped only for `SIG_IGN`
/// (`HANDLER_IGNORED`) or for a PID namespace's init without a handler (`SIGNAL_UNKILLABLE`).
#[inline(always)]
fn why_ignored(layout: &KernelLayout, target: Task<true>, sig: u32) -> u32 {
    let mut flags = 0;
    if let Ok(signal) = target.read::<*const u8>(layout.task_signal) {
        let group = field::<u32>(signal, layout.signal_flags).unwrap_or(0);
        let dumping = layout.signal_core_state != 0
            && field::<u64>(signal, layout.signal_core_state).unwrap_or(0) != 0;
        if group & layout.signal_exiting_mask != 0 || dumping {
            flags |= signal_flags::TARGET_EXITING;
        }
    }
    if let Ok(sighand) = target.read::<*const u8>(layout.task_sighand) {
        let slot = layout.sighand_handler + (sig - 1) * layout.sighand_k_sigaction_size;
        if field::<u64>(sighand, slot) == Ok(SIG_IGN) {
            flags |= signal_flags::HANDLER_IGNORED;
        }
    }
    flags
}
