//! Labelling and the sink in one task: records that need no wait (no API server, no pod, or
//! the index already knows the container) go straight to the sink in batches; each one that
//! must wait for its pod metadata waits in a task of its own, bounded, and comes back through
//! a second channel to the same loop.
//!
//! One task, not two joined by a channel: in a death storm every hop between tasks is a
//! worker wake-up, and wake-ups were most of the agent's CPU per event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::export::{LossStage, Metrics};
use crate::kube::{KubeClient, initiator_without_api};
use crate::record::TerminationRecord;

use super::sink::Sink;

/// Records handled per wake-up of the loop.
const BATCH: usize = 512;

/// Spawns the loop; it ends (returning the sink) once `records` is closed and every record
/// waiting for its labels has been emitted.
#[must_use = "the handle gives the sink back at shutdown"]
pub fn spawn(
    mut records: mpsc::Receiver<TerminationRecord>,
    mut sink: Sink,
    kube: Option<KubeClient>,
    metrics: Metrics,
    in_flight: usize,
) -> JoinHandle<Sink> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(in_flight));
        let (waited_tx, mut waited_rx) = mpsc::channel::<TerminationRecord>(in_flight.max(1));
        let mut batch = Vec::with_capacity(BATCH);
        let mut waited = Vec::with_capacity(BATCH);
        let mut records_open = true;
        while records_open {
            tokio::select! {
                biased;
                // Waited records first: they are the oldest.
                n = waited_rx.recv_many(&mut waited, BATCH) => {
                    if n > 0 {
                        sink.emit_all(waited.drain(..));
                    }
                }
                n = records.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        records_open = false;
                        continue;
                    }
                    let ready: Vec<TerminationRecord> = batch
                        .drain(..)
                        .filter_map(|record| {
                            route(record, kube.as_ref(), &permits, &waited_tx, &metrics)
                        })
                        .collect();
                    sink.emit_all(ready);
                }
            }
        }
        // The kernel stage is done: what still waits for labels finishes (each bounded by
        // the label wait), then the channel closes.
        drop(waited_tx);
        while waited_rx.recv_many(&mut waited, BATCH).await > 0 {
            sink.emit_all(waited.drain(..));
        }
        sink
    })
}

/// A record's way to the sink: at once with what the index knows, or through a bounded wait
/// for its labels and its initiator (`None`: it comes back through `waited`, or its pod opted
/// out and it goes nowhere).
fn route(
    mut record: TerminationRecord,
    kube: Option<&KubeClient>,
    permits: &Arc<Semaphore>,
    waited: &mpsc::Sender<TerminationRecord>,
    metrics: &Metrics,
) -> Option<TerminationRecord> {
    let Some(kube) = kube else {
        record.initiator = initiator_without_api(record.initiator);
        return Some(record);
    };
    let Some(key) = wait_key(&record) else {
        // No container to label; the pod, when there is one, may still have opted out.
        if kube.opted_out(&record) {
            return None;
        }
        record.initiator = initiator_without_api(record.initiator);
        return Some(record);
    };
    let Some(labelled) = kube.label_cached(&key.0, &key.1) else {
        return wait_for_api(kube, Some(key), record, permits, waited, metrics);
    };
    if labelled.opted_out {
        kube.count_opted_out();
        return None;
    }
    note_partial(metrics, &labelled);
    labelled.apply_to(&mut record);
    if kube.explain_cached(&mut record) {
        Some(record)
    } else {
        wait_for_api(kube, None, record, permits, waited, metrics)
    }
}

fn wait_key(record: &TerminationRecord) -> Option<(String, String)> {
    record.pod_uid.clone().zip(record.container_id.clone())
}

fn note_partial(metrics: &Metrics, labelled: &crate::kube::Labelled) {
    if labelled.is_partial() {
        metrics.lost(LossStage::Label, 1);
    }
}

