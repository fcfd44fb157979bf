#![expect(
    clippy::float_cmp,
    reason = "created times are read back as they were stored"
)]

use std::time::Duration;

use super::*;
use crate::export::recent::tests::record;

fn death(pod: &str) -> TerminationRecord {
    record(Some("ns"), Some(pod), 1)
}

/// The fixture's pods all have uid "1".
fn pod<'a>(index: &'a SeriesIndex, name: &str) -> Option<&'a PodSeries> {
    index.pod("ns", name, "1")
}

const NO_INDEX: &dyn Fn(&str) -> Option<bool> = &|_| None;
const MIN: Duration = Duration::from_mins(1);

#[test]
fn the_least_recently_touched_pod_makes_room() {
    let t0 = Instant::now();
    let mut index = SeriesIndex::new(2);
    assert_eq!(index.observe(&death("a"), t0), 0);
    assert_eq!(index.observe(&death("b"), t0 + Duration::from_secs(1)), 0);
    // a is touched again: b is now the oldest.
    assert_eq!(index.observe(&death("a"), t0 + Duration::from_secs(2)), 0);
    assert_eq!(index.observe(&death("c"), t0 + Duration::from_secs(3)), 1);
    assert_eq!(index.len(), 2);
    assert!(pod(&index, "a").is_some());
    assert!(pod(&index, "b").is_none());
    assert!(pod(&index, "c").is_some());
}

#[test]
fn without_an_index_the_retention_runs_from_the_last_death() {
    let t0 = Instant::now();
    let mut index = SeriesIndex::new(10);
    index.observe(&death("old"), t0);
    index.observe(&death("fresh"), t0 + 100 * MIN);
    assert_eq!(
        index.expire(NO_INDEX, t0 + 110 * MIN, Some(t0 + 50 * MIN)),
        1
    );
    assert_eq!(index.len(), 1);
    assert!(pod(&index, "fresh").is_some());
    // Nothing is older than a cutoff that does not exist.
    assert_eq!(index.expire(NO_INDEX, t0 + 110 * MIN, None), 0);
}

#[test]
fn a_pod_in_the_index_keeps_its_series_and_keeps_them_the_retention_after_it_goes() {
    let t0 = Instant::now();
    let retention = 15 * MIN;
    let mut index = SeriesIndex::new(10);
    let mut here = death("here");
    here.pod_uid = Some("uid-here".into());
    index.observe(&here, t0);
    let mut gone = death("gone");
    gone.pod_uid = Some("uid-gone".into());
    index.observe(&gone, t0);
    let alive = std::cell::Cell::new(true);
    let present = |uid: &str| Some(uid == "uid-here" || (uid == "uid-gone" && alive.get()));
    let sweep = |index: &mut SeriesIndex, at: Duration| {
        let now = t0 + at;
        index.expire(&present, now, now.checked_sub(retention))
    };

    // Hours without a death: both pods exist, both stay.
    for hour in 1..=3 {
        assert_eq!(sweep(&mut index, hour * 60 * MIN), 0, "hour {hour}");
    }
    // "gone" leaves the index after the sweep at 3 h: it stays the retention after that.
    alive.set(false);
    assert_eq!(sweep(&mut index, 180 * MIN + 14 * MIN), 0);
    assert_eq!(sweep(&mut index, 180 * MIN + 16 * MIN), 1);
    assert!(index.pod("ns", "gone", "uid-gone").is_none());

    // The watch goes down: "here" stays the retention after it was last seen, then goes.
    let down = |_: &str| None;
    let now = t0 + 196 * MIN;
    assert_eq!(index.expire(&down, now, now.checked_sub(retention)), 0);
    let now = t0 + 197 * MIN + retention;
    assert_eq!(index.expire(&down, now, now.checked_sub(retention)), 1);
    assert_eq!(index.len(), 0);
}

#[test]
fn a_pod_without_a_uid_is_not_asked_of_the_index() {
    let t0 = Instant::now();
    let mut index = SeriesIndex::new(10);
    let mut r = record(None, None, 1);
    r.pod_uid = None;
    index.observe(&r, t0);
    let asked = std::cell::Cell::new(0);
    let present = |_: &str| {
        asked.set(asked.get() + 1);
        Some(true)
    };
    assert_eq!(index.expire(&present, t0 + 20 * MIN, Some(t0 + MIN)), 1);
    assert_eq!(asked.get(), 0);
}

#[test]
fn pods_of_one_name_with_two_uids_are_two_pods() {
    let t0 = Instant::now();
    let mut index = SeriesIndex::new(10);
    let mut first = death("db-0");
    first.pod_uid = Some("u-1".into());
    index.observe(&first, t0);
    // The StatefulSet's pod again, a new object.
    let mut second = first.clone();
    second.pod_uid = Some("u-2".into());
    index.observe(&second, t0);
    assert_eq!(index.len(), 2);
    assert!(index.pod("ns", "db-0", "u-1").is_some());
    assert!(index.pod("ns", "db-0", "u-2").is_some());
}

#[test]
fn a_series_is_counted_once_per_distinct_label_set() {
    let t0 = Instant::now();
    let mut index = SeriesIndex::new(10);
    let mut r = death("p");
    index.observe(&r, t0);
    index.observe(&r, t0);
    r.main_process = false;
    index.observe(&r, t0);
    // The workload became known: a new series, as a new label value would make.
    r.owner_kind = Some("Deployment".into());
    index.observe(&r, t0);
    r.container = Some("sidecar".into());
    index.observe(&r, t0);
    let pod = pod(&index, "p").expect("pod p");
    assert_eq!(pod.series(), 4);
    assert_eq!(pod.containers[0].terminations[0].count, 2);
    assert_eq!(pod.workload(pod.containers[1].terminations[0].workload), {
        "workload_kind=\"Deployment\",workload_name=\"\""
    });
}

#[test]
fn a_series_is_created_at_the_death_that_made_it() {
    let t0 = Instant::now();
    let mut index = SeriesIndex::new(10);
    let mut r = death("p");
    r.oom = super::super::tests::oom_killed("ns", "p").oom;
    r.exec_failure = super::super::tests::oom_killed("ns", "p").exec_failure;
    index.observe(&r, t0);
    let later = r.time + time::Duration::seconds(30);
    let mut again = r.clone();
    again.time = later;
    index.observe(&again, t0);
    again.reason = Reason::Crashed;
    index.observe(&again, t0);
    let c = &pod(&index, "p").expect("pod p").containers[0];
    assert_eq!(c.terminations[0].count, 2);
    assert_eq!(c.terminations[0].created, 1_700_000_000.123);
    assert_eq!(c.terminations[1].created, 1_700_000_030.123);
    assert_eq!(c.oom_kills[0].created, 1_700_000_000.123);
    assert_eq!(c.exec_failures[0].created, 1_700_000_000.123);
}
