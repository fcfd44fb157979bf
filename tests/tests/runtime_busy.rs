//! A busy node on the real runtime (containerd with runc and with crun, the kubelet double, the
//! real agent): pods created and torn down one after another, their containers started,
//! exec-probed every second, some exiting by themselves, some stopped (one honouring the stop,
//! one ignoring it), exec sessions killed by a signal, for `CORONER_BUSY_SECS` seconds per
//! runtime (the suite's default is short; the figures in the notes come from longer runs).
//! Every record must be right and nothing lost: one `init` record per container start with the
//! verdict of what the container did, none for the runtime's helpers or for exec probes, a
//! `sandbox` record per pod, and no event lost at any stage. Needs root and the runtime.

#[path = "runtime_records/support.rs"]
#[allow(
    dead_code,
    reason = "the real-runtime tests' shared module; this binary uses part of it"
)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coroner_tests::agent::Record;
use coroner_tests::exposition::{lost_by_stage, metric};
use coroner_tests::runtime::Handler;
use support::{EXIT_WAIT, Node, RECORD_WAIT, sh};

coroner_tests::with_both_runtimes!(busy_node_every_record_right_nothing_lost);

/// What a container of the busy run does, and the verdict its init's record must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Exits by itself with this code after a while.
    Exits(u8),
    /// Handles the stop signal and exits 0.
    HonoursStop,
    /// PID 1 without a handler: the runtime's SIGTERM is dropped, SIGKILL after the grace.
    IgnoresStop,
}

impl Kind {
    fn script(self) -> String {
        match self {
            Kind::Exits(code) => format!("sleep 2; exit {code}"),
            Kind::HonoursStop => "trap 'exit 0' TERM; while sleep 0.2; do :; done".into(),
            Kind::IgnoresStop => "exec sleep 3600".into(),
        }
    }

    fn verdict(self) -> &'static str {
        match self {
            Kind::Exits(0) | Kind::HonoursStop => "Completed",
            Kind::Exits(_) => "Error",
            Kind::IgnoresStop => "GracePeriodExpired",
        }
    }
}

#[derive(Debug, Default)]
struct Figures {
    pods: u32,
    starts: u32,
    probes: u32,
    failing_probes: u32,
    exec_sessions_killed: u32,
    stops: u32,
}

/// The sum of a family's series by one label, read from `/metrics`.
fn by_label(body: &str, family: &str, label: &str, values: &[&str]) -> BTreeMap<String, f64> {
    values
        .iter()
        .map(|v| {
            let value = metric(body, family, &[(label, v)]).unwrap_or(0.0);
            ((*v).to_owned(), value)
        })
        .collect()
}

/// Pods, containers, probes, exec sessions and stops until `run_for` has passed since `started`.
fn drive(
    node: &mut Node,
    started: Instant,
    run_for: Duration,
) -> (Figures, Vec<(String, Kind)>, Vec<String>) {
    let mut figures = Figures::default();
    let mut expected: Vec<(String, Kind)> = Vec::new();
    let mut sandboxes = Vec::new();
    while started.elapsed() < run_for {
        let pod = node.pod(false);
        figures.pods += 1;
        let code = u8::try_from(figures.pods % 3).expect("small");
        let mut running = Vec::new();
        for kind in [Kind::Exits(code), Kind::HonoursStop, Kind::IgnoresStop] {
            let name = format!("c{}", running.len());
            let (id, _) = node.run(&pod, &sh(&name, &kind.script()));
            figures.starts += 1;
            running.push((id, kind));
        }
        // Exec probes every second while the containers live: passing, failing, and an exec
        // session that a signal ends (what `kubectl exec` leaves when the user's shell dies).
        for second in 0..4 {
            let tick = Instant::now();
            for (id, _) in &running {
                let Ok(status) = node.kubelet.container_status(id) else {
                    continue;
                };
                if status.exited() {
                    continue;
                }
                let probe: &[&str] = if second % 2 == 0 {
                    &["/bin/true"]
                } else {
                    &["/bin/sh", "-c", "exit 3"]
                };
                if let Ok(answer) = node.kubelet.exec_sync(id, probe, 5) {
                    figures.probes += 1;
                    figures.failing_probes += u32::from(answer.exit_code != 0);
                }
            }
            if second == 1
                && let Some((id, _)) = running.iter().find(|(_, k)| *k == Kind::IgnoresStop)
                && node
                    .kubelet
                    .exec_sync(id, &["/bin/sh", "-c", "kill -KILL $$"], 5)
                    .is_ok()
            {
                figures.exec_sessions_killed += 1;
            }
            std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
        }
        for (id, kind) in &running {
            match kind {
                Kind::Exits(_) => {}
                Kind::HonoursStop => {
                    node.kubelet.stop_container(id, 10).unwrap();
                    figures.stops += 1;
                }
                Kind::IgnoresStop => {
                    node.kubelet.stop_container(id, 1).unwrap();
                    figures.stops += 1;
                }
            }
            node.kubelet.wait_exited(id, EXIT_WAIT).unwrap();
        }
        node.kubelet.stop_pod(&pod).unwrap();
        sandboxes.push(pod.sandbox_id.clone());
        node.kubelet.remove_pod(&pod).unwrap();
        expected.extend(running);
    }
    (figures, expected, sandboxes)
}

