use time::macros::datetime;

use super::*;
use crate::kube::recorder::crashloop_line::{LoopSample, short_duration};

const SEC: Duration = Duration::from_secs(1);

fn options() -> LoopOptions {
    LoopOptions {
        window: 600 * SEC,
        min_deaths: 3,
        interval: 60 * SEC,
        max_containers: 4,
    }
}

fn key(container: &str) -> ContainerKey {
    ("uid-1".to_owned(), container.to_owned())
}

/// A death `secs` after the first, as the record dates it.
fn sample(verdict: Reason, secs: i64) -> LoopSample {
    LoopSample {
        verdict,
        detail: format!("container \"api\": {} died", verdict.as_str()),
        time: datetime!(2026-12-03 12:00:00 UTC) + time::Duration::seconds(secs),
        uptime_seconds: None,
    }
}

/// Books an init death of `api` at `t0 + secs` (the record dated the same).
fn die(book: &mut LoopBook, t0: Instant, secs: u32, verdict: Reason) -> Fold {
    let at = t0 + secs * SEC;
    book.death(
        &key("api"),
        &ObjectReference::default(),
        Some(sample(verdict, i64::from(secs))),
        at,
    )
}

#[test]
fn the_third_death_within_the_window_starts_the_loop() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    assert_eq!(die(&mut book, t0, 0, Reason::OomKilled), Fold::PerDeath);
    assert_eq!(die(&mut book, t0, 20, Reason::OomKilled), Fold::PerDeath);
    assert!(book.due(t0 + 20 * SEC).is_empty());
    assert_eq!(die(&mut book, t0, 50, Reason::OomKilled), Fold::Folded);
    assert!(book.is_looping(&key("api")));
    let writes = book.due(t0 + 50 * SEC);
    assert_eq!(writes.len(), 1);
    let w = &writes[0];
    assert_eq!(w.target, None, "the first write creates the Event");
    assert_eq!(w.count, 3);
    assert_eq!(
        w.message,
        "OOMKilled 3× in 50s: container \"api\": OOMKilled died"
    );
    assert_eq!((w.last - w.first).whole_seconds(), 50);
}

#[test]
fn deaths_further_apart_than_the_window_are_no_loop() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    for secs in [0, 400, 800, 1200, 1600] {
        assert_eq!(
            die(&mut book, t0, secs, Reason::Error),
            Fold::PerDeath,
            "{secs}"
        );
    }
    assert!(!book.is_looping(&key("api")));
}

#[test]
fn a_looping_container_gets_at_most_one_write_per_interval() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    for secs in [0, 10, 20] {
        die(&mut book, t0, secs, Reason::Error);
    }
    let mut writes_at = Vec::new();
    // A death every 5 s for 10 minutes; the poster asks for due writes after each.
    for secs in (25..625u32).step_by(5) {
        die(&mut book, t0, secs, Reason::Error);
        let now = t0 + secs * SEC;
        for w in book.due(now) {
            let outcome = match w.target {
                None => LoopOutcome::Created {
                    namespace: "ns".into(),
                    name: "ev".into(),
                },
                Some(_) => LoopOutcome::Updated,
            };
            book.settle(&w, outcome, now);
            writes_at.push(secs);
        }
    }
    assert_eq!(writes_at.first(), Some(&25));
    assert!(
        writes_at.windows(2).all(|p| p[1] - p[0] >= 60),
        "{writes_at:?}"
    );
    assert_eq!(writes_at.len(), 10, "{writes_at:?}");
    // Nothing more to tell until the next interval; then the last deaths.
    assert_eq!(book.next_due(), Some(t0 + 625 * SEC));
    let last = book.due(t0 + 625 * SEC);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].count, 3 + 120);
    assert_eq!(last[0].target, Some(("ns".into(), "ev".into())));
}

#[test]
fn the_first_loop_write_waits_an_interval_after_a_per_death_event() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    die(&mut book, t0, 0, Reason::Error);
    book.wrote(&key("api"), t0);
    die(&mut book, t0, 10, Reason::Error);
    book.wrote(&key("api"), t0 + 10 * SEC);
    assert_eq!(die(&mut book, t0, 20, Reason::Error), Fold::Folded);
    assert!(book.due(t0 + 20 * SEC).is_empty());
    assert_eq!(book.next_due(), Some(t0 + 70 * SEC));
    assert_eq!(book.due(t0 + 70 * SEC).len(), 1);
}

