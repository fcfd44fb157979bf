//! Label sets and the closed label vocabularies of the metrics.

use std::borrow::Cow;

use prometheus_client::encoding::EncodeLabelSet;

/// Every place an event can be dropped between the kernel and the outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossStage {
    /// The ring buffer was full (counted in the kernel).
    Kernel,
    /// A ring-buffer record could not be decoded.
    Decode,
    /// A channel between two stages was full.
    Channel,
    /// A memcg id could not be resolved to a cgroup path.
    Cgroup,
    /// Correlation state was evicted before the death it belonged to.
    Correlate,
    /// A record went out without pod labels.
    Label,
    /// A Kubernetes Event could not be posted.
    KubeEvent,
    /// A record could not be written to `--events-json`.
    Json,
}

impl LossStage {
    pub const ALL: [LossStage; 8] = [
        LossStage::Kernel,
        LossStage::Decode,
        LossStage::Channel,
        LossStage::Cgroup,
        LossStage::Correlate,
        LossStage::Label,
        LossStage::KubeEvent,
        LossStage::Json,
    ];

    /// The `stage` label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            LossStage::Kernel => "kernel",
            LossStage::Decode => "decode",
            LossStage::Channel => "channel",
            LossStage::Cgroup => "cgroup",
            LossStage::Correlate => "correlate",
            LossStage::Label => "label",
            LossStage::KubeEvent => "kube_event",
            LossStage::Json => "json",
        }
    }
}

/// Kinds of kernel events user space handles (`coroner_events_total{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Exit,
    Signal,
    Oom,
    ExecFailure,
    CgroupMkdir,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Exit,
        EventKind::Signal,
        EventKind::Oom,
        EventKind::ExecFailure,
        EventKind::CgroupMkdir,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Exit => "exit",
            EventKind::Signal => "signal",
            EventKind::Oom => "oom",
            EventKind::ExecFailure => "exec_failure",
            EventKind::CgroupMkdir => "cgroup_mkdir",
        }
    }
}

/// Kernel events the programs decided not to send (`coroner_kernel_events_filtered_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilteredKind {
    /// An exit that needed no record (outside containers, or a child's plain `exit()`).
    Exit,
    /// A signal that cannot kill its target.
    Signal,
}

impl FilteredKind {
    pub const ALL: [FilteredKind; 2] = [FilteredKind::Exit, FilteredKind::Signal];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            FilteredKind::Exit => "exit",
            FilteredKind::Signal => "signal",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProbeLabels {
    pub probe: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VersionLabels {
    pub version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SignalLabels {
    pub signal: Cow<'static, str>,
    pub sender_kind: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::signal_name;

    #[test]
    fn signal_names_follow_kill_l() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(36), "SIGRTMIN+2");
        assert_eq!(signal_name(32), "SIG32");
        assert_eq!(signal_name(0), "SIG0");
    }

    #[test]
    fn stage_names_are_distinct() {
        let mut names: Vec<_> = LossStage::ALL.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LossStage::ALL.len());
    }
}
