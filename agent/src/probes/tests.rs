//! BTF reading against the running kernel, and against a hand-made blob for the corner cases
//! (anonymous members, enums, protos). bpftool's raw dump as an independent oracle is an
//! integration test (`tests/tests/kernel_probes.rs`): plain `cargo test` needs no tool.

use super::btf::{Btf, Kind};
use super::layout;

#[test]
fn the_whole_layout_resolves_on_the_running_kernel() {
    let btf = Btf::from_sys().expect("this kernel has BTF");
    let resolved =
        layout::resolve(&btf, std::path::Path::new("/nonexistent-tracefs")).expect("layout");
    let l = resolved.layout;
    assert_eq!(
        l.task_tgid,
        l.task_pid + 4,
        "pid_t pid; pid_t tgid; are adjacent in every kernel"
    );
    assert_ne!(
        l.flags & agent_ebpf::layout_flags::MEMCG,
        0,
        "this kernel has a memory controller"
    );
    assert_ne!(l.flags & agent_ebpf::layout_flags::MM_RSS, 0);
    assert_ne!(l.flags & agent_ebpf::layout_flags::SIGNAL_LIVE, 0);
    assert_eq!(
        l.flags & agent_ebpf::layout_flags::EXEC_TRACEPOINTS,
        0,
        "no tracefs given: exec degrades"
    );
    assert!(
        resolved.missing.iter().any(|m| m.contains("execve")),
        "the gap is reported: {:?}",
        resolved.missing
    );
    // 5.16+ keeps `core_state` in `signal_struct` and (5.17+) marks a core dump with
    // SIGNAL_GROUP_EXIT: the exiting test is that bit and the pointer.
    if let Ok(core_state) = btf.offset_of("signal_struct", "core_state") {
        assert_eq!(
            (l.signal_core_state, l.signal_exiting_mask),
            (core_state, 0x4)
        );
    } else {
        assert_eq!((l.signal_core_state, l.signal_exiting_mask), (0, 0x4 | 0x8));
    }
    assert_eq!(
        l.signal_flags,
        btf.offset_of("signal_struct", "flags").unwrap()
    );
    // siginfo's first three ints are user ABI: si_code is the third.
    assert_eq!(l.siginfo_code, 8);
    let memcg_id = btf.enum_value("memory_cgrp_id").expect("memory_cgrp_id") as u32;
    assert_eq!(
        l.css_set_memory_css,
        btf.offset_of("css_set", "subsys").unwrap() + 8 * memcg_id
    );
    assert_eq!(
        btf.enum_value("MM_ANONPAGES"),
        Some(i64::from(l.mm_anon_pages_index))
    );
    assert_eq!(
        resolved.oom_victim_arg,
        Some(layout::OomVictimArg::Task),
        "6.18: mark_victim(task, uid)"
    );
    let k_sigaction = btf.find(Kind::Struct, "k_sigaction").unwrap();
    assert_eq!(btf.size_of(k_sigaction), Some(l.sighand_k_sigaction_size));
}

#[test]
fn tracepoint_prototypes_come_from_btf() {
    let btf = Btf::from_sys().expect("this kernel has BTF");
    let exit = btf.tracepoint_params("sched_process_exit").unwrap();
    assert_eq!(btf.pointee_struct(exit[0]), Some("task_struct"));
    let signal = btf.tracepoint_params("signal_generate").unwrap();
    assert_eq!(signal.len(), 5, "sig, info, task, group, result");
    assert_eq!(btf.pointee_struct(signal[2]), Some("task_struct"));
    assert!(btf.tracepoint_params("no_such_tracepoint").is_err());
}

/// A tiny BTF blob: `int`, and `struct s { int a; union { int b; struct { int c; }; }; int d[4]; }`,
/// `enum e { X = 7 }`, written byte by byte as the format defines.
fn handmade() -> Vec<u8> {
    let strings = b"\0int\0s\0a\0b\0c\0d\0e\0X\0";
    let name = |n: &str| {
        strings
            .windows(n.len() + 2)
            .position(|w| w[0] == 0 && &w[1..=n.len()] == n.as_bytes() && w[n.len() + 1] == 0)
            .unwrap() as u32
            + 1
    };
    let mut t = Vec::new();
    let mut push = |words: &[u32]| {
        for w in words {
            t.extend_from_slice(&w.to_le_bytes());
        }
    };
    let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
    push(&[name("int"), info(1, 0), 4, 32]); // [1] int
    push(&[0, info(4, 1), 4, name("c"), 1, 0]); // [2] struct { int c; }
    push(&[0, info(5, 2), 4, name("b"), 1, 0, 0, 2, 0]); // [3] union { int b; struct{c} }
    push(&[0, info(3, 0), 0, 1, 1, 4]); // [4] int[4]
    push(&[
        name("s"),
        info(4, 3),
        24,
        name("a"),
        1,
        0,
        0,
        3,
        32,
        name("d"),
        4,
        64,
    ]); // [5] struct s
    push(&[name("e"), info(6, 1), 4, name("X"), 7]); // [6] enum e
    let mut blob = Vec::new();
    let hdr = [
        0x9feb_u32 | (1 << 16),
        24,
        0,
        t.len() as u32,
        t.len() as u32,
        strings.len() as u32,
    ];
    // magic (2) + version (1) + flags (1) share the first word.
    blob.extend_from_slice(&0xeb9f_u16.to_le_bytes());
    blob.extend_from_slice(&[1, 0]);
    for w in &hdr[1..] {
        blob.extend_from_slice(&w.to_le_bytes());
    }
    blob.extend_from_slice(&t);
    blob.extend_from_slice(strings);
    blob
}

#[test]
fn anonymous_members_arrays_and_enums_in_a_handmade_blob() {
    let btf = Btf::parse(&handmade()).expect("parses");
    assert_eq!(btf.offset_of("s", "a").unwrap(), 0);
    assert_eq!(
        btf.offset_of("s", "b").unwrap(),
        4,
        "through the anonymous union"
    );
    assert_eq!(
        btf.offset_of("s", "c").unwrap(),
        4,
        "through union and anonymous struct"
    );
    assert_eq!(btf.offset_of("s", "d[2]").unwrap(), 8 + 2 * 4);
    assert!(
        btf.offset_of("s", "d[4]").is_err(),
        "index past the array's end"
    );
    assert!(btf.offset_of("s", "zz").is_err());
    assert!(btf.offset_of("nope", "a").is_err());
    assert_eq!(btf.enum_value("X"), Some(7));
    assert_eq!(btf.enum_value("Y"), None);
}

#[test]
fn malformed_blobs_are_errors_not_panics() {
    assert!(Btf::parse(&[]).is_err());
    assert!(Btf::parse(&[0x9f, 0xeb, 1, 0]).is_err());
    let mut blob = handmade();
    blob.truncate(blob.len() - 20);
    assert!(Btf::parse(&blob).is_err(), "sections past the end");
    let mut bad_kind = handmade();
    bad_kind[24 + 7] = 0x1f; // the first type's kind byte
    assert!(Btf::parse(&bad_kind).is_err());
}
