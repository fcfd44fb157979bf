//! The Markdown results file: the summary table, then the measurements behind it.

use std::fmt::Write as _;

use super::report::Report;
use super::rounds::SideBySide;
use super::table::{self, Metric};

pub fn render(r: &Report) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# coroner bench — {}\n", r.date);
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {:.1} GiB, Linux {}. Load average {:.2} at the start, {:.2} at the end \
         (other work on the machine widens every spread). The bench took {:.0} s.\n",
        m.nproc,
        m.cpu_model,
        m.memory_bytes as f64 / f64::from(1u32 << 30),
        m.kernel,
        m.loadavg_start,
        m.loadavg_end,
        r.bench_seconds
    );
    let _ = writeln!(out, "{}", r.table());
    if !r.errors.is_empty() {
        let _ = writeln!(out, "## Phases that failed\n");
        for e in &r.errors {
            let _ = writeln!(out, "- {e}");
        }
        out.push('\n');
    }
    slowdown(r, &mut out);
    programs(r, &mut out);
    footprint(r, &mut out);
    series(r, &mut out);
    out
}

fn slowdown(r: &Report, out: &mut String) {
    let Some(side) = &r.slowdown else { return };
    let _ = writeln!(
        out,
        "## Workload slowdown, side by side\n\nEach storm runs {:.1} s with one helper per CPU inside a kubelet-style \
         container cgroup. {} rounds; in each, every configuration attaches in turn (the order rotated by one \
         place per round, so drift does not land on one) and runs every storm; an agent is started afresh each \
         time. A slowdown is against the same round's run with nothing attached; cells give the median over \
         the rounds and (min..max). BPF statistics are off meanwhile. Spawned program: {}. Floor: \
         `r0 = 0; exit` on each of coroner's hooks (tp_btf sched_process_exit, sched_process_exec, \
         signal_generate, cgroup_mkdir, mark_victim; tracepoint syscalls/sys_{{enter,exit}}_execve{{,at}}). \
         Trio: exitsnoop, sigsnoop and execsnoop of libbpf-tools at once, output to /dev/null.\n",
        side.storm_seconds, side.rounds, r.spawn_program
    );
    let _ = writeln!(
        out,
        "Throughput (operations per second of all helpers; the first column is the rate itself):\n\n{}",
        table::render(side, Metric::Throughput)
    );
    let _ = writeln!(
        out,
        "Coroner's median throughput slowdown minus the other's, in percentage points:\n\n{}",
        table::versus_lines(side)
    );
    let _ = writeln!(
        out,
        "CPU time per operation (the helpers' and their children's user + system time, getrusage: the \
         probes are in it, since they run in the task that hits the tracepoint; the agent's and the \
         tools' user space is not, and other work on the machine does not inflate it):\n\n{}",
        table::render(side, Metric::CpuPerOp)
    );
    if !side.not_measured.is_empty() {
        let _ = writeln!(out, "{}", table::not_measured_lines(side));
    }
    rounds(side, out);
}

