//! The end of the data path: each labelled record goes to the metrics, the recent-records
//! ring, the JSON lines file, the Kubernetes Event recorder and, for a person, stdout.

use std::fmt::Write as _;

use tracing::warn;

use crate::export::{JsonLines, LossStage, Metrics, RecentRecords};
use crate::kube::KubeClient;
use crate::record::{Role, TerminationRecord};

pub struct Sink {
    pub metrics: Metrics,
    pub recent: RecentRecords,
    pub json: Option<JsonLines>,
    pub kube: Option<KubeClient>,
    pub print: bool,
}

impl Sink {
    /// Every output for a batch of records: the JSON lines in one write, then the metrics,
    /// the Event, stdout and the recent ring for each. Records of pods annotated
    /// `coroner.io/ignore: "true"` never get here: labelling leaves them out.
    pub fn emit_all(&mut self, records: impl IntoIterator<Item = TerminationRecord>) {
        let records: Vec<TerminationRecord> = records.into_iter().collect();
        if records.is_empty() {
            return;
        }
        if let Some(json) = self.json.as_mut() {
            let (lost, error) = json.write_batch(&records);
            if lost > 0 {
                self.metrics.lost(LossStage::Json, lost as u64);
            }
            if let Some(e) = error {
                warn!("writing records to {}: {e}", json.target());
            }
        }
        for record in records {
            // The sandbox's death is the pod's teardown: recorded, never a container's death
            // in metrics or Events.
            if record.role != Role::Sandbox {
                self.metrics.observe(&record);
            }
            self.after_write(record);
        }
    }

    /// The outputs after the metrics and the JSON line: the Event, stdout, the recent ring.
    fn after_write(&mut self, record: TerminationRecord) {
        if let Some(kube) = self.kube.as_ref().filter(|_| record.role != Role::Sandbox) {
            kube.record_event(&record);
        }
        if self.print {
            println!("{}", human(&record));
        }
        self.recent.push(record);
    }
}

fn mib(bytes: u64) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a tenth of a MiB is all a person reads"
    )]
    let mib = bytes as f64 / f64::from(1 << 20);
    format!("{mib:.1}Mi")
}

/// One line a person reads: who died, of what, and the evidence.
#[must_use]
pub fn human(r: &TerminationRecord) -> String {
    let mut line = format!("{} ", r.time.time());
    if let (Some(ns), Some(pod)) = (&r.namespace, &r.pod) {
        let _ = write!(
            line,
            "{ns}/{pod}/{} ",
            r.container.as_deref().unwrap_or("?")
        );
    } else {
        let id = r.container_id.as_deref().unwrap_or("");
        let _ = write!(
            line,
            "pod {} container {} ",
            r.pod_uid.as_deref().unwrap_or("?"),
            &id[..id.len().min(12)]
        );
    }
    let role = r.role.as_str();
    let _ = write!(
        line,
        "{} pid {} ({role}) {}: exit status {}",
        r.comm,
        r.pid,
        r.reason.as_str(),
        r.exit_status
    );
    if let Some(sig) = r.signal {
        let _ = write!(
            line,
            ", signal {sig}{}",
            if r.core_dumped { " (core dumped)" } else { "" }
        );
    }
    if let Some(s) = &r.sender {
        let _ = write!(
            line,
            ", sent by {} pid {} ({})",
            s.comm,
            s.pid,
            s.kind.as_str()
        );
    }
    if let Some(grace) = r.grace_seconds {
        let _ = write!(line, ", SIGKILL {grace:.1}s after SIGTERM");
    }
    let _ = write!(line, ", initiator {}", r.initiator.as_str());
    if let Some(allowed) = r.grace_allowed_seconds {
        let _ = write!(line, " (grace {allowed}s allowed)");
    }
    if let Some(oom) = &r.oom {
        let _ = write!(
            line,
            ", {} OOM, victim RSS {}",
            oom.scope.as_str(),
            oom.victim_rss_bytes
                .map_or_else(|| "unknown".to_owned(), mib)
        );
        if let Some(limit) = oom.memory_limit_bytes {
            let _ = write!(line, " of limit {}", mib(limit));
        }
    }
    if let Some(x) = &r.exec_failure {
        let _ = write!(line, ", exec {} failed: {}", x.path, x.errno);
    }
    let _ = write!(line, ", peak RSS {}", mib(r.peak_rss_bytes));
    line
}
