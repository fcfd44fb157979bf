//! The suite's one reader of the agent's `/metrics` (Prometheus text exposition), for tests
//! and benchmark: the value of a series, the sum of a family, the losses of a stage.

use std::collections::BTreeMap;

/// Every sample of `body`: its family, the text between its braces (empty when it has no
/// labels) and its value.
fn samples(body: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (family, labels) = match series.split_once('{') {
                Some((family, rest)) => (family, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            Some((family, labels, value.parse().ok()?))
        })
}

/// The value of the first series of `name` that carries every one of `labels` (the agent's
/// label values hold no commas).
#[must_use]
pub fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(body).find_map(|(family, inner, value)| {
        let has = |(k, v): &(&str, &str)| inner.split(',').any(|p| p == format!("{k}=\"{v}\""));
        (family == name && labels.iter().all(has)).then_some(value)
    })
}

/// Every series of `name`, summed (0 when it has none).
#[must_use]
pub fn sum(body: &str, name: &str) -> f64 {
    samples(body)
        .filter(|&(family, _, _)| family == name)
        .map(|(_, _, value)| value)
        .sum()
}

/// `coroner_events_lost_total{stage}`; panics when the series is missing (every stage has one
/// from the start).
#[must_use]
pub fn lost(body: &str, stage: &str) -> u64 {
    metric(body, "coroner_events_lost_total", &[("stage", stage)])
        .unwrap_or_else(|| panic!("no coroner_events_lost_total{{stage=\"{stage}\"}} in\n{body}"))
        as u64
}

/// What each stage lost: `coroner_events_lost_total` by `stage`.
#[must_use]
pub fn lost_by_stage(body: &str) -> BTreeMap<String, u64> {
    samples(body)
        .filter(|&(family, _, _)| family == "coroner_events_lost_total")
        .filter_map(|(_, labels, value)| {
            let stage = labels.split("stage=\"").nth(1)?.split('"').next()?;
            Some((stage.to_owned(), value as u64))
        })
        .collect()
}

/// A `/metrics` body kept for later questions (the benchmark compares two of them).
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub text: String,
}

impl Exposition {
    /// The sum over every series of `name` (all its series when `labels` is empty).
    #[must_use]
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        samples(&self.text)
            .filter(|&(family, inner, _)| {
                family == name
                    && labels
                        .iter()
                        .all(|(k, v)| inner.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// How many series (sample lines) the exposition has.
    #[must_use]
    pub fn series(&self) -> usize {
        samples(&self.text).count()
    }

    /// Every event dropped anywhere: `coroner_events_lost_total`, all stages.
    #[must_use]
    pub fn lost(&self) -> f64 {
        sum(&self.text, "coroner_events_lost_total")
    }

    /// What each stage lost since `before`; stages that lost nothing are left out.
    #[must_use]
    pub fn lost_since(&self, before: &Exposition) -> Vec<(String, u64)> {
        let before = lost_by_stage(&before.text);
        lost_by_stage(&self.text)
            .into_iter()
            .map(|(stage, n)| (stage.clone(), n - before.get(&stage).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Kernel events user space handled.
    #[must_use]
    pub fn events(&self) -> f64 {
        sum(&self.text, "coroner_events_total")
    }

    /// Records made (every verdict, main processes and children).
    #[must_use]
    pub fn records(&self) -> f64 {
        sum(&self.text, "coroner_terminations_total")
    }
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the expected values are small integers, exact in f64"
)]
mod tests {
    use super::*;

    const BODY: &str = "# HELP coroner_events_lost_total x\n\
        coroner_events_lost_total{stage=\"kernel\"} 2\n\
        coroner_events_lost_total{stage=\"json\"} 1\n\
        coroner_probe_attached{probe=\"execve_exit\",kind=\"tracepoint\"} 0\n\
        coroner_deaths_outside_containers_total 7\n";

    #[test]
    fn series_by_name_and_labels() {
        assert_eq!(lost(BODY, "json"), 1);
        assert_eq!(
            metric(BODY, "coroner_probe_attached", &[("probe", "execve_exit")]),
            Some(0.0)
        );
        assert_eq!(
            metric(BODY, "coroner_probe_attached", &[("probe", "exit")]),
            None
        );
        assert_eq!(sum(BODY, "coroner_events_lost_total"), 3.0);
        assert_eq!(sum(BODY, "coroner_deaths_outside_containers_total"), 7.0);
        assert_eq!(sum(BODY, "coroner_nothing"), 0.0);
        assert_eq!(lost_by_stage(BODY).get("kernel"), Some(&2));
        let e = Exposition { text: BODY.into() };
        assert_eq!(e.lost(), 3.0);
        assert_eq!(
            e.sum("coroner_events_lost_total", &[("stage", "json")]),
            1.0
        );
        assert_eq!(e.series(), 4);
        let mut later = e.clone();
        later.text = later
            .text
            .replace("{stage=\"json\"} 1", "{stage=\"json\"} 4");
        assert_eq!(later.lost_since(&e), [("json".to_owned(), 3)]);
    }
}
