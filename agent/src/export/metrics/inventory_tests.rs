//! The inventory of what the stages count, held to `/metrics`: every field of every stats
//! struct shows up exactly once, under the metric written next to it here, and every loss is
//! in `coroner_events_lost_total{stage}` too.
//!
//! The structs are built with struct literals without `..`, so a field added later does not
//! compile here until it has a line (and so a metric) of its own. Every value is a distinct
//! power of two: any sum of them says exactly which fields it holds, so a field exported under
//! the wrong metric, twice, or not added into its stage is seen.

use std::collections::BTreeMap;

use agent_ebpf::counter;

use super::{
    EventCounts, EventKind, KernelCounters, KernelStageStats, LossStage, Metrics, ReaderStats,
};
use crate::cgroup::{ResolverCacheSizes, ResolverStats};
use crate::correlate::{CorrelatorStats, TableEvictions, TableSizes};
use crate::kube::KubeStats;
use crate::pipeline::lookup::HostMemcgStats;

/// Hands out the values, remembering where each must show.
#[derive(Default)]
struct Inventory {
    next_bit: u32,
    /// value → (series it must be in, stage it must be lost at)
    expected: Vec<(u64, Option<String>, Option<&'static str>)>,
}

impl Inventory {
    fn value(&mut self, series: Option<String>, stage: Option<&'static str>) -> u64 {
        assert!(
            series.is_some() || stage.is_some(),
            "a value must show somewhere"
        );
        // Bit 0 is left out: 1 is what a boolean gauge shows.
        self.next_bit += 1;
        let value = 1u64 << self.next_bit;
        self.expected.push((value, series, stage));
        value
    }

    /// A counter or gauge of its own.
    fn metric(&mut self, series: &str) -> u64 {
        self.value(Some(series.to_owned()), None)
    }

    fn size(&mut self, series: &str) -> usize {
        usize::try_from(self.metric(series)).expect("fits")
    }

    /// A counter of its own, also lost at `stage`.
    fn metric_lost(&mut self, series: &str, stage: &'static str) -> u64 {
        self.value(Some(series.to_owned()), Some(stage))
    }

    /// Only in `coroner_events_lost_total{stage}`.
    fn lost(&mut self, stage: &'static str) -> u64 {
        self.value(None, Some(stage))
    }

    /// Scrapes and checks every value, and that nothing else shows among the stages' series.
    fn check(&self, metrics: &Metrics, others: &[&str]) {
        let text = metrics.encode();
        let samples = samples(&text);
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for (value, series, stage) in &self.expected {
            if let Some(series) = series {
                *want.entry(series.clone()).or_default() |= value;
            }
            if let Some(stage) = stage {
                *want.entry(lost_series(stage)).or_default() |= value;
            }
        }
        for stage in LossStage::ALL {
            want.entry(lost_series(stage.as_str())).or_default();
        }
        for (series, value) in &want {
            assert_eq!(
                samples.get(series.as_str()),
                Some(value),
                "{series}: want {value:#x}\n{text}"
            );
        }
        // Each value in its series and its stage's total, and in no other series.
        for (value, series, stage) in &self.expected {
            let holders: Vec<String> = samples
                .iter()
                .filter(|(_, v)| *v & value != 0)
                .map(|(series, _)| (*series).to_owned())
                .collect();
            let wanted: Vec<String> = series
                .iter()
                .cloned()
                .chain(stage.map(lost_series))
                .collect();
            let mut holders_sorted = holders.clone();
            let mut wanted_sorted = wanted.clone();
            holders_sorted.sort();
            wanted_sorted.sort();
            assert_eq!(holders_sorted, wanted_sorted, "where {value:#x} shows");
        }
        // The registry's own families are not the stages' counters.
        for (series, value) in &samples {
            let family = series.split('{').next().unwrap_or(series);
            let stages = !others.iter().any(|o| family.starts_with(o));
            if stages && *value != 0 {
                assert!(
                    want.contains_key(*series),
                    "{series} = {value:#x} is in no inventory line"
                );
            }
        }
    }
}

fn lost_series(stage: &str) -> String {
    format!("coroner_events_lost_total{{stage=\"{stage}\"}}")
}

/// Series → value, exactly as written (integers, read as such, not through a float).
fn samples(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(series, value)| Some((series, value.parse().ok()?)))
        .collect()
}

/// What the registry holds itself (per record, per probe), outside the stages' counters.
const REGISTRY: &[&str] = &[
    "coroner_grace_period_seconds",
    "coroner_signals",
    "coroner_probe_attached",
    "coroner_build_info",
    "coroner_pod_series_dropped",
    "coroner_http_auth_cache",
    "coroner_http_auth_decisions",
];

