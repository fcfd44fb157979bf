//! The ring-buffer fuzz target's promises (`crate::fuzzing::ring_buffer`) under generated
//! input: event stories about a few processes in a few cgroups, in and out of order, with
//! duplicates, impossible values, cut and corrupted records, and plain bytes.

use agent_ebpf::{
    CGROUP_PATH_LEN, COMM_LEN, CgroupMkdirEvent, EventHeader, ExecFailureEvent, ExitEvent,
    KernelEvent, MEMCG_CHAIN_LEN, MemcgSample, OOM_STACK_DEPTH, OomEvent, PATH_LEN, SignalEvent,
    kind,
};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::fuzzing::ring_buffer::{check, encode_event, frame};
use crate::fuzzing::testing::run;

/// Values that pick from a handful (so events meet) or anything (so they do not).
fn small_or_any32() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1u32..6, 1 => any::<u32>()]
}

fn small_or_any64() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..24, 1 => any::<u64>()]
}

fn ktime() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1_000_000u64..1_100_000_000, 1 => any::<u64>(), 1 => Just(0)]
}

fn header(kind: u32) -> impl Strategy<Value = EventHeader> {
    (0u32..4, ktime()).prop_map(move |(cpu, ktime_ns)| EventHeader {
        kind,
        cpu,
        ktime_ns,
    })
}

fn comm() -> impl Strategy<Value = [u8; COMM_LEN]> {
    prop_oneof![
        Just(*b"app\0\0\0\0\0\0\0\0\0\0\0\0\0"),
        // Any bytes: not UTF-8, no NUL, all 16 used.
        any::<[u8; COMM_LEN]>(),
    ]
}

fn exit() -> impl Strategy<Value = KernelEvent> {
    (
        header(kind::EXIT),
        (small_or_any32(), small_or_any32(), any::<u32>()),
        prop_oneof![
            (0u32..256).prop_map(|code| code << 8),
            1u32..32,
            Just(0x80 | 0x0b),
            any::<u32>()
        ],
        (
            small_or_any64(),
            small_or_any64(),
            small_or_any64(),
            any::<u64>(),
        ),
        (0u32..4, comm()),
    )
        .prop_map(
            |(
                header,
                (tgid, parent, pid),
                exit_code,
                (memcg, parent_memcg, start, rss),
                (flags, comm),
            )| {
                KernelEvent::Exit(ExitEvent {
                    header,
                    pid,
                    tgid,
                    parent_tgid: parent,
                    exit_code,
                    memcg_id: memcg,
                    parent_memcg_id: parent_memcg,
                    start_boottime_ns: start,
                    maxrss_pages: rss,
                    flags,
                    role: flags & 3,
                    comm,
                })
            },
        )
}

fn signal() -> impl Strategy<Value = KernelEvent> {
    (
        header(kind::SIGNAL),
        (
            prop_oneof![Just(9u32), Just(15), 1u32..65, any::<u32>()],
            prop_oneof![Just(0i32), Just(0x80), -8i32..4, any::<i32>()],
            0u32..5,
        ),
        (small_or_any32(), small_or_any32()),
        (small_or_any64(), small_or_any64(), small_or_any64()),
        (comm(), comm()),
    )
        .prop_map(
            |(
                header,
                (sig, code, result),
                (sender, target),
                (smemcg, tmemcg, start),
                (scomm, tcomm),
            )| {
                KernelEvent::Signal(SignalEvent {
                    header,
                    sig,
                    code,
                    result,
                    group: 1,
                    flags: 0,
                    pad: 0,
                    sender_pid: sender,
                    sender_tgid: sender,
                    target_pid: target,
                    target_tgid: target,
                    sender_memcg_id: smemcg,
                    target_memcg_id: tmemcg,
                    target_start_boottime_ns: start,
                    sender_comm: scomm,
                    target_comm: tcomm,
                })
            },
        )
}

fn oom() -> impl Strategy<Value = KernelEvent> {
    (
        header(kind::OOM),
        (small_or_any32(), small_or_any32()),
        (small_or_any64(), small_or_any64()),
        (any::<u64>(), 0u64..1 << 20, any::<u64>()),
        (any::<i32>(), 0u32..4, 0u32..12, 0u32..400),
        vec(
            (
                small_or_any64(),
                any::<u64>(),
                prop_oneof![0u64..100_000, any::<u64>()],
            ),
            MEMCG_CHAIN_LEN,
        ),
        vec(any::<u64>(), OOM_STACK_DEPTH),
        (comm(), comm()),
    )
        .prop_map(
            |(
                header,
                (victim, trigger),
                (memcg, start),
                (anon, file, shmem),
                (adj, flags, chain_len, stack_bytes),
                chain,
                stack,
                (vcomm, tcomm),
            )| {
                let mut memcg_chain = [MemcgSample::default(); MEMCG_CHAIN_LEN];
                for (slot, (id, usage_pages, max_pages)) in memcg_chain.iter_mut().zip(chain) {
                    *slot = MemcgSample {
                        id,
                        usage_pages,
                        max_pages,
                        oom_events: usage_pages.rotate_left(7) ^ id,
                    };
                }
                let mut frames = [0u64; OOM_STACK_DEPTH];
                frames.copy_from_slice(&stack);
                KernelEvent::Oom(OomEvent {
                    header,
                    victim_pid: victim,
                    victim_tgid: victim,
                    trigger_pid: trigger,
                    trigger_tgid: trigger,
                    victim_memcg_id: memcg,
                    victim_start_boottime_ns: start,
                    anon_rss_pages: anon,
                    file_rss_pages: file,
                    shmem_rss_pages: shmem,
                    oom_score_adj: adj,
                    flags,
                    memcg_chain_len: chain_len,
                    stack_bytes,
                    victim_comm: vcomm,
                    trigger_comm: tcomm,
                    memcg_chain,
                    stack: frames,
                })
            },
        )
}

