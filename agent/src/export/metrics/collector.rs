//! The stages' counters at `/metrics`: one prometheus-client [`Collector`], registered once,
//! that encodes at scrape time from the snapshots the stages publish. What goes where is
//! `catalogue`; this is the plumbing.
//!
//! The kernel stage owns its state without a lock and publishes a [`KernelStageStats`] once a
//! second; the Kubernetes side's atomics are read at the scrape; the async stages' losses
//! (channel, label, json) are atomics here.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::catalogue::{self, EVENTS_LOST, Entry, Family, Kind};
use super::labels::{EventKind, LossStage};
use super::{KernelCounters, lock};
use crate::cgroup::{ResolverCacheSizes, ResolverStats};
use crate::correlate::{CorrelatorStats, TableSizes};
use crate::kube::KubeStats;
use crate::pipeline::lookup::HostMemcgStats;

/// The ring buffer reader's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// Failed writes of the park flag.
    pub park_errors: u64,
}

/// Kernel events handled by user space, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts([u64; EventKind::ALL.len()]);

impl EventCounts {
    pub fn note(&mut self, kind: EventKind) {
        self.add(kind, 1);
    }

    pub fn add(&mut self, kind: EventKind, n: u64) {
        let count = &mut self.0[kind as usize];
        *count = count.saturating_add(n);
    }

    #[must_use]
    pub fn get(&self, kind: EventKind) -> u64 {
        self.0[kind as usize]
    }
}

/// What the kernel stage publishes: every total it keeps, as of its last housekeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStageStats {
    pub kernel: KernelCounters,
    pub events: EventCounts,
    pub reader: ReaderStats,
    pub correlator: CorrelatorStats,
    pub tables: TableSizes,
    pub resolver: ResolverStats,
    pub resolver_cache: ResolverCacheSizes,
    pub host_memcgs: HostMemcgStats,
}

type KubeSource = Box<dyn Fn() -> KubeStats + Send + Sync>;

/// What the collector reads; [`super::Metrics`] holds the same.
#[derive(Default)]
pub(super) struct Sources {
    pub kernel_stage: Mutex<KernelStageStats>,
    pub kube: OnceLock<KubeSource>,
    /// Losses counted where they happen, by [`LossStage`] index.
    pub direct_losses: [AtomicU64; LossStage::ALL.len()],
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("kernel_stage", &*lock(&self.kernel_stage))
            .field("kube", &self.kube.get().is_some())
            .field("direct_losses", &self.direct_losses)
            .finish()
    }
}

impl Sources {
    pub fn lost(&self, stage: LossStage, n: u64) {
        self.direct_losses[stage as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Every sample, from the current snapshots.
    pub fn samples(&self) -> Samples {
        let mut out = Samples::default();
        let stage = *lock(&self.kernel_stage);
        catalogue::kernel_stage(&stage, &mut out);
        let kube = self
            .kube
            .get()
            .map_or_else(KubeStats::default, |stats| stats());
        catalogue::kube(&kube, &mut out);
        for stage in LossStage::ALL {
            let n = self.direct_losses[stage as usize].load(Ordering::Relaxed);
            out.add(Entry::loss(stage), n);
        }
        out
    }
}

/// A sample's one label, if it has one.
type Label = Option<(&'static str, &'static str)>;

/// One scrape's samples, merged by family and label, in the catalogue's order.
#[derive(Debug, Default)]
pub(super) struct Samples {
    families: Vec<(&'static Family, Vec<(Label, u64)>)>,
    losses: [u64; LossStage::ALL.len()],
}

impl Samples {
    pub fn add(&mut self, entry: Entry, value: u64) {
        if let Some(stage) = entry.loss {
            let total = &mut self.losses[stage as usize];
            *total = total.saturating_add(value);
        }
        let Some(family) = entry.family else {
            return;
        };
        let at = self
            .families
            .iter()
            .position(|(f, _)| std::ptr::eq(*f, family))
            .unwrap_or_else(|| {
                self.families.push((family, Vec::new()));
                self.families.len() - 1
            });
        let series = &mut self.families[at].1;
        match series.iter_mut().find(|(label, _)| *label == entry.label) {
            Some((_, total)) => *total = total.saturating_add(value),
            None => series.push((entry.label, value)),
        }
    }

    pub fn lost(&self, stage: LossStage) -> u64 {
        self.losses[stage as usize]
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let losses =
            LossStage::ALL.map(|stage| (Some(("stage", stage.as_str())), self.lost(stage)));
        encode_family(encoder, &EVENTS_LOST, &losses)?;
        for (family, series) in &self.families {
            encode_family(encoder, family, series)?;
        }
        Ok(())
    }
}

fn encode_family(
    encoder: &mut DescriptorEncoder,
    family: &Family,
    series: &[(Label, u64)],
) -> fmt::Result {
    let metric_type = match family.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let mut metric = encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
    for &(label, value) in series {
        match label {
            None => encode_value(family.kind, value, &mut metric)?,
            Some(pair) => encode_value(family.kind, value, &mut metric.encode_family(&[pair])?)?,
        }
    }
    Ok(())
}

fn encode_value(kind: Kind, value: u64, encoder: &mut MetricEncoder) -> fmt::Result {
    match kind {
        Kind::Counter => encoder.encode_counter::<NoLabelSet, u64, u64>(&value, None),
        Kind::Gauge => encoder.encode_gauge(&value),
    }
}

/// The [`Collector`] over [`Sources`].
#[derive(Debug)]
pub(super) struct StatsCollector(pub std::sync::Arc<Sources>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.0.samples().encode(&mut encoder)
    }
}
