//! One scrape, written a piece at a time, so `/metrics` at 100k series never holds its whole
//! body (15 MB) in memory: the allocator would keep that much resident after every scrape.
//! The per-pod families come first, pod by pod, the pod index locked for one piece at a time
//! and never while the client reads; then the registry's families, which are small.

use prometheus_client::encoding::text::encode_registry;

use super::last::LastCursor;
use super::text::{Format, PodCursor};
use super::{Metrics, classic, lock};

/// Bytes of a piece past which no more pods are started; a pod adds a few KiB at most.
const PIECE: usize = 56 * 1024;

/// What [`Metrics::scrape`] returns: the exposition as an iterator of pieces.
#[derive(Debug)]
pub struct Scrape {
    metrics: Metrics,
    format: Format,
    pods: PodCursor,
    last: LastCursor,
    registry_written: bool,
}

impl Scrape {
    pub(super) fn new(metrics: &Metrics, format: Format) -> Self {
        let pods = lock(&metrics.inner.series).cursor();
        let last = lock(&metrics.inner.last).cursor();
        Self {
            metrics: metrics.clone(),
            format,
            pods,
            last,
            registry_written: false,
        }
    }

    /// Appends the next part of the exposition, up to about `limit` bytes in `out`; false
    /// once everything is written.
    pub(super) fn write_next(&mut self, out: &mut String, limit: usize) -> bool {
        let inner = &self.metrics.inner;
        if !self.pods.done() {
            let before = out.len();
            lock(&inner.series).encode(&mut self.pods, out, self.format, limit);
            // The registry gets a piece of its own after the last pods: a piece stays within
            // the pods' bound whatever the registry grows to.
            if !self.pods.done() || out.len() > before {
                return true;
            }
        }
        if !self.last.done() {
            lock(&inner.last).encode(&mut self.last, out, self.format, limit);
            if !self.last.done() {
                return true;
            }
        }
        if self.registry_written {
            return false;
        }
        self.registry_written = true;
        // prometheus-client writes OpenMetrics only; the classic conversion of a few dozen
        // lines costs nothing.
        let written = match self.format {
            Format::OpenMetrics => encode_registry(out, &inner.registry).map(|()| {
                out.push_str("# EOF\n");
            }),
            Format::Classic => {
                let mut openmetrics = String::with_capacity(8 * 1024);
                encode_registry(&mut openmetrics, &inner.registry).map(|()| {
                    out.push_str(&classic::to_classic_text(&openmetrics));
                })
            }
        };
        if let Err(e) = written {
            // Writing into a String cannot fail; a metric's own encoder could. Say so rather
            // than serve half an exposition silently.
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        true
    }
}

/// Pieces of about 56 KiB, for a streamed response body.
impl Iterator for Scrape {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut piece = String::with_capacity(PIECE + 8 * 1024);
        self.write_next(&mut piece, PIECE);
        (!piece.is_empty()).then_some(piece)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::MetricsConfig;
    use super::super::exposition::parse;
    use super::super::tests::oom_killed;
    use super::*;

    fn metrics_with_pods(pods: usize) -> Metrics {
        let metrics = Metrics::new(MetricsConfig {
            retention: Duration::from_mins(15),
            max_pods: pods,
        });
        for i in 0..pods {
            metrics.observe(&oom_killed("shop", &format!("cart-{i}")));
        }
        metrics
    }

    #[test]
    fn the_pieces_make_the_whole_exposition() {
        let metrics = metrics_with_pods(1000);
        for format in [Format::OpenMetrics, Format::Classic] {
            let whole = metrics.encode_as(format);
            let pieces: Vec<String> = metrics.scrape(format).collect();
            assert!(pieces.len() > 2, "{} bytes in one piece", whole.len());
            assert!(pieces.iter().all(|p| p.len() < PIECE + 8 * 1024));
            assert!(pieces.iter().all(|p| p.ends_with('\n')));
            assert_eq!(pieces.concat(), whole);
        }
    }

    #[test]
    fn a_pod_forgotten_between_pieces_is_left_out_and_the_rest_stays_whole() {
        let metrics = metrics_with_pods(1000);
        let mut scrape = metrics.scrape(Format::OpenMetrics);
        let first = scrape.next().expect("a first piece");
        // Every pod goes quiet for longer than the retention; one new pod arrives.
        metrics.sweep(Instant::now() + Duration::from_mins(16));
        metrics.observe(&oom_killed("shop", "late"));
        let text = first + &scrape.collect::<String>();
        let e = parse(&text);
        let terminations = e.find("coroner_terminations_total", &[]).len();
        assert!(terminations > 0 && terminations < 1000, "{terminations}");
        // The families after the first piece had no pods left: not even their metadata.
        assert!(!e.types.contains_key("coroner_exec_failures"));
        assert!(
            e.find("coroner_terminations_total", &[("pod", "late")])
                .is_empty()
        );
        assert_eq!(
            e.types.get("coroner_events").map(String::as_str),
            Some("counter")
        );
    }
}