/// Every round's rates, in the order the configurations ran.
fn rounds(side: &SideBySide, out: &mut String) {
    let _ = writeln!(
        out,
        "Per round (operations per second; order of the configurations: {}):\n",
        side.orders
            .iter()
            .enumerate()
            .map(|(i, order)| {
                let names: Vec<&str> = order.iter().map(|c| c.label()).collect();
                format!("{}: {}", i + 1, names.join(" → "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    );
    let Some(first) = side.storms.first() else {
        return;
    };
    out.push_str("| storm | round |");
    for c in &first.configs {
        let _ = write!(out, " {} |", c.config.label());
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(first.configs.len()));
    out.push('\n');
    for storm in &side.storms {
        for round in 0..side.rounds {
            let _ = write!(out, "| {} | {} |", storm.storm, round + 1);
            for c in &storm.configs {
                match c.ops_per_s.get(round).copied().flatten() {
                    Some(rate) => {
                        let _ = write!(out, " {rate:.0} |");
                    }
                    None => out.push_str(" — |"),
                }
            }
            out.push('\n');
        }
    }
    out.push('\n');
}

fn programs(r: &Report, out: &mut String) {
    if r.program_cost.is_none() && r.program_floor.is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "## Kernel programs\n\nBPF run-time statistics on (`BPF_ENABLE_STATS`, as `kernel.bpf_stats_enabled=1`, \
         released after), each storm once, this agent's programs only (read from its fdinfo); first \
         the floor's empty programs (`floor_*`, one per hook of coroner's), measured the same way \
         with no agent running:\n"
    );
    let _ = writeln!(
        out,
        "| program | storm | runs | average ns |\n|---|---|---|---|"
    );
    for c in r.program_floor.iter().chain(&r.program_cost).flatten() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.program,
            c.storm,
            c.runs,
            c.avg_ns.map_or("—".into(), |a| format!("{a:.0}"))
        );
    }
    out.push('\n');
}

fn footprint(r: &Report, out: &mut String) {
    let Some(f) = &r.footprint else { return };
    let _ = writeln!(
        out,
        "## Loss, latency, footprint\n\nDeaths are children forked and killed (SIGTERM and SIGKILL in turn) inside the \
         container cgroup, each needing a record; 2 s per step, every step run even after a loss. Records also count each \
         generator's own exit (it is the container's main process). Latency: a thread woken by inotify stamps each \
         new line of `--events-json` with the wall clock and subtracts the record's `time`.\n"
    );
    let _ = writeln!(
        out,
        "| asked/s | reached/s | deaths | records | lost | latency p50 | p99 | max |\n|---|---|---|---|---|---|---|---|"
    );
    for s in &f.ladder {
        let asked = if s.target_rate == 0 {
            "max".to_owned()
        } else {
            s.target_rate.to_string()
        };
        let (p50, p99, max) =
            s.latency_us
                .map_or(("—".into(), "—".into(), "—".into()), |p| {
                    (
                        format!("{:.2} ms", p.p50 / 1e3),
                        format!("{:.2} ms", p.p99 / 1e3),
                        format!("{:.2} ms", p.max / 1e3),
                    )
                });
        let _ = writeln!(
            out,
            "| {asked} | {:.0} | {} | {} | {}{} | {p50} | {p99} | {max} |",
            s.achieved_rate,
            s.deaths,
            s.records,
            s.lost,
            by_stage(&s.lost_by_stage)
        );
    }
    if let Some(c) = &f.churn {
        let _ = writeln!(
            out,
            "\nChurn: {} deaths in {:.0} s ({:.0}/s), {} short-lived containers (a pod cgroup \
             each, created and removed), {} records, {} events, {} lost{}; agent CPU {:.2} s. \
             VmRSS by records made: {}.",
            c.deaths,
            c.seconds,
            c.deaths as f64 / c.seconds,
            c.containers_churned,
            c.records,
            c.events,
            c.lost,
            by_stage(&c.lost_by_stage),
            c.cpu_ns as f64 / 1e9,
            c.rss_by_records
                .iter()
                .map(|(n, kib)| format!("{n}: {:.1} MiB", *kib as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let _ = writeln!(out, "\nChurn: not measured (no time left in the budget).");
    }
    out.push('\n');
}

fn series(r: &Report, out: &mut String) {
    let Some(s) = &r.series else { return };
    let _ = writeln!(
        out,
        "## Many pods, many series\n\n`--kube on` against the API server double; 3 containers per pod, 12 deaths per \
         container (8 of the main process: exit 0/1/126/127, SIGSEGV, SIGUSR2, SIGKILL and SIGTERM from outside; \
         4 of a child: SIGKILL, SIGTERM, SIGSEGV, SIGUSR2), {} deaths staged, {} events lost meanwhile ({}).\n",
        s.deaths_staged,
        s.lost,
        if s.lost_by_stage.is_empty() {
            "no stage".to_owned()
        } else {
            s.lost_by_stage
                .iter()
                .map(|(stage, n)| format!("{stage}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(
        out,
        "| series | pods | records | body | wall median | agent CPU/scrape | VmRSS | VmHWM |\n|---|---|---|---|---|---|---|---|"
    );
    for p in &s.points {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB |",
            p.series,
            p.pods,
            p.records,
            p.body_bytes as f64 / f64::from(1u32 << 20),
            p.wall_ms.map_or(f64::NAN, |w| w.median),
            p.agent_cpu_ms,
            p.agent.rss_kib as f64 / 1024.0,
            p.agent.hwm_kib as f64 / 1024.0
        );
    }
    out.push('\n');
}

/// ` (stage: n, …)` after a loss count; empty when nothing was lost.
fn by_stage(lost: &[(String, u64)]) -> String {
    if lost.is_empty() {
        return String::new();
    }
    let stages: Vec<String> = lost.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    format!(" ({})", stages.join(", "))
}
