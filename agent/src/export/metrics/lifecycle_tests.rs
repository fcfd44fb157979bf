//! How long per-pod series live: while the pod index has the pod, the retention after, the
//! retention after the last death without an index, and the pod cap; read back from the
//! exposition.
#![expect(
    clippy::float_cmp,
    reason = "the values are small integers, written and read back exactly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::tests::{dying, oom_killed, scrape};
use super::{Metrics, MetricsConfig};

#[test]
fn sweep_forgets_quiet_pods_in_every_family_and_keeps_fresh_ones() {
    let metrics = Metrics::new(MetricsConfig {
        retention: Duration::from_mins(15),
        max_pods: 100,
    });
    let t0 = Instant::now();
    metrics.observe_at(&oom_killed("shop", "old"), t0);
    metrics.observe_at(&oom_killed("shop", "fresh"), t0);
    metrics.observe_at(&dying("shop", "fresh"), t0 + Duration::from_mins(10));

    assert_eq!(metrics.sweep(t0 + Duration::from_mins(14)), 0);
    assert_eq!(metrics.sweep(t0 + Duration::from_mins(16)), 1);
    assert_eq!(metrics.tracked_pods(), 1);

    let e = scrape(&metrics);
    for family in [
        "coroner_terminations_total",
        "coroner_oom_kills_total",
        "coroner_oom_victim_rss_bytes",
        "coroner_container_memory_peak_bytes",
        "coroner_container_memory_limit_bytes",
        "coroner_exec_failures_total",
        "coroner_container_last_termination_info",
        "coroner_container_last_termination_timestamp_seconds",
    ] {
        assert!(
            e.find(family, &[("pod", "old")]).is_empty(),
            "{family} of old"
        );
        assert!(
            !e.find(family, &[("pod", "fresh")]).is_empty(),
            "{family} of fresh"
        );
    }
    assert_eq!(
        e.value("coroner_pod_series_dropped_total", &[("cause", "expired")]),
        1.0
    );
    // Node-wide series are not per pod: they stay.
    assert!(!e.find("coroner_signals_total", &[]).is_empty());

    // The fresh pod goes too once it has been quiet long enough.
    assert_eq!(metrics.sweep(t0 + Duration::from_mins(26)), 1);
    assert!(
        scrape(&metrics)
            .find("coroner_terminations_total", &[])
            .is_empty()
    );
}

#[test]
fn a_pods_series_live_while_the_index_has_it_and_the_retention_after() {
    let metrics = Metrics::new(MetricsConfig {
        retention: Duration::from_mins(15),
        max_pods: 100,
    });
    let gone = Arc::new(AtomicBool::new(false));
    let left = gone.clone();
    metrics.watch_pods(move |uid| Some(uid == "uid-db" && !left.load(Ordering::Relaxed)));
    let t0 = Instant::now();
    let mut db = oom_killed("shop", "db-0");
    db.pod_uid = Some("uid-db".into());
    metrics.observe_at(&db, t0);
    // Another pod, not in the index (deleted before its death was labelled): the retention.
    metrics.observe_at(&oom_killed("shop", "cart-1"), t0);

    let minute = Duration::from_mins(1);
    let mut at = t0;
    for _ in 0..6 * 60 {
        at += minute;
        metrics.sweep(at);
    }
    // Six hours after its only death the pod exists: its series stay, with its uid.
    assert_eq!(metrics.tracked_pods(), 1);
    let e = scrape(&metrics);
    let db_labels = [("pod", "db-0"), ("uid", "uid-db")];
    for family in [
        "coroner_terminations_total",
        "coroner_oom_kills_total",
        "coroner_oom_victim_rss_bytes",
        "coroner_container_memory_peak_bytes",
        "coroner_container_memory_limit_bytes",
        "coroner_exec_failures_total",
    ] {
        assert_eq!(e.find(family, &db_labels).len(), 1, "{family}");
        assert!(e.find(family, &[("pod", "cart-1")]).is_empty(), "{family}");
    }

    gone.store(true, Ordering::Relaxed);
    for _ in 0..14 {
        at += minute;
        assert_eq!(metrics.sweep(at), 0);
    }
    at += 2 * minute;
    assert_eq!(metrics.sweep(at), 1);
    let e = scrape(&metrics);
    assert!(e.find("coroner_terminations_total", &[]).is_empty());
    assert_eq!(
        e.value("coroner_pod_series_dropped_total", &[("cause", "expired")]),
        2.0
    );
}

#[test]
fn the_pod_cap_pushes_out_the_least_recently_seen_pod() {
    let metrics = Metrics::new(MetricsConfig {
        retention: Duration::from_mins(15),
        max_pods: 2,
    });
    let t0 = Instant::now();
    for (i, pod) in ["a", "b", "c", "d"].into_iter().enumerate() {
        metrics.observe_at(&oom_killed("ns", pod), t0 + Duration::from_secs(i as u64));
    }
    assert_eq!(metrics.tracked_pods(), 2);
    let e = scrape(&metrics);
    let pods: Vec<&str> = e
        .find("coroner_terminations_total", &[])
        .iter()
        .map(|s| s.labels["pod"].as_str())
        .collect();
    assert_eq!(pods.len(), 2);
    assert!(pods.contains(&"c") && pods.contains(&"d"), "{pods:?}");
    assert_eq!(e.find("coroner_oom_victim_rss_bytes", &[]).len(), 2);
    assert_eq!(
        e.value("coroner_pod_series_dropped_total", &[("cause", "capacity")]),
        2.0
    );
}
