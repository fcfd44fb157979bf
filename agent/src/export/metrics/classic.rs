//! The classic Prometheus text format (`text/plain; version=0.0.4`), for clients that do not
//! ask for `OpenMetrics`: promtool 2.x, older scrapers, `curl | grep` pipelines.
//!
//! prometheus-client writes only `OpenMetrics`. The two differ in three places for the families
//! this agent has: a counter's `# HELP`/`# TYPE` name its family without `_total` (classic
//! names it by its `_total` sample), and `# UNIT` and `# EOF` do not exist in classic text.

use std::collections::HashSet;

#[must_use]
pub fn to_classic_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let counter_header = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let (name, tail) = line.strip_prefix(tag)?.split_once(' ')?;
            counters.contains(name).then_some((tag, name, tail))
        });
        match counter_header {
            Some((tag, name, tail)) => {
                text.push_str(tag);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::to_classic_text;

    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_only_lines_go() {
        let om = "# HELP coroner_terminations Deaths.\n# TYPE coroner_terminations counter\n\
            coroner_terminations_total{reason=\"Error\"} 1\n# HELP coroner_rss_bytes RSS.\n\
            # TYPE coroner_rss_bytes gauge\n# UNIT coroner_rss_bytes bytes\ncoroner_rss_bytes 5\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP coroner_terminations_total Deaths.\n# TYPE coroner_terminations_total counter\n\
            coroner_terminations_total{reason=\"Error\"} 1\n# HELP coroner_rss_bytes RSS.\n\
            # TYPE coroner_rss_bytes gauge\ncoroner_rss_bytes 5\n"
        );
    }
}
