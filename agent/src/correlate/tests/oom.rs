//! OOM kills: scope, limit, sender attribution, victims without exits, children.

use agent_ebpf::{KernelEvent, MemcgSample, oom_flags};

use super::fixtures::*;
use crate::correlate::decide_scope;
use crate::correlate::verdict::sig::*;
use crate::record::{OomScope, Reason, SenderKind};

const SI_KERNEL: i32 = 0x80;
const MAIN: Proc = proc(4242, 7 * SEC, CTR_A);
const CHILD: Proc = proc(4300, 8 * SEC, CTR_A);
const AT: u64 = 100 * SEC;

/// The container at its 64 MiB limit, under an unlimited pod and `QoS` cgroup.
fn container_at_limit() -> Vec<(u64, u64, u64)> {
    vec![
        (CTR_A, LIMIT_64M - 3, LIMIT_64M),
        (POD, LIMIT_64M, UNLIMITED),
        (QOS, 9 * LIMIT_64M, UNLIMITED),
    ]
}

/// The OOM killer's own SIGKILL: generated with `SI_KERNEL` in the allocating task's context.
fn oom_sigkill(victim: Proc, current: u32) -> KernelEvent {
    sent(AT - 10, SIGKILL, SI_KERNEL, (current, victim.memcg), victim)
}

#[test]
fn memcg_oom_of_the_main_process_by_chain() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, MAIN, 4310, &container_at_limit())),
            // Its `current` is another task: the sender must come from the OOM event regardless.
            oom_sigkill(MAIN, 4311),
            killed(MAIN, AT + 500_000, SIGKILL, true),
        ],
    ));
    assert_eq!(r.reason, Reason::OomKilled);
    assert_eq!((r.signal, r.exit_code, r.exit_status), (Some(9), None, 137));
    let s = r.sender.expect("sender");
    assert_eq!(
        (s.pid, s.comm.as_str(), s.cgroup.as_str(), s.kind),
        (4310, "allocator", "", SenderKind::Kernel)
    );
    let o = r.oom.expect("oom");
    assert_eq!(o.scope, OomScope::Memcg);
    assert_eq!(o.memory_limit_bytes, Some(64 << 20));
    assert_eq!(o.limit_cgroup, Some(path_a()));
    assert_eq!(
        (o.anon_rss_bytes, o.file_rss_bytes, o.shmem_rss_bytes),
        (Some(15_000 * PAGE), Some(300 * PAGE), Some(20 * PAGE))
    );
    assert_eq!(o.victim_rss_bytes, Some(15_320 * PAGE));
    assert_eq!(
        (o.trigger_pid, o.trigger_comm.as_str(), o.oom_score_adj),
        (4310, "allocator", 984)
    );
    assert_eq!(
        r.sigkill_time, None,
        "the OOM killer's SIGKILL is the kernel's"
    );
    assert_eq!(r.time.unix_timestamp_nanos(), wall(AT + 500_000));
    assert_eq!(
        cg.stacks,
        vec![vec![0xffff_ffff_8100_0001, 0xffff_ffff_8100_0002]]
    );
}

/// The pod's limit hit while its container was within the usage margin of its own: usage
/// alone would name the container; the memcgs' own OOM counters name the pod, and the next
/// kill, at the container's limit, the container.
#[test]
fn the_oom_counters_name_the_pod_when_its_container_is_near_its_own_limit() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    cg.created_while_watched = vec![CTR_A, POD];
    let chain = |container_ooms, pod_ooms| {
        vec![
            (CTR_A, LIMIT_64M - 3, LIMIT_64M, container_ooms),
            (POD, 2 * LIMIT_64M, 2 * LIMIT_64M, pod_ooms),
            (QOS, 9 * LIMIT_64M, UNLIMITED, 5),
        ]
    };
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom_counted(AT, MAIN, 4310, &chain(0, 1))),
            oom_sigkill(MAIN, 4310),
            killed(MAIN, AT + 500_000, SIGKILL, true),
        ],
    ));
    let o = r.oom.expect("oom");
    assert_eq!(
        (o.scope, o.limit_cgroup.as_deref(), o.memory_limit_bytes),
        (
            OomScope::Memcg,
            Some(pod_path().as_str()),
            Some(2 * (64 << 20))
        )
    );
    assert!(cg.stacks.is_empty(), "counted: the stack is not needed");

    let later = AT + 60 * SEC;
    let child = proc(4400, later - SEC, CTR_A);
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom_counted(later, child, 4400, &chain(1, 1))),
            sent(later - 10, SIGKILL, SI_KERNEL, (4400, CTR_A), child),
            killed(child, later + 500_000, SIGKILL, false),
        ],
    ));
    let o = r.oom.expect("oom");
    assert_eq!(
        (o.scope, o.limit_cgroup.as_deref()),
        (OomScope::Memcg, Some(path_a().as_str()))
    );
}

