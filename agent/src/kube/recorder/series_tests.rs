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

/// The earliest due time as the book used to find it: a scan of every held-back series.
fn next_due_by_scan(b: &SeriesBook, now: Instant) -> Option<Instant> {
    b.series
        .iter()
        .filter(|(_, s)| s.unreported > 0)
        .map(|(k, _)| now + b.limiter.wait(&bucket_of(k), now))
        .min()
}

fn assert_close(found: Option<Instant>, expected: Option<Instant>, what: &str) {
    // The heap picks the bucket by its ready instant, the scan by `now + wait`: the same
    // order, up to a nanosecond of floating-point rounding between two nearly equal buckets.
    let close = match (found, expected) {
        (Some(a), Some(b)) => a.max(b) - a.min(b) <= Duration::from_micros(1),
        (a, b) => a == b,
    };
    assert!(
        close,
        "{what}: next_due {found:?}, a scan says {expected:?}"
    );
}

/// 50k containers, each with one death held back for a minute, made in shuffled order: the
/// due time is the earliest of them, and moves on as they go out.
#[test]
fn next_due_among_fifty_thousand_series() {
    const N: u64 = 50_000;
    let t = Instant::now();
    let mut b = SeriesBook::new(
        Rate {
            burst: 1,
            interval: 60 * SEC,
        },
        Rate {
            burst: u32::MAX,
            interval: Duration::from_nanos(1),
        },
        360 * SEC,
        60_000,
        t,
    );
    // Container i first dies at `offset(i)` ms, a permutation of 0..N.
    let offset = |i: u64| (i * 7919) % N;
    for i in 0..N {
        let at = t + Duration::from_millis(offset(i));
        let (key, _) = b.record(death(&format!("c{i}"), "Error"), at);
        let create = b.request_for(&key, at).unwrap();
        b.settle(&create, created(&format!("e{i}")), at);
        b.record(death(&format!("c{i}"), "Error"), at);
        assert_eq!(b.request_for(&key, at), None, "one token a minute");
    }
    let now = t + 50 * SEC;
    assert_close(b.next_due(now), Some(t + 60 * SEC), "first");
    assert_close(b.next_due(now), next_due_by_scan(&b, now), "first");

    // Eleven buckets have refilled (offsets 0..=10 ms): they go, the twelfth is next.
    let now = t + 60 * SEC + Duration::from_micros(10_500);
    let due = b.due(now);
    assert_eq!(due.len(), 11);
    for request in &due {
        assert!(matches!(request, Request::Patch { count: 2, .. }));
        b.settle(request, Outcome::Patched, now);
    }
    assert_close(
        b.next_due(now),
        Some(t + 60 * SEC + Duration::from_millis(11)),
        "after 11",
    );
    assert_close(b.next_due(now), next_due_by_scan(&b, now), "after 11");

    // A new death in an early container is due a minute after its last token, not before.
    let (key, _) = b.record(death("c0", "Error"), now);
    assert_eq!(b.request_for(&key, now), None);
    assert_close(b.next_due(now), next_due_by_scan(&b, now), "c0 again");

    // All out: nothing is due.
    let end = t + 200 * SEC;
    for request in b.due(end) {
        b.settle(&request, Outcome::Patched, end);
    }
    assert_eq!(b.next_due(end), None);
    assert!(
        b.limiter.ready_len() <= 64,
        "the ready heap shrinks with the work waiting"
    );
}

/// Random deaths, requests, outcomes and evictions of series and buckets (a small book):
/// after every step the due time is what a scan of every series says.
#[test]
fn next_due_matches_a_full_scan_through_random_histories() {
    for (seed, burst) in [(1_u64, 1_u32), (2, 2), (3, 0), (4, 3), (5, 1)] {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let t = Instant::now();
        let mut now = t;
        let mut b = SeriesBook::new(
            Rate {
                burst,
                interval: 10 * SEC,
            },
            Rate {
                burst: 4,
                interval: SEC,
            },
            30 * SEC,
            6,
            t,
        );
        let reasons = ["Error", "OOMKilled", "Crashed"];
        for step in 0..20_000 {
            match next(10) {
                0..=3 => {
                    let container = format!("c{}", next(9));
                    let reason = reasons[next(3) as usize];
                    let (key, _) = b.record(death(&container, reason), now);
                    if let Some(request) = b.request_for(&key, now) {
                        settle_at_random(&mut b, &request, next(4), now);
                    }
                }
                4 | 5 => {
                    for request in b.due(now) {
                        settle_at_random(&mut b, &request, next(4), now);
                    }
                }
                _ => now += Duration::from_millis(next(4_000)),
            }
            let what = format!("seed {seed}, burst {burst}, step {step}");
            assert_close(b.next_due(now), next_due_by_scan(&b, now), &what);
        }
    }
}

fn settle_at_random(b: &mut SeriesBook, request: &Request, pick: u64, now: Instant) {
    let outcome = match pick {
        0 => Outcome::Failed,
        1 => Outcome::Gone,
        _ => match request {
            Request::Create { .. } => created("e"),
            Request::Patch { .. } => Outcome::Patched,
        },
    };
    if let (_, Some(retry)) = b.settle(request, outcome, now) {
        b.settle(&retry, created("e"), now);
    }
}

/// Per-call cost of `next_due` with every series held back, against the scan it replaced.
/// `cargo test --release -p coroner --lib kube::recorder::series -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_next_due() {
    for n in [2_048_u64, 50_000] {
        let t = Instant::now();
        let mut b = SeriesBook::new(
            Rate {
                burst: 0,
                interval: 60 * SEC,
            },
            Rate {
                burst: u32::MAX,
                interval: Duration::from_nanos(1),
            },
            360 * SEC,
            n as usize,
            t,
        );
        for i in 0..n {
            let at = t + Duration::from_millis(i);
            let (key, _) = b.record(death(&format!("c{i}"), "Error"), at);
            assert_eq!(b.request_for(&key, at), None);
        }
        let now = t + SEC;
        let calls = 2_000_u32;
        let started = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(next_due_by_scan(&b, now));
        }
        let scan = started.elapsed() / calls;
        // The first call corrects the entries pushed before their buckets existed: the
        // O(log n) that each of the n records left for later.
        let started = Instant::now();
        std::hint::black_box(b.next_due(now));
        let first = started.elapsed();
        let started = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(b.next_due(now));
        }
        let heap = started.elapsed() / calls;
        // What the poster does for each death of a storm: book it, try for a token, ask
        // when to wake.
        let deaths = 20_000_u32;
        let started = Instant::now();
        for i in 0..u64::from(deaths) {
            let at = now + Duration::from_micros(i);
            let (key, _) = b.record(death(&format!("c{}", (i * 7919) % n), "Error"), at);
            assert_eq!(b.request_for(&key, at), None);
            std::hint::black_box(b.next_due(at));
        }
        let per_death = started.elapsed() / deaths;
        println!(
            "next_due with {n} series held back: scan {scan:?}/call, heap {heap:?}/call \
             (first call {first:?}); a held-back death (record, request_for, next_due) \
             {per_death:?}"
        );
    }
}