/// What is wrong in `records` for what the run did, and how many exec sessions' records came.
fn check(
    records: &[Record],
    expected: &[(String, Kind)],
    sandboxes: &[String],
    figures: &Figures,
) -> (Vec<String>, u32) {
    let mut exec_pids_seen = 0;
    let mut wrong = Vec::new();
    for (id, kind) in expected {
        let of: Vec<_> = records
            .iter()
            .filter(|r| r.record.container_id.as_deref() == Some(id.as_str()))
            .collect();
        let inits: Vec<_> = of.iter().filter(|r| r.field("role") == "init").collect();
        if inits.len() != 1 {
            wrong.push(format!("{kind:?} {id}: {} init records", inits.len()));
            continue;
        }
        let init = inits[0];
        if init.reason() != kind.verdict() {
            wrong.push(format!(
                "{kind:?} {id}: {} instead of {}: {}",
                init.reason(),
                kind.verdict(),
                init.json
            ));
        }
        if let Kind::Exits(code) = kind
            && init.record.exit_code != Some(*code)
        {
            wrong.push(format!(
                "{kind:?} {id}: exit code {:?}",
                init.record.exit_code
            ));
        }
        for other in of.iter().filter(|r| r.field("role") != "init") {
            let role = other.field("role").as_str().unwrap_or_default();
            // Only an exec session a signal ended may have a record of its own.
            if role == "exec" && other.record.signal == Some(9) && *kind == Kind::IgnoresStop {
                exec_pids_seen += 1;
            } else {
                wrong.push(format!("{kind:?} {id}: a {role} record: {}", other.json));
            }
        }
    }
    for sandbox in sandboxes {
        let of: Vec<_> = records
            .iter()
            .filter(|r| r.record.container_id.as_deref() == Some(sandbox.as_str()))
            .collect();
        if of.len() != 1 || of[0].field("role") != "sandbox" {
            wrong.push(format!(
                "sandbox {sandbox}: {:?}",
                of.iter().map(|r| &r.json).collect::<Vec<_>>()
            ));
        }
    }
    let runtime_records = records
        .iter()
        .filter(|r| r.field("role") == "runtime")
        .count();
    if runtime_records > 0 {
        wrong.push(format!(
            "{runtime_records} records of the runtime's helpers"
        ));
    }
    if exec_pids_seen != figures.exec_sessions_killed {
        wrong.push(format!(
            "{} exec sessions killed, {exec_pids_seen} exec records",
            figures.exec_sessions_killed
        ));
    }

    (wrong, exec_pids_seen)
}

fn busy_node_every_record_right_nothing_lost(handler: Handler) {
    let run_for = Duration::from_secs(
        std::env::var("CORONER_BUSY_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let Some(mut node) = Node::start("busy_node", handler) else {
        return;
    };
    let metrics_before = node.agent.get("/metrics").unwrap().body;
    let started = Instant::now();
    let (figures, expected, sandboxes) = drive(&mut node, started, run_for);
    let busy = started.elapsed();

    // The last pod's records, then everything.
    let last = sandboxes.last().cloned().expect("at least one pod");
    node.agent
        .wait_for("the last sandbox", RECORD_WAIT, |r| {
            r.record.container_id.as_deref() == Some(last.as_str())
        })
        .unwrap();
    let records = node.records_of_all();
    let (mut wrong, exec_pids_seen) = check(&records, &expected, &sandboxes, &figures);
    let metrics = node.agent.get("/metrics").unwrap().body;
    let lost_before = lost_by_stage(&metrics_before);
    let grown: Vec<_> = lost_by_stage(&metrics)
        .into_iter()
        .filter(|(stage, n)| *n > lost_before.get(stage).copied().unwrap_or(0))
        .collect();
    if !grown.is_empty() {
        wrong.push(format!("events lost, by stage: {grown:?}"));
    }
    let roles = ["init", "exec", "child", "runtime", "sandbox"];
    let unrecorded = by_label(
        &metrics,
        "coroner_exits_without_record_total",
        "role",
        &roles,
    );
    eprintln!(
        "{handler:?}: busy for {busy:.0?}: {figures:?}; {} records of these pods; exits counted \
         without a record, by role (whole machine): {unrecorded:?}; lost: {grown:?}",
        expected.len() + sandboxes.len() + exec_pids_seen as usize,
    );
    assert!(wrong.is_empty(), "{handler:?}: {wrong:#?}");
}
