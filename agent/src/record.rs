//! The termination record: coroner's public contract (docs/record.md). Field names and
//! verdict strings are fixed; fields may be added, never renamed or dropped.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod who;
pub use who::{Initiator, Role};

/// Every top-level field of the contract (docs/record.md), present in every record as
/// JSON — null or not — plus `ppid`, which makes `main_process`. Tests and the fuzz checks
/// hold serialised records to it.
pub const FIELDS: [&str; 35] = [
    "time",
    "node",
    "pid",
    "comm",
    "main_process",
    "cgroup",
    "pod_uid",
    "container_id",
    "namespace",
    "pod",
    "container",
    "owner_kind",
    "owner_name",
    "exit_code",
    "signal",
    "core_dumped",
    "reason",
    "sender",
    "sigterm_time",
    "sigkill_time",
    "grace_seconds",
    "oom",
    "peak_rss_bytes",
    "container_memory_peak_bytes",
    "container_memory_limit_bytes",
    "exec_failure",
    "exit_status",
    "ppid",
    "role",
    "message",
    "initiator",
    "grace_allowed_seconds",
    "cause",
    "stop_signal_ignored",
    "uptime_seconds",
];

/// One death, as written to `--events-json`, `/v1/terminations`, metrics and Events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerminationRecord {
    /// When the process exited.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub node: String,
    /// tgid, in the root PID namespace.
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub main_process: bool,
    /// Memory cgroup path relative to its hierarchy root.
    pub cgroup: String,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub owner_kind: Option<String>,
    pub owner_name: Option<String>,
    /// 0–255 when the process called exit; `None` when a signal killed it.
    pub exit_code: Option<u8>,
    pub signal: Option<u8>,
    pub core_dumped: bool,
    pub reason: Reason,
    pub sender: Option<Sender>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sigterm_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sigkill_time: Option<OffsetDateTime>,
    pub grace_seconds: Option<f64>,
    pub oom: Option<OomKill>,
    pub peak_rss_bytes: u64,
    pub container_memory_peak_bytes: Option<u64>,
    pub container_memory_limit_bytes: Option<u64>,
    pub exec_failure: Option<ExecFailure>,
    /// What the kubelet reports: the exit code, or 128 + the signal.
    pub exit_status: u16,
    /// What the process was to its container; `main_process` is `role == Init`.
    pub role: Role,
    /// The runtime's own message where the API has it (e.g. for `StartError`).
    pub message: Option<String>,
    /// Who decided the death: the kernel's evidence, joined with what the kubelet and the
    /// controllers published (docs/record.md, "Initiators"). Records written before it existed
    /// read as `unknown`.
    #[serde(default)]
    pub initiator: Initiator,
    /// The grace period the kubelet gave, in whole seconds as the pod spec states it; `None`
    /// when unknown.
    #[serde(default)]
    pub grace_allowed_seconds: Option<u64>,
    /// On an init's record: the death in the same container that explains the init's exit
    /// (a descendant OOM-killed or killed by a signal shortly before), when there is one. The
    /// init's own `reason` stays what the kernel says.
    #[serde(default)]
    pub cause: Option<Cause>,
    /// A stop signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT) another process sent reached this
    /// process and the kernel dropped it: a PID 1 without a handler (the `sh -c` wrapper that
    /// never forwards it) or a process ignoring it. Why a stop takes the whole grace period.
    #[serde(default)]
    pub stop_signal_ignored: bool,
    /// How long the process lived: from its start (`task->start_boottime`) to its exit, both
    /// on the kernel's boot clock. `None` when the kernel did not give the start.
    #[serde(default)]
    pub uptime_seconds: Option<f64>,
}

/// The death of a descendant in the same container that explains an init's exit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub pid: u32,
    pub comm: String,
    /// The descendant's own verdict (`OOMKilled`, `Crashed`, `Killed`, …).
    pub reason: Reason,
    pub signal: Option<u8>,
    /// The descendant's OOM kill, when that is what it died of.
    pub oom: Option<OomKill>,
    /// How long before the init's exit the descendant died.
    pub seconds_before: f64,
}

