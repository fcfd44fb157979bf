//! How the proptests run: deterministic (a fixed seed, so a failure repeats), more cases in
//! release builds (`cargo xtask test`) for about the same time as a debug run, and on a thread
//! with room for the value trees of the large kernel events.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// Release builds are ~8 times faster at this: the suite spends seconds, not minutes.
const RELEASE_FACTOR: u32 = 8;
/// "coroner" in ASCII.
const SEED: u64 = 0x0063_6f72_6f6e_6572;

#[must_use]
pub(crate) fn config(debug_cases: u32) -> Config {
    Config {
        cases: if cfg!(debug_assertions) {
            debug_cases
        } else {
            debug_cases * RELEASE_FACTOR
        },
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `test` on `cases` values of `strategy` on a thread with a 256 MiB stack (the value
/// trees of nested event strategies overflow a test thread's 2 MiB in debug builds); panics
/// with the smallest failing value.
pub(crate) fn run<S>(debug_cases: u32, strategy: S, test: fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy + Send + 'static,
    S::Value: std::fmt::Debug,
{
    let runner = std::thread::Builder::new()
        .name("proptest".into())
        .stack_size(256 << 20)
        .spawn(move || {
            let mut runner = TestRunner::new(config(debug_cases));
            runner.run(&strategy, test).map_err(|e| e.to_string())
        })
        .expect("a test thread");
    match runner.join() {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => panic!("{failure}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A fuzz target's name and its check.
type Target = (&'static str, fn(&[u8]));

/// Every committed seed of the fuzz targets, and every input a fuzzer once crashed on
/// (`fuzz/regressions/<target>/`, minimised), passes the checks.
#[test]
fn fuzz_seeds_and_regressions_pass() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut checked = 0;
    for dir in ["seeds", "regressions"] {
        let targets: [Target; 3] = [
            ("ring_buffer", |b| {
                crate::fuzzing::ring_buffer::check(b);
            }),
            ("cgroup_path", |b| {
                crate::fuzzing::cgroup_path::check(&String::from_utf8_lossy(b));
            }),
            ("pod_object", |b| {
                crate::fuzzing::pod_object::check(b);
            }),
        ];
        for (target, check) in targets {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let bytes = std::fs::read(&path).expect("a seed file");
                let result = std::panic::catch_unwind(|| check(&bytes));
                assert!(result.is_ok(), "{} fails its checks", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "the seeds are in fuzz/seeds/");
}

/// The ring-buffer seeds are stories that make records, not noise.
#[test]
fn ring_buffer_seeds_make_records() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/ring_buffer");
    for name in ["grace_period", "oom", "exec_failure", "mkdir_and_crash"] {
        let bytes = std::fs::read(dir.join(name)).expect("a seed");
        let outcome = crate::fuzzing::ring_buffer::check(&bytes);
        assert_eq!(outcome.undecodable, 0, "{name}");
        assert!(!outcome.records.is_empty(), "{name}: {outcome:?}");
    }
}
