//! The per-pod families written straight into the exposition, in the format the client asked
//! for: the same lines prometheus-client's `Family` would write (label order, escaping, value
//! format), without its per-series label encoding, hashing and virtual calls; and, in
//! `OpenMetrics`, each counter's `_created` after its `_total`, which `Family` does not write.

use std::fmt::Write as _;
use std::sync::Arc;

use super::series::{ContainerSeries, PodSeries, SeriesIndex};
use crate::record::{Reason, TerminationRecord};

/// Which text exposition a scrape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`: counters' metadata named by their `_total` samples, no
    /// `# UNIT`, no `# EOF`.
    Classic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// A per-pod family: what `Registry::register{,_with_unit}` would have been given.
struct PodFamily {
    /// As in `OpenMetrics`' `# TYPE`, prefix and unit included.
    name: &'static str,
    /// Ends with a full stop, as prometheus-client appends one.
    help: &'static str,
    kind: Kind,
    unit: Option<&'static str>,
    /// Writes one pod's samples.
    samples: fn(&mut FamilyWriter, &str, &PodSeries),
}

const TERMINATIONS: PodFamily = PodFamily {
    name: "coroner_terminations",
    help: "Recorded deaths of container processes, by verdict, initiator and cause.",
    kind: Kind::Counter,
    unit: None,
    samples: terminations,
};
const OOM_KILLS: PodFamily = PodFamily {
    name: "coroner_oom_kills",
    help: "Processes killed by the kernel OOM killer.",
    kind: Kind::Counter,
    unit: None,
    samples: oom_kills,
};
const OOM_VICTIM_RSS: PodFamily = PodFamily {
    name: "coroner_oom_victim_rss_bytes",
    help: "RSS (anon + file + shmem) of the container's last OOM victim at the kill.",
    kind: Kind::Gauge,
    unit: Some("bytes"),
    samples: |w, k, p| gauge(w, k, p, |c| c.oom_victim_rss),
};
const CONTAINER_MEMORY_PEAK: PodFamily = PodFamily {
    name: "coroner_container_memory_peak_bytes",
    help: "Peak memory usage of the container's memory cgroup, at its last recorded death.",
    kind: Kind::Gauge,
    unit: Some("bytes"),
    samples: |w, k, p| gauge(w, k, p, |c| c.memory_peak),
};
const CONTAINER_MEMORY_LIMIT: PodFamily = PodFamily {
    name: "coroner_container_memory_limit_bytes",
    help: "Memory limit of the container's memory cgroup, at its last recorded death.",
    kind: Kind::Gauge,
    unit: Some("bytes"),
    samples: |w, k, p| gauge(w, k, p, |c| c.memory_limit),
};
const EXEC_FAILURES: PodFamily = PodFamily {
    name: "coroner_exec_failures",
    help: "Deaths preceded by a failed execve in the container, by errno.",
    kind: Kind::Counter,
    unit: None,
    samples: exec_failures,
};

/// Appends `value` as a label value: `\`, `"` and newline escaped, as both formats want.
pub(super) fn push_escaped(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(at) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// The record's time in Unix seconds, to the millisecond: what `_created` and the
/// last-termination timestamp say.
pub(super) fn unix_seconds(record: &TerminationRecord) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "seconds with ms precision")]
    let seconds = (record.time.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0;
    seconds
}

/// Appends Unix seconds as the expositions write them, to the millisecond.
pub(super) fn push_seconds(out: &mut String, seconds: f64) {
    let _ = write!(out, "{seconds:.3}");
}

/// Appends `key="value"`, the value escaped.
pub(super) fn push_label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// Writes one family: its metadata before its first sample, none at all when it has none (as
/// the registry leaves out an empty family).
struct FamilyWriter<'a> {
    out: &'a mut String,
    family: &'static PodFamily,
    format: Format,
    started: &'a mut bool,
}