fn kernel_slots(x: &mut Inventory) -> KernelCounters {
    let lost = |kind: &str| format!("coroner_kernel_events_lost_total{{kind=\"{kind}\"}}");
    let slots: [u64; counter::COUNT as usize] =
        std::array::from_fn(|slot| match u32::try_from(slot).expect("a few slots") {
            counter::LOST_EXIT => x.metric_lost(&lost("exit"), "kernel"),
            counter::LOST_SIGNAL => x.metric_lost(&lost("signal"), "kernel"),
            counter::LOST_OOM => x.metric_lost(&lost("oom"), "kernel"),
            counter::LOST_EXEC_FAILURE => x.metric_lost(&lost("exec_failure"), "kernel"),
            counter::LOST_CGROUP_MKDIR => x.metric_lost(&lost("cgroup_mkdir"), "kernel"),
            counter::EXEC_STASH_FULL => {
                x.metric_lost("coroner_kernel_exec_stash_full_total", "kernel")
            }
            counter::EXIT_FILTERED => {
                x.metric("coroner_kernel_events_filtered_total{kind=\"exit\"}")
            }
            counter::SIGNAL_FILTERED => {
                x.metric("coroner_kernel_events_filtered_total{kind=\"signal\"}")
            }
            counter::EMITTED => x.metric("coroner_kernel_events_emitted_total"),
            counter::EXIT_HOST => x.metric("coroner_deaths_outside_containers_total"),
            counter::EXIT_RUNTIME => {
                x.metric("coroner_exits_without_record_total{role=\"runtime\"}")
            }
            counter::EXIT_EXEC => x.metric("coroner_exits_without_record_total{role=\"exec\"}"),
            other => panic!("kernel counter slot {other} has no inventory line"),
        });
    KernelCounters::from_slots(&slots)
}

fn kernel_stage(x: &mut Inventory) -> KernelStageStats {
    let mut events = EventCounts::default();
    for kind in EventKind::ALL {
        let series = format!("coroner_events_total{{kind=\"{}\"}}", kind.as_str());
        events.add(kind, x.metric(&series));
    }
    let evicted = |table: &str| format!("coroner_correlator_evictions_total{{table=\"{table}\"}}");
    let entries = |table: &str| format!("coroner_correlator_table_entries{{table=\"{table}\"}}");
    let cache = |cache: &str| format!("coroner_cgroup_cache_entries{{cache=\"{cache}\"}}");
    KernelStageStats {
        kernel: kernel_slots(x),
        events,
        reader: ReaderStats {
            undecodable: x.lost("decode"),
            park_errors: x.metric("coroner_reader_park_errors_total"),
        },
        correlator: CorrelatorStats {
            records: x.metric("coroner_correlator_records_total"),
            deaths_outside_containers: x.metric("coroner_deaths_outside_containers_total"),
            deaths_without_record: x.metric("coroner_deaths_without_record_total"),
            unresolved_memcgs: x.lost("cgroup"),
            unresolved_senders: x.metric("coroner_senders_unresolved_total"),
            oom_kills_without_exit: x.metric("coroner_correlator_oom_kills_without_exit_total"),
            oom_kills_not_recorded: x.metric("coroner_unrecorded_oom_kills_total"),
            duplicates: x.metric("coroner_duplicate_events_total"),
            late_events: x.metric("coroner_late_events_total"),
            malformed_events: x.metric_lost("coroner_malformed_events_total", "decode"),
            signal_histories_expired: x.metric("coroner_signal_histories_expired_total"),
            evictions: TableEvictions {
                signal_histories: x.metric_lost(&evicted("signal_histories"), "correlate"),
                pending_exits: x.metric(&evicted("pending_exits")),
                oom_victims: x.metric(&evicted("oom_victims")),
                exec_failure_memcgs: x.metric_lost(&evicted("exec_failure_memcgs"), "correlate"),
                finished: x.metric(&evicted("finished")),
                cause_memcgs: x.metric_lost(&evicted("cause_memcgs"), "correlate"),
            },
        },
        tables: TableSizes {
            signal_histories: x.size(&entries("signal_histories")),
            pending_exits: x.size(&entries("pending_exits")),
            oom_victims: x.size(&entries("oom_victims")),
            exec_failure_memcgs: x.size(&entries("exec_failure_memcgs")),
            finished: x.size(&entries("finished")),
            cause_memcgs: x.size(&entries("cause_memcgs")),
        },
        resolver: ResolverStats {
            walks: x.metric("coroner_cgroup_walks_total"),
            truncated_walks: x.metric("coroner_cgroup_walks_truncated_total"),
            failed_walks: x.metric("coroner_cgroup_walks_failed_total"),
            unknown_ids: x.metric("coroner_cgroup_ids_unresolved_total"),
            unmatched_kubepods: x.metric("coroner_cgroup_paths_unmatched_total"),
        },
        resolver_cache: ResolverCacheSizes {
            cgroups: x.size(&cache("cgroups")),
            unknown_ids: x.size(&cache("unknown_ids")),
            warned_prefixes: x.size(&cache("warned_prefixes")),
        },
        host_memcgs: HostMemcgStats {
            marked: x.metric("coroner_host_memcgs_marked_total"),
            mark_failures: x.metric("coroner_host_memcg_mark_failures_total"),
        },
    }
}