/// No counter of the whole chain grew (all known): the node ran out of memory, however close
/// a container was to its limit.
#[test]
fn no_oom_counter_grown_is_a_node_wide_oom() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    cg.created_while_watched = vec![CTR_A, POD];
    let chain = [
        (CTR_A, LIMIT_64M - 3, LIMIT_64M, 0),
        (POD, LIMIT_64M, UNLIMITED, 0),
        (QOS, 9 * LIMIT_64M, UNLIMITED, 0),
        (1, 90 * LIMIT_64M, UNLIMITED, 0),
    ];
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom_counted(AT, MAIN, 4310, &chain)),
            oom_sigkill(MAIN, 4310),
            killed(MAIN, AT + 500_000, SIGKILL, true),
        ],
    ));
    let o = r.oom.expect("oom");
    assert_eq!((o.scope, o.limit_cgroup), (OomScope::Global, None));
}

#[test]
fn a_pod_level_limit_is_named_when_the_container_has_none() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let chain = [
        (CTR_A, 100, UNLIMITED),
        (POD, 2 * LIMIT_64M - 10, 2 * LIMIT_64M),
        (QOS, 3 * LIMIT_64M, UNLIMITED),
    ];
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, MAIN, 4242, &chain)),
            killed(MAIN, AT + 9, SIGKILL, true),
        ],
    ));
    let o = r.oom.expect("oom");
    assert_eq!(
        (o.scope, o.limit_cgroup, o.memory_limit_bytes),
        (OomScope::Memcg, Some(pod_path()), Some(128 << 20))
    );
}

#[test]
fn no_memcg_at_its_limit_means_a_global_oom() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let chain = [
        (CTR_A, LIMIT_64M / 2, LIMIT_64M),
        (POD, LIMIT_64M / 2, UNLIMITED),
    ];
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, MAIN, 4242, &chain)),
            killed(MAIN, AT + 9, SIGKILL, true),
        ],
    ));
    assert_eq!(r.reason, Reason::OomKilled);
    let o = r.oom.expect("oom");
    assert_eq!(
        (o.scope, o.limit_cgroup, o.memory_limit_bytes),
        (OomScope::Global, None, None)
    );
}

#[test]
fn a_scope_from_the_stack_overrides_the_chain() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    cg.scope = Some(OomScope::Global);
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, MAIN, 4242, &container_at_limit())),
            killed(MAIN, AT + 9, SIGKILL, true),
        ],
    ));
    assert_eq!(
        r.oom.map(|o| (o.scope, o.memory_limit_bytes)),
        Some((OomScope::Global, None))
    );

    // Memcg by the stack, though usage drifted well away since: the lowest limited memcg.
    let mut c = correlator();
    cg.scope = Some(OomScope::Memcg);
    let chain = [(CTR_A, 10, UNLIMITED), (POD, LIMIT_64M / 2, LIMIT_64M)];
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, MAIN, 4242, &chain)),
            killed(MAIN, AT + 9, SIGKILL, true),
        ],
    ));
    let o = r.oom.expect("oom");
    assert_eq!(
        (o.scope, o.limit_cgroup),
        (OomScope::Memcg, Some(pod_path()))
    );
}

#[test]
fn without_a_stack_the_lookup_is_not_asked() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    cg.scope = Some(OomScope::Global);
    let mut event = oom(AT, MAIN, 4242, &container_at_limit());
    event.flags &= !oom_flags::STACK;
    event.flags &= !oom_flags::RSS_FROM_MM;
    let r = only(run(
        &mut c,
        &mut cg,
        &[KernelEvent::Oom(event), killed(MAIN, AT + 9, SIGKILL, true)],
    ));
    let o = r.oom.expect("oom");
    assert_eq!(o.scope, OomScope::Memcg, "the chain decides");
    assert_eq!(
        (
            o.victim_rss_bytes,
            o.anon_rss_bytes,
            o.file_rss_bytes,
            o.shmem_rss_bytes
        ),
        (None, None, None, None),
        "an RSS the kernel did not give is unknown, never the peak or 0"
    );
    assert!(r.peak_rss_bytes > 0, "the peak stays where it belongs");
    assert!(cg.stacks.is_empty());
}