impl FamilyWriter<'_> {
    fn header(&mut self) {
        let PodFamily {
            name,
            help,
            kind,
            unit,
            ..
        } = *self.family;
        // Classic text names a counter by its sample, OpenMetrics by its family.
        let total = if kind == Kind::Counter && self.format == Format::Classic {
            "_total"
        } else {
            ""
        };
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let out = &mut *self.out;
        for (tag, tail) in [("# HELP ", help), ("# TYPE ", kind)] {
            out.extend([tag, name, total, " ", tail, "\n"]);
        }
        if let (Some(unit), Format::OpenMetrics) = (unit, self.format) {
            out.extend(["# UNIT ", name, " ", unit, "\n"]);
        }
    }

    /// Writes one counter's `_total` and, in `OpenMetrics`, its `_created` (the same labels,
    /// written once by `labels`).
    fn counter(&mut self, labels: impl FnOnce(&mut String), count: u64, created: f64) {
        let (name, format) = (self.family.name, self.format);
        let out = self.sample();
        let start = out.len();
        labels(out);
        let end = out.len();
        push_value(out, count);
        if format == Format::OpenMetrics {
            out.extend([name, "_created{"]);
            out.extend_from_within(start..end);
            out.push_str("} ");
            push_seconds(out, created);
            out.push('\n');
        }
    }

    /// Starts a sample: the output after `name{`, for the labels.
    fn sample(&mut self) -> &mut String {
        if !*self.started {
            self.header();
            *self.started = true;
        }
        self.out.push_str(self.family.name);
        if self.family.kind == Kind::Counter {
            self.out.push_str("_total");
        }
        self.out.push('{');
        self.out
    }
}

/// Ends a sample: the label set, its value, the line.
fn push_value(out: &mut String, value: impl itoa::Integer) {
    out.push_str("} ");
    out.push_str(itoa::Buffer::new().format(value));
    out.push('\n');
}

fn terminations(w: &mut FamilyWriter, pod_labels: &str, pod: &PodSeries) {
    for c in &pod.containers {
        for t in &c.terminations {
            let labels = |out: &mut String| {
                out.extend([pod_labels, ",", &c.label, ",", pod.workload(t.workload)]);
                out.extend([",reason=\"", t.reason.as_str(), "\",main_process=\""]);
                out.push_str(if t.main_process { "true\"" } else { "false\"" });
                out.extend([",initiator=\"", t.initiator.as_str(), "\""]);
                out.extend([",cause=\"", t.cause.map_or("", Reason::as_str), "\""]);
            };
            w.counter(labels, t.count, t.created);
        }
    }
}

fn oom_kills(w: &mut FamilyWriter, pod_labels: &str, pod: &PodSeries) {
    for c in &pod.containers {
        for o in &c.oom_kills {
            let labels = |out: &mut String| {
                out.extend([pod_labels, ",", &c.label, ",", pod.workload(o.workload)]);
                out.extend([",scope=\"", o.scope.as_str(), "\""]);
            };
            w.counter(labels, o.count, o.created);
        }
    }
}

fn gauge(
    w: &mut FamilyWriter,
    pod_labels: &str,
    pod: &PodSeries,
    value: fn(&ContainerSeries) -> Option<i64>,
) {
    for c in &pod.containers {
        if let Some(value) = value(c) {
            let out = w.sample();
            out.extend([pod_labels, ",", &c.label]);
            push_value(out, value);
        }
    }
}

fn exec_failures(w: &mut FamilyWriter, pod_labels: &str, pod: &PodSeries) {
    for c in &pod.containers {
        for e in &c.exec_failures {
            let labels = |out: &mut String| {
                out.extend([pod_labels, ",", &c.label, ",errno=\"", &e.errno, "\""]);
            };
            w.counter(labels, e.count, e.created);
        }
    }
}