#[test]
fn an_expired_event_is_created_again_an_interval_later_with_the_whole_count() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    for secs in [0, 10, 20] {
        die(&mut book, t0, secs, Reason::Error);
    }
    let w = book.due(t0 + 20 * SEC).remove(0);
    let created = LoopOutcome::Created {
        namespace: "ns".into(),
        name: "ev".into(),
    };
    book.settle(&w, created, t0 + 20 * SEC);
    die(&mut book, t0, 30, Reason::Error);
    let w = book.due(t0 + 80 * SEC).remove(0);
    assert!(w.target.is_some());
    book.settle(&w, LoopOutcome::Gone, t0 + 80 * SEC);
    assert!(book.due(t0 + 81 * SEC).is_empty());
    let again = book.due(t0 + 140 * SEC);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].target.clone(), again[0].count), (None, 4));
    // A failed write is tried again, also an interval later.
    book.settle(&again[0], LoopOutcome::Failed, t0 + 140 * SEC);
    assert!(book.due(t0 + 150 * SEC).is_empty());
    assert_eq!(book.due(t0 + 200 * SEC).len(), 1);
}

#[test]
fn a_childs_death_is_folded_only_while_the_container_loops() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    let child =
        |book: &mut LoopBook, at| book.death(&key("api"), &ObjectReference::default(), None, at);
    assert_eq!(child(&mut book, t0), Fold::PerDeath);
    for secs in [0, 10, 20] {
        die(&mut book, t0, secs, Reason::Error);
    }
    assert_eq!(child(&mut book, t0 + 25 * SEC), Fold::Folded);
    // Another container of the pod is not in the loop.
    let other = book.death(&key("sidecar"), &ObjectReference::default(), None, t0);
    assert_eq!(other, Fold::PerDeath);
}

#[test]
fn a_loop_ends_after_a_quiet_window_and_a_new_one_counts_afresh() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    for secs in [0, 10, 20] {
        die(&mut book, t0, secs, Reason::Error);
    }
    let w = book.due(t0 + 20 * SEC).remove(0);
    book.settle(&w, LoopOutcome::Updated, t0 + 20 * SEC);
    assert_eq!(die(&mut book, t0, 620, Reason::Error), Fold::PerDeath);
    assert!(!book.is_looping(&key("api")));
    assert_eq!(die(&mut book, t0, 630, Reason::Error), Fold::PerDeath);
    assert_eq!(die(&mut book, t0, 640, Reason::Error), Fold::Folded);
    let w = book.due(t0 + 700 * SEC).remove(0);
    assert_eq!((w.target, w.count), (None, 3));
}

#[test]
fn the_line_names_the_latest_verdict_and_the_mix() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    die(&mut book, t0, 0, Reason::Error);
    die(&mut book, t0, 30, Reason::OomKilled);
    die(&mut book, t0, 200, Reason::OomKilled);
    let w = book.due(t0 + 200 * SEC).remove(0);
    assert_eq!(
        w.message,
        "OOMKilled 2× of 3 deaths in 3m: container \"api\": OOMKilled died"
    );
}

#[test]
fn the_median_uptime_is_told_only_when_every_deaths_is_known() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    for (secs, up) in [(0, 40.0), (50, 41.0), (100, 90.0)] {
        let mut s = sample(Reason::Error, secs);
        s.uptime_seconds = Some(up);
        book.death(
            &key("api"),
            &ObjectReference::default(),
            Some(s),
            t0 + u32::try_from(secs).unwrap_or(0) * SEC,
        );
    }
    let w = book.due(t0 + 100 * SEC).remove(0);
    assert!(w.message.ends_with(", median uptime 41s"), "{}", w.message);
    book.settle(&w, LoopOutcome::Updated, t0 + 100 * SEC);
    // One death whose start the kernel did not give: no median from here on.
    die(&mut book, t0, 150, Reason::Error);
    let w = book.due(t0 + 160 * SEC).remove(0);
    assert!(!w.message.contains("uptime"), "{}", w.message);
}

#[test]
fn the_containers_followed_are_bounded() {
    let t0 = Instant::now();
    let mut book = LoopBook::new(options());
    for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        let at = t0 + u32::try_from(i).unwrap_or(0) * SEC;
        book.death(
            &key(name),
            &ObjectReference::default(),
            Some(sample(Reason::Error, 0)),
            at,
        );
    }
    assert_eq!(book.len(), 4);
    assert!(
        !book.containers.contains_key(&key("a")),
        "the quietest went"
    );
}

#[test]
fn durations_read_short() {
    assert_eq!(short_duration(41 * SEC), "41s");
    assert_eq!(short_duration(600 * SEC), "10m");
    assert_eq!(short_duration(3900 * SEC), "65m");
    assert_eq!(short_duration(7200 * SEC), "2h");
    assert_eq!(short_duration(7500 * SEC), "2h5m");
}