/// The verdict: why the process died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reason {
    Completed,
    Error,
    CommandNotFound,
    NotExecutable,
    #[serde(rename = "OOMKilled")]
    OomKilled,
    GracePeriodExpired,
    Killed,
    Terminated,
    Crashed,
    Signaled,
    /// The container's init died before it executed the container's command: the runtime
    /// could not start it (missing or non-executable entrypoint, …).
    StartError,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::Completed,
        Reason::Error,
        Reason::CommandNotFound,
        Reason::NotExecutable,
        Reason::OomKilled,
        Reason::GracePeriodExpired,
        Reason::Killed,
        Reason::Terminated,
        Reason::Crashed,
        Reason::Signaled,
        Reason::StartError,
    ];

    /// The string of the contract, as in JSON and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Completed => "Completed",
            Reason::Error => "Error",
            Reason::CommandNotFound => "CommandNotFound",
            Reason::NotExecutable => "NotExecutable",
            Reason::OomKilled => "OOMKilled",
            Reason::GracePeriodExpired => "GracePeriodExpired",
            Reason::Killed => "Killed",
            Reason::Terminated => "Terminated",
            Reason::Crashed => "Crashed",
            Reason::Signaled => "Signaled",
            Reason::StartError => "StartError",
        }
    }

    /// Whether a person should look at it (a Warning Event, not Normal).
    #[must_use]
    pub const fn is_abnormal(self) -> bool {
        !matches!(self, Reason::Completed)
    }
}

/// Who sent the fatal signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub pid: u32,
    pub comm: String,
    /// The sender's memory cgroup path; empty for the kernel.
    pub cgroup: String,
    pub kind: SenderKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderKind {
    /// The kernel: the OOM killer, or a fault (SIGSEGV, SIGBUS, …) it raised.
    Kernel,
    #[serde(rename = "self")]
    SelfSent,
    SameContainer,
    OtherContainer,
    /// A process outside every container: the runtime, kubelet, an operator's shell.
    Host,
}

impl SenderKind {
    pub const ALL: [SenderKind; 5] = [
        SenderKind::Kernel,
        SenderKind::SelfSent,
        SenderKind::SameContainer,
        SenderKind::OtherContainer,
        SenderKind::Host,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SenderKind::Kernel => "kernel",
            SenderKind::SelfSent => "self",
            SenderKind::SameContainer => "same_container",
            SenderKind::OtherContainer => "other_container",
            SenderKind::Host => "host",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OomScope {
    /// A memory cgroup hit its limit.
    Memcg,
    /// The node ran out of memory; no cgroup limit was involved.
    Global,
}

impl OomScope {
    pub const ALL: [OomScope; 2] = [OomScope::Memcg, OomScope::Global];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OomScope::Memcg => "memcg",
            OomScope::Global => "global",
        }
    }
}

/// An OOM kill, as the kernel saw it at the moment it chose the victim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    pub scope: OomScope,
    /// anon + file + shmem at the kill; `None` where the kernel gave no way to read them
    /// (never a guess: the victim's peak is `peak_rss_bytes`).
    pub victim_rss_bytes: Option<u64>,
    pub anon_rss_bytes: Option<u64>,
    pub file_rss_bytes: Option<u64>,
    pub shmem_rss_bytes: Option<u64>,
    /// The limit of the memory cgroup that hit it; `None` for a global OOM.
    pub memory_limit_bytes: Option<u64>,
    /// The memory cgroup that hit its limit (the container's, the pod's, or an ancestor's).
    pub limit_cgroup: Option<String>,
    /// The task whose allocation could not be satisfied.
    pub trigger_pid: u32,
    pub trigger_comm: String,
    pub oom_score_adj: i32,
}

/// The last failed `execve` in the container before the death.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFailure {
    pub path: String,
    /// Symbolic errno, e.g. `ENOENT`.
    pub errno: String,
    /// The process whose exec failed (often a child: shells fork before exec).
    pub pid: u32,
}

/// The conventional name of a signal number, as `kill -l` prints it.
#[must_use]
pub fn signal_name(sig: u8) -> Cow<'static, str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    // glibc keeps 32 and 33 for itself, so user-visible SIGRTMIN is 34.
    const SIGRTMIN: u8 = 34;
    match sig {
        1..=31 => Cow::Borrowed(NAMES[usize::from(sig - 1)]),
        SIGRTMIN => Cow::Borrowed("SIGRTMIN"),
        35..=64 => Cow::Owned(format!("SIGRTMIN+{}", sig - SIGRTMIN)),
        other => Cow::Owned(format!("SIG{other}")),
    }
}