fn kube(x: &mut Inventory) -> KubeStats {
    let lost = |cause: &str| format!("coroner_kube_events_lost_total{{cause=\"{cause}\"}}");
    let writes =
        |result: &str| format!("coroner_kube_crash_loop_writes_total{{result=\"{result}\"}}");
    KubeStats {
        watch_up: true,
        pods_indexed: x.metric("coroner_kube_pods_indexed"),
        watch_errors: x.metric("coroner_kube_watch_errors_total"),
        relists: x.metric("coroner_kube_relists_total"),
        pods_undecodable: x.metric("coroner_kube_pods_undecodable_total"),
        index_full: x.metric("coroner_kube_pods_not_indexed_total"),
        lookups: x.metric("coroner_kube_lookups_total"),
        lookups_waited: x.metric("coroner_kube_lookups_waited_total"),
        lookups_pod_only: x.metric("coroner_kube_lookups_pod_only_total"),
        lookups_unknown: x.metric("coroner_kube_lookups_unknown_total"),
        waiters_rejected: x.metric("coroner_kube_lookup_waits_rejected_total"),
        owner_fetches: x.metric("coroner_kube_owner_fetches_total"),
        owner_fetch_failures: x.metric("coroner_kube_owner_fetch_failures_total"),
        owners_inferred: x.metric("coroner_kube_owners_inferred_total"),
        initiator_event_reads: x.metric("coroner_kube_initiator_event_reads_total"),
        initiator_event_read_failures: x.metric("coroner_kube_initiator_event_read_failures_total"),
        events_posted: x.metric("coroner_kube_events_posted_total"),
        events_series_updates: x.metric("coroner_kube_event_series_updates_total"),
        events_suppressed: x.metric("coroner_kube_events_suppressed_total"),
        crash_loop_events: x.metric(&writes("created")),
        crash_loop_updates: x.metric(&writes("updated")),
        crash_loop_deaths: x.metric("coroner_kube_crash_loop_deaths_total"),
        crash_loop_write_failures: x.metric(&writes("failed")),
        events_lost_queue_full: x.metric_lost(&lost("queue_full"), "kube_event"),
        events_lost_post_failed: x.metric_lost(&lost("post_failed"), "kube_event"),
        events_lost_unlabelled: x.metric_lost(&lost("unlabelled"), "kube_event"),
        events_lost_evicted: x.metric_lost(&lost("evicted"), "kube_event"),
        events_filtered_type: x.metric("coroner_kube_events_filtered_total{reason=\"type\"}"),
        events_filtered_namespace: x
            .metric("coroner_kube_events_filtered_total{reason=\"namespace\"}"),
        records_ignored: x.metric("coroner_records_ignored_total"),
    }
}

#[test]
fn every_counter_of_the_kernel_stage_is_on_metrics_once() {
    let metrics = Metrics::default();
    let mut x = Inventory::default();
    metrics.publish_kernel_stage(kernel_stage(&mut x));
    x.check(&metrics, &[REGISTRY, &["coroner_kube_"]].concat());
}

#[test]
fn every_counter_of_the_kube_side_and_the_async_stages_is_on_metrics_once() {
    let metrics = Metrics::default();
    let mut x = Inventory::default();
    let stats = kube(&mut x);
    metrics.watch_kube(move || stats);
    // The stages that count their losses where they happen.
    for stage in LossStage::ALL {
        metrics.lost(stage, x.lost(stage.as_str()));
    }
    x.check(&metrics, &[REGISTRY, &["coroner_kube_watch_up"]].concat());
    assert_eq!(
        samples(&metrics.encode()).get("coroner_kube_watch_up"),
        Some(&1)
    );
}

#[test]
fn the_label_vocabularies_index_their_arrays() {
    for (i, stage) in LossStage::ALL.into_iter().enumerate() {
        assert_eq!(stage as usize, i);
    }
    for (i, kind) in EventKind::ALL.into_iter().enumerate() {
        assert_eq!(kind as usize, i);
    }
}
