use super::*;

const SEC: Duration = Duration::from_secs(1);

fn death(container: &str, reason: &'static str) -> Death {
    Death {
        regarding: ObjectReference::default(),
        pod_uid: "u1".into(),
        container: container.into(),
        reason,
        warning: true,
        note: format!("{reason} in {container}"),
    }
}

fn book(now: Instant) -> SeriesBook {
    SeriesBook::new(
        Rate {
            burst: 2,
            interval: 10 * SEC,
        },
        Rate {
            burst: 100,
            interval: SEC,
        },
        360 * SEC,
        3,
        now,
    )
}

fn created(name: &str) -> Outcome {
    Outcome::Created {
        namespace: "ns".into(),
        name: name.into(),
    }
}

#[test]
fn a_crash_loop_is_one_event_whose_count_catches_up() {
    let t = Instant::now();
    let mut b = book(t);
    let (key, _) = b.record(death("api", "Error"), t);
    let first = b.request_for(&key, t).unwrap();
    assert!(
        matches!(&first, Request::Create { count: 1, latest, .. } if latest.note == "Error in api")
    );
    assert_eq!(b.settle(&first, created("e1"), t), (0, None));

    b.record(death("api", "Error"), t);
    let second = b.request_for(&key, t).unwrap();
    assert!(matches!(&second, Request::Patch { count: 2, name, .. } if name == "e1"));
    b.settle(&second, Outcome::Patched, t);

    // The bucket (burst 2) is empty: the next three deaths are held back.
    for _ in 0..3 {
        b.record(death("api", "Error"), t);
        assert_eq!(b.request_for(&key, t), None);
    }
    assert_eq!(b.next_due(t), Some(t + 10 * SEC));
    assert!(b.due(t + 9 * SEC).is_empty());
    let caught_up = b.due(t + 10 * SEC);
    assert!(matches!(
        caught_up.as_slice(),
        [Request::Patch { count: 5, .. }]
    ));
    b.settle(&caught_up[0], Outcome::Patched, t + 10 * SEC);
    assert_eq!(b.next_due(t + 10 * SEC), None);
}

#[test]
fn held_back_deaths_fold_into_the_first_create() {
    let t = Instant::now();
    let mut b = book(t);
    let (api, _) = b.record(death("api", "Error"), t);
    let (api2, _) = b.record(death("api", "OOMKilled"), t);
    let r1 = b.request_for(&api, t).unwrap();
    let r2 = b.request_for(&api2, t).unwrap();
    b.settle(&r1, created("e1"), t);
    b.settle(&r2, created("e2"), t);
    let (crash, _) = b.record(death("api", "Crashed"), t);
    b.record(death("api", "Crashed"), t + SEC);
    assert_eq!(
        b.request_for(&crash, t + SEC),
        None,
        "the container's bucket is shared"
    );
    let due = b.due(t + 10 * SEC);
    assert!(matches!(due.as_slice(), [Request::Create { count: 2, .. }]));
}

#[test]
fn a_series_ends_after_the_window_and_an_expired_event_is_recreated() {
    let t = Instant::now();
    let mut b = book(t);
    let (key, _) = b.record(death("api", "Error"), t);
    let r = b.request_for(&key, t).unwrap();
    b.settle(&r, created("e1"), t);
    b.record(death("api", "Error"), t + 400 * SEC);
    let r = b.request_for(&key, t + 400 * SEC).unwrap();
    assert!(matches!(r, Request::Create { count: 1, .. }), "{r:?}");
    b.settle(&r, created("e2"), t + 400 * SEC);

    b.record(death("api", "Error"), t + 401 * SEC);
    let r = b.request_for(&key, t + 420 * SEC).unwrap();
    assert!(matches!(r, Request::Patch { count: 2, .. }));
    let (lost, retry) = b.settle(&r, Outcome::Gone, t + 420 * SEC);
    assert_eq!(lost, 0);
    assert!(matches!(retry, Some(Request::Create { count: 1, .. })));
}

#[test]
fn failures_and_evictions_count_what_is_lost() {
    let t = Instant::now();
    let mut b = book(t);
    let (key, _) = b.record(death("a", "Error"), t);
    let r = b.request_for(&key, t).unwrap();
    assert_eq!(b.settle(&r, Outcome::Failed, t), (1, None));
    assert_eq!(b.next_due(t), None);

    // Three series fill the book; a fourth evicts the idlest, with its held-back deaths.
    let mut limited = SeriesBook::new(
        Rate {
            burst: 0,
            interval: 10 * SEC,
        },
        Rate {
            burst: 100,
            interval: SEC,
        },
        360 * SEC,
        3,
        t,
    );
    limited.record(death("a", "Error"), t);
    limited.record(death("a", "Error"), t);
    limited.record(death("b", "Error"), t + SEC);
    limited.record(death("c", "Error"), t + 2 * SEC);
    let (_, lost) = limited.record(death("d", "Error"), t + 3 * SEC);
    assert_eq!(lost, 2);
    assert_eq!(limited.len(), 3);
}