#[test]
fn the_margin_is_one_percent_or_256_kib() {
    let sample = |usage, max| MemcgSample {
        id: 1,
        usage_pages: usage,
        max_pages: max,
        oom_events: MemcgSample::OOM_EVENTS_UNKNOWN,
    };
    // Small limit (1 MiB = 256 pages): 256 KiB = 64 pages of margin.
    assert_eq!(
        decide_scope(None, &[sample(192, 256)], PAGE).0,
        OomScope::Memcg
    );
    assert_eq!(
        decide_scope(None, &[sample(191, 256)], PAGE).0,
        OomScope::Global
    );
    // Large limit (40 GiB = 10_485_760 pages): 1% = 104_857 pages.
    let max = 10_485_760;
    assert_eq!(
        decide_scope(None, &[sample(max - 104_857, max)], PAGE).0,
        OomScope::Memcg
    );
    assert_eq!(
        decide_scope(None, &[sample(max - 104_858, max)], PAGE).0,
        OomScope::Global
    );
    // Over the limit counts; unlimited never does, however full.
    assert_eq!(
        decide_scope(None, &[sample(300, 256)], PAGE).0,
        OomScope::Memcg
    );
    assert_eq!(
        decide_scope(None, &[sample(UNLIMITED, UNLIMITED)], PAGE).0,
        OomScope::Global
    );
    // The lowest at its limit wins.
    let (_, hit) = decide_scope(
        None,
        &[
            sample(10, 1000),
            MemcgSample {
                id: 2,
                usage_pages: 999,
                max_pages: 1000,
                oom_events: MemcgSample::OOM_EVENTS_UNKNOWN,
            },
            MemcgSample {
                id: 3,
                usage_pages: 5000,
                max_pages: 5000,
                oom_events: MemcgSample::OOM_EVENTS_UNKNOWN,
            },
        ],
        PAGE,
    );
    assert_eq!(hit.map(|s| s.id), Some(2));
}

#[test]
fn oom_of_a_child_while_the_main_process_lives() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, CHILD, 4300, &container_at_limit())),
            oom_sigkill(CHILD, 4300),
            killed(CHILD, AT + 1000, SIGKILL, false),
        ],
    ));
    assert_eq!(
        (r.pid, r.main_process, r.reason),
        (4300, false, Reason::OomKilled)
    );
    // The main process goes on, then exits 1: its own record, no OOM in it.
    let r = only(run(
        &mut c,
        &mut cg,
        &[exited(MAIN, AT + 60 * SEC, 1, true)],
    ));
    assert_eq!(
        (r.pid, r.main_process, r.reason, r.oom),
        (4242, true, Reason::Error, None)
    );
}

#[test]
fn a_victim_that_was_already_exiting_keeps_its_own_verdict() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, CHILD, 4300, &container_at_limit())),
            exited(CHILD, AT + 1000, 3, false),
        ],
    ));
    assert_eq!((r.reason, r.exit_code), (Reason::Error, Some(3)));
    assert!(
        r.oom.is_some(),
        "a child's plain exit is recorded because it was an OOM victim"
    );
}

#[test]
fn an_oom_victim_whose_exit_never_comes_makes_no_record() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    c.ingest(
        &KernelEvent::Oom(oom(AT, CHILD, 4300, &container_at_limit())),
        &mut cg,
    );
    assert!(c.drain_ready(AT + 29 * SEC, &mut cg).is_empty());
    assert!(
        c.drain_ready(AT + 30 * SEC, &mut cg).is_empty(),
        "no record is made up for a kill whose exit never came"
    );
    let stats = c.stats();
    assert_eq!((stats.records, stats.oom_kills_without_exit), (0, 1));
    // The exit, if it comes after all, is the process's real death, without the kill.
    let r = only(run(
        &mut c,
        &mut cg,
        &[killed(CHILD, AT + 31 * SEC, SIGKILL, false)],
    ));
    assert_eq!((r.pid, r.reason, r.oom), (4300, Reason::Killed, None));
}

#[test]
fn an_oom_victim_with_no_start_time_or_cgroup_is_matched_by_tgid() {
    // Old kernels: mark_victim(int pid) gives the pid only.
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let mut event = oom(AT, CHILD, 4300, &container_at_limit());
    event.victim_start_boottime_ns = 0;
    event.victim_memcg_id = 0;
    let r = only(run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(event),
            killed(CHILD, AT + 9, SIGKILL, false),
        ],
    ));
    assert_eq!((r.reason, r.cgroup), (Reason::OomKilled, path_a()));

    // Without its exit: counted, not recorded.
    c.ingest(&KernelEvent::Oom(event), &mut cg);
    assert!(c.drain_ready(AT + 60 * SEC, &mut cg).is_empty());
    assert_eq!(c.stats().oom_kills_without_exit, 1);
}

#[test]
fn oom_kills_outside_containers_are_counted_not_recorded() {
    let mut c = correlator();
    let mut cg = FakeCgroups::new();
    let host = proc(77, SEC, HOST);
    let records = run(
        &mut c,
        &mut cg,
        &[
            KernelEvent::Oom(oom(AT, host, 77, &[])),
            killed(host, AT + 9, SIGKILL, false),
        ],
    );
    assert!(records.is_empty());
    let stats = c.stats();
    assert_eq!(
        (
            stats.oom_kills_not_recorded,
            stats.deaths_outside_containers
        ),
        (1, 1)
    );
}