/// Starts a bounded wait for the record's labels (when `key` is given) and then for who
/// decided the death, both within one label wait; the record comes back through `waited`.
/// With `in_flight` waits already running, the record is handed back at once, with what is
/// known and counted in stage `label`: the loop never blocks on the API server, and nothing
/// queues without bound.
fn wait_for_api(
    kube: &KubeClient,
    key: Option<(String, String)>,
    mut record: TerminationRecord,
    permits: &Arc<Semaphore>,
    waited: &mpsc::Sender<TerminationRecord>,
    metrics: &Metrics,
) -> Option<TerminationRecord> {
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        // Handed back unlabelled; an opted-out pod the index knows still gets nothing.
        if kube.opted_out(&record) {
            return None;
        }
        metrics.lost(LossStage::Label, 1);
        record.initiator = initiator_without_api(record.initiator);
        return Some(record);
    };
    let (kube, waited, metrics) = (kube.clone(), waited.clone(), metrics.clone());
    tokio::spawn(async move {
        let _permit = permit;
        // One bound for the whole record: the labels' wait and the initiator's share it.
        let deadline = kube.api_deadline();
        if let Some((pod_uid, container_id)) = key {
            let labelled = kube.label_until(&pod_uid, &container_id, deadline).await;
            if labelled.opted_out {
                kube.count_opted_out();
                return;
            }
            note_partial(&metrics, &labelled);
            labelled.apply_to(&mut record);
        }
        if !kube.explain_cached(&mut record) {
            kube.explain(&mut record, deadline).await;
        }
        let _ = waited.send(record).await;
    });
    None
}

/// How long shutdown waits for the loop: the longest label wait plus the sink's drain.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::recent::tests::record;
    use crate::export::{JsonLines, MetricsConfig, RecentFilter, RecentRecords};

    fn lost(metrics: &Metrics, stage: &str) -> Option<u64> {
        let text = metrics.encode();
        let prefix = format!("coroner_events_lost_total{{stage=\"{stage}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    fn sink(json: Option<JsonLines>, metrics: &Metrics) -> Sink {
        Sink {
            metrics: metrics.clone(),
            recent: RecentRecords::new(4096),
            json,
            kube: None,
            print: false,
        }
    }

    #[tokio::test]
    async fn without_an_api_server_every_record_reaches_the_sink_in_order_once() {
        let metrics = Metrics::new(MetricsConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        let json = JsonLines::open(path.to_str().unwrap()).unwrap();
        let (tx, rx) = mpsc::channel(4096);
        let task = spawn(rx, sink(Some(json), &metrics), None, metrics.clone(), 8);
        for pid in 0..3000 {
            tx.send(record(Some("ns"), Some("pod"), pid)).await.unwrap();
        }
        drop(tx);
        let sink = task.await.unwrap();
        let recent: Vec<u32> = sink
            .recent
            .snapshot(&RecentFilter::default())
            .iter()
            .map(|r| r.pid)
            .collect();
        assert_eq!(recent, (0..3000).collect::<Vec<_>>());
        let lines = std::fs::read_to_string(&path).unwrap();
        let pids: Vec<u64> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["pid"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(pids, (0..3000).collect::<Vec<_>>());
        assert_eq!(lost(&metrics, "json"), Some(0));
    }

    #[tokio::test]
    async fn a_failed_write_counts_every_record_it_lost() {
        let metrics = Metrics::new(MetricsConfig::default());
        // Every write to /dev/full fails with ENOSPC.
        let json = JsonLines::open("/dev/full").unwrap();
        let (tx, rx) = mpsc::channel(64);
        let task = spawn(rx, sink(Some(json), &metrics), None, metrics.clone(), 8);
        for pid in 0..40 {
            tx.send(record(None, None, pid)).await.unwrap();
        }
        drop(tx);
        let sink = task.await.unwrap();
        assert_eq!(lost(&metrics, "json"), Some(40));
        // The other outputs still have them.
        assert_eq!(sink.recent.snapshot(&RecentFilter::default()).len(), 40);
    }
}