/// The per-pod families, in the order they are written.
const FAMILIES: [PodFamily; 6] = [
    TERMINATIONS,
    OOM_KILLS,
    OOM_VICTIM_RSS,
    CONTAINER_MEMORY_PEAK,
    CONTAINER_MEMORY_LIMIT,
    EXEC_FAILURES,
];

/// How far a scrape got through the per-pod families. Between pieces the index is unlocked and
/// may change: pods are named by key, one forgotten meanwhile is skipped, one new is left for
/// the next scrape.
#[derive(Debug)]
pub(super) struct PodCursor {
    pods: Vec<Arc<str>>,
    family: usize,
    next_pod: usize,
    /// Whether the current family's metadata is written.
    started: bool,
}

impl PodCursor {
    pub fn done(&self) -> bool {
        self.family >= FAMILIES.len()
    }
}

impl SeriesIndex {
    /// A scrape of the pods that have series now.
    pub fn cursor(&self) -> PodCursor {
        PodCursor {
            pods: self.pods().map(|(key, _)| Arc::clone(key)).collect(),
            family: 0,
            next_pod: 0,
            started: false,
        }
    }

    /// Writes on from `cursor`, pod by pod, until `out` holds `limit` bytes or every per-pod
    /// family is written.
    pub fn encode(&self, cursor: &mut PodCursor, out: &mut String, format: Format, limit: usize) {
        while let Some(family) = FAMILIES.get(cursor.family) {
            while let Some(key) = cursor.pods.get(cursor.next_pod) {
                if out.len() >= limit {
                    return;
                }
                cursor.next_pod += 1;
                let Some(pod) = self.pod_by_key(key) else {
                    continue;
                };
                let mut w = FamilyWriter {
                    out,
                    family,
                    format,
                    started: &mut cursor.started,
                };
                (family.samples)(&mut w, key, pod);
            }
            cursor.family += 1;
            cursor.next_pod = 0;
            cursor.started = false;
        }
    }
}
#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::export::recent::tests::record;

    fn exposition(format: Format) -> String {
        let mut index = SeriesIndex::new(10);
        let mut r = super::super::tests::oom_killed("shop", "cart-1");
        index.observe(&r, Instant::now());
        r.time += time::Duration::seconds(5);
        index.observe(&r, Instant::now());
        index.observe(&record(Some("shop"), Some("we\"ird"), 1), Instant::now());
        let mut out = String::new();
        index.encode(&mut index.cursor(), &mut out, format, usize::MAX);
        out
    }

    #[test]
    fn openmetrics_counters_say_when_their_series_was_born() {
        let text = exposition(Format::OpenMetrics);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let mut counters = 0;
        for (at, line) in lines.iter().enumerate() {
            let Some((family, rest)) = line.split_once("_total{") else {
                continue;
            };
            counters += 1;
            let (labels, _) = rest.rsplit_once(' ').expect("a value");
            // The first death of the series made it, the second did not move it.
            assert_eq!(
                lines.get(at + 1).copied(),
                Some(format!("{family}_created{{{labels} 1700000000.123").as_str()),
                "{text}"
            );
        }
        // Terminations of two pods, one OOM kill and one exec failure.
        assert_eq!(counters, 4, "{text}");
        assert_eq!(text.matches("_created{").count(), 4, "{text}");
        assert!(
            text.contains("pod=\"we\\\"ird\",uid=\"1\",container=\"app\""),
            "{text}"
        );
    }

    #[test]
    fn classic_text_has_no_created_samples() {
        let text = exposition(Format::Classic);
        assert!(text.contains("coroner_terminations_total{"), "{text}");
        assert!(!text.contains("_created"), "{text}");
    }

    #[test]
    fn escaping_covers_backslash_quote_and_newline_only() {
        let mut out = String::new();
        push_label(&mut out, "container", "we\"ird\\name\nx\ty");
        assert_eq!(out, "container=\"we\\\"ird\\\\name\\nx\ty\"");
        out.clear();
        push_escaped(&mut out, "plain-1");
        assert_eq!(out, "plain-1");
    }
}