fn exec_failure() -> impl Strategy<Value = KernelEvent> {
    (
        header(kind::EXEC_FAILURE),
        (small_or_any32(), small_or_any32()),
        (
            prop_oneof![Just(2i32), Just(13), Just(8), any::<i32>()],
            0u32..2,
        ),
        (small_or_any64(), comm()),
        (
            vec(any::<u8>(), 0..=PATH_LEN),
            prop_oneof![
                Just(None),
                Just(Some(PATH_LEN as u32)),
                any::<u32>().prop_map(Some)
            ],
        ),
    )
        .prop_map(
            |(header, (tgid, parent), (errno, flags), (memcg, comm), (bytes, len))| {
                let mut path = [0u8; PATH_LEN];
                path[..bytes.len()].copy_from_slice(&bytes);
                KernelEvent::ExecFailure(ExecFailureEvent {
                    header,
                    pid: tgid,
                    tgid,
                    errno,
                    path_len: len.unwrap_or(bytes.len() as u32),
                    parent_tgid: parent,
                    flags,
                    memcg_id: memcg,
                    comm,
                    path,
                })
            },
        )
}

fn cgroup_mkdir() -> impl Strategy<Value = KernelEvent> {
    (
        header(kind::CGROUP_MKDIR),
        small_or_any64(),
        vec(any::<u8>(), 0..64),
        any::<u32>(),
    )
        .prop_map(|(header, memcg_id, bytes, path_len)| {
            let mut path = [0u8; CGROUP_PATH_LEN];
            path[..bytes.len()].copy_from_slice(&bytes);
            KernelEvent::CgroupMkdir(CgroupMkdirEvent {
                header,
                memcg_id,
                path_len,
                pad: 0,
                path,
            })
        })
}

fn event() -> impl Strategy<Value = KernelEvent> {
    prop_oneof![4 => exit(), 4 => signal(), 2 => oom(), 2 => exec_failure(), 1 => cgroup_mkdir()]
}

/// A ring-buffer record: an event's bytes, or those bytes cut, grown, corrupted, or noise.
fn record() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let bytes = prop_oneof![
        12 => event().prop_map(|e| encode_event(&e)),
        1 => (event(), any::<prop::sample::Index>())
            .prop_map(|(e, cut)| { let b = encode_event(&e); let n = cut.index(b.len()); b[..n].to_vec() }),
        1 => (event(), vec(any::<u8>(), 1..16))
            .prop_map(|(e, tail)| { let mut b = encode_event(&e); b.extend(tail); b }),
        1 => (event(), any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(e, at, byte)| { let mut b = encode_event(&e); let i = at.index(b.len()); b[i] = byte; b }),
        1 => vec(any::<u8>(), 0..64),
    ];
    (bytes, prop_oneof![3 => Just(false), 1 => Just(true)])
}

#[test]
fn event_stories_decode_exactly_and_correlate_within_bounds() {
    run(384, vec(record(), 0..48), |records| {
        let outcome = check(&frame(&records));
        prop_assert_eq!(outcome.decoded + outcome.undecodable, records.len());
        Ok(())
    });
}

#[test]
fn arbitrary_bytes_never_break_the_reader() {
    run(512, vec(any::<u8>(), 0..2048), |bytes| {
        check(&bytes);
        Ok(())
    });
}

/// Not vacuous: a plain story of valid events makes records, and those pass the checks.
#[test]
fn a_valid_story_makes_checked_records() {
    let exit = |tgid: u32, memcg: u64, at: u64, code: u32| {
        KernelEvent::Exit(ExitEvent {
            header: EventHeader {
                kind: kind::EXIT,
                cpu: 0,
                ktime_ns: at,
            },
            pid: tgid,
            tgid,
            parent_tgid: 1,
            exit_code: code,
            memcg_id: memcg,
            parent_memcg_id: 6,
            start_boottime_ns: 5,
            maxrss_pages: 100,
            flags: agent_ebpf::exit_flags::PARENT_OUTSIDE,
            role: agent_ebpf::role::INIT,
            comm: *b"\xff\xfe\xfdapp-\x80\x81\x82\x83\x84\x85\x86\x87\x88",
        })
    };
    let records: Vec<(Vec<u8>, bool)> = [
        exit(10, 1, 1_000_000, 0),
        exit(11, 3, 2_000_000, 1 << 8),
        exit(12, 4, 3_000_000, 9),
        exit(13, 6, 4_000_000, 0),
        exit(14, 0, 5_000_000, 0),
    ]
    .iter()
    .map(|e| (encode_event(e), true))
    .collect();
    let outcome = check(&frame(&records));
    assert_eq!(outcome.decoded, 5);
    // Memcgs 1, 3 and 4 are containers; 6 is a host cgroup, 0 does not resolve.
    assert_eq!(outcome.records.len(), 3, "{:#?}", outcome.records);
    assert!(outcome.records.iter().all(|r| r.comm.contains('\u{fffd}')));
}
