//! Ring-buffer bytes → [`KernelEvent::decode`] → [`Correlator`]: whatever the bytes, decoding
//! is exact or a clear error, the correlator's tables stay under their caps, and every record
//! it makes is a well-formed contract record of a container.
//!
//! Input format (so that one input holds many records): a sequence of `[len: u16 LE][len
//! bytes]`; a length past the end takes what is left. After each record, bit 0 of its length
//! says whether to drain the correlator at the newest kernel time seen so far.

use std::time::Duration;

use agent_ebpf::{
    CgroupMkdirEvent, ExecFailureEvent, ExitEvent, KernelEvent, OomEvent, SignalEvent, kind,
};

use crate::cgroup::{CgroupInfo, parse_container};
use crate::correlate::{
    BootClock, CAUSE_WINDOW_NS, Caps, CgroupLookup, Correlator, CorrelatorConfig, MemoryReading,
};
use crate::record::{OomScope, Reason, Role, TerminationRecord};

/// Small caps, so that a short input already fills every table and takes the eviction paths.
pub const CAPS: Caps = Caps {
    signal_histories: 4,
    pending_exits: 4,
    oom_victims: 3,
    exec_failure_memcgs: 3,
    finished: 8,
    cause_memcgs: 2,
};
const PAGE: u64 = 4096;
/// Wall clock = kernel time + this (2025-06-15).
const OFFSET_NS: i128 = 1_750_000_000_000_000_000;

/// The fields every record carries (docs/record.md), null or not.
pub use crate::record::FIELDS as CONTRACT_FIELDS;

/// The ABI types: `#[repr(C)]`, integers and byte arrays only, no padding (agent-ebpf checks
/// their sizes field by field at compile time), so their bytes are fully initialised.
pub trait Abi: Copy {
    const KIND: u32;
}
impl Abi for ExitEvent {
    const KIND: u32 = kind::EXIT;
}
impl Abi for SignalEvent {
    const KIND: u32 = kind::SIGNAL;
}
impl Abi for OomEvent {
    const KIND: u32 = kind::OOM;
}
impl Abi for ExecFailureEvent {
    const KIND: u32 = kind::EXEC_FAILURE;
}
impl Abi for CgroupMkdirEvent {
    const KIND: u32 = kind::CGROUP_MKDIR;
}

/// The bytes the kernel puts in the ring buffer for `event`.
#[must_use]
pub fn encode<T: Abi>(event: &T) -> Vec<u8> {
    // SAFETY: `T` is one of the ABI types (sealed by `Abi`'s impls above): no padding, every
    // byte initialised; the slice lives no longer than the borrow of `event`.
    let bytes = unsafe {
        std::slice::from_raw_parts(std::ptr::from_ref(event).cast::<u8>(), size_of::<T>())
    };
    bytes.to_vec()
}

/// [`encode`] of whichever event this is.
#[must_use]
pub fn encode_event(event: &KernelEvent) -> Vec<u8> {
    match event {
        KernelEvent::Exit(e) => encode(e),
        KernelEvent::Signal(e) => encode(e),
        KernelEvent::Oom(e) => encode(e),
        KernelEvent::ExecFailure(e) => encode(e),
        KernelEvent::CgroupMkdir(e) => encode(e),
    }
}

/// Frames ring-buffer records as [`check`] reads them; `drain` sets the drain bit.
pub fn frame(records: &[(Vec<u8>, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (bytes, drain) in records {
        // Lengths are at most 16 bits; the drain bit is the lowest, so a record is padded
        // by one byte (ignored by decode: only its prefix is read) when they disagree.
        let mut len = bytes.len().min(usize::from(u16::MAX) - 1);
        if (len & 1 == 1) != *drain {
            len += 1;
        }
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&bytes[..len.min(bytes.len())]);
        out.extend(std::iter::repeat_n(0, len.saturating_sub(bytes.len())));
    }
    out
}

fn records(mut data: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    std::iter::from_fn(move || {
        let (head, rest) = data.split_at_checked(2)?;
        let len = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let (record, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some((record, len & 1 == 1))
    })
}

/// The size of an event of kind `k`, if `k` is a kind.
#[must_use]
pub fn size_of_kind(k: u32) -> Option<usize> {
    Some(match k {
        kind::EXIT => size_of::<ExitEvent>(),
        kind::SIGNAL => size_of::<SignalEvent>(),
        kind::OOM => size_of::<OomEvent>(),
        kind::EXEC_FAILURE => size_of::<ExecFailureEvent>(),
        kind::CGROUP_MKDIR => size_of::<CgroupMkdirEvent>(),
        _ => return None,
    })
}

fn header_kind(event: &KernelEvent) -> u32 {
    match event {
        KernelEvent::Exit(e) => e.header.kind,
        KernelEvent::Signal(e) => e.header.kind,
        KernelEvent::Oom(e) => e.header.kind,
        KernelEvent::ExecFailure(e) => e.header.kind,
        KernelEvent::CgroupMkdir(e) => e.header.kind,
    }
}

#[must_use]
pub fn ktime(event: &KernelEvent) -> u64 {
    match event {
        KernelEvent::Exit(e) => e.header.ktime_ns,
        KernelEvent::Signal(e) => e.header.ktime_ns,
        KernelEvent::Oom(e) => e.header.ktime_ns,
        KernelEvent::ExecFailure(e) => e.header.ktime_ns,
        KernelEvent::CgroupMkdir(e) => e.header.ktime_ns,
    }
}

/// Decoding is exact: an event is the first `size_of` bytes, read as they are; anything
/// else is the error that says why.
pub fn check_decode(bytes: &[u8]) -> Option<KernelEvent> {
    let decoded = KernelEvent::decode(bytes);
    let first = bytes
        .get(..4)
        .map(|h| u32::from_ne_bytes([h[0], h[1], h[2], h[3]]));
    match decoded {
        Ok(event) => {
            let k = header_kind(&event);
            assert_eq!(Some(k), first, "the kind is the first field");
            let size = size_of_kind(k).expect("decoded only known kinds");
            assert!(
                bytes.len() >= size,
                "decoded {} of {size} bytes",
                bytes.len()
            );
            assert_eq!(
                encode_event(&event),
                bytes[..size],
                "decode is a plain copy"
            );
            assert!(
                KernelEvent::decode(&bytes[..size - 1]).is_err(),
                "one byte short must not decode"
            );
            Some(event)
        }
        Err(agent_ebpf::DecodeError::TooShort { kind: k, len }) => {
            assert_eq!(len, bytes.len());
            match first {
                None => assert_eq!(k, 0),
                Some(first) => {
                    assert_eq!(k, first);
                    let size = size_of_kind(k).expect("too short for a known kind");
                    assert!(bytes.len() < size);
                }
            }
            None
        }
        Err(agent_ebpf::DecodeError::UnknownKind(k)) => {
            assert_eq!(Some(k), first);
            assert_eq!(size_of_kind(k), None, "kind {k} is known");
            None
        }
    }
}

/// Paths of the memory cgroups [`FuzzCgroups`] makes of memcg ids: kubelet layouts.
pub const POD_UID: &str = "0a1b2c3d-0000-4000-8000-000000000001";

/// A cgroup lookup that is a pure function of the memcg id: `id % 8` picks unresolvable,
/// containers of three layouts, a pod cgroup or a host one.
#[derive(Debug, Default)]
pub struct FuzzCgroups;

impl FuzzCgroups {
    #[must_use]
    pub fn path_of(memcg_id: u64) -> Option<String> {
        let id = format!("{:064x}", u128::from(memcg_id) * 0x9e37_79b9_7f4a_7c15);
        let uid_ = POD_UID.replace('-', "_");
        Some(match memcg_id % 8 {
            0 => return None,
            1 | 2 => format!("/kubepods/burstable/pod{POD_UID}/{id}"),
            3 => format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{id}.scope"
            ),
            4 => format!("/kubepods/pod{POD_UID}/crio-{id}/sub"),
            5 => format!("/kubepods/burstable/pod{POD_UID}"),
            6 => "/system.slice/containerd.service".to_owned(),
            _ => format!("/kubepods/burstable/podNOTAUUID/{id}"),
        })
    }
}

impl CgroupLookup for FuzzCgroups {
    fn info(&mut self, memcg_id: u64) -> Option<CgroupInfo> {
        let path = Self::path_of(memcg_id)?;
        Some(CgroupInfo {
            container: parse_container(&path),
            path,
        })
    }

    fn memory(&mut self, path: &str) -> MemoryReading {
        let n = path.len() as u64;
        MemoryReading {
            peak_bytes: (!n.is_multiple_of(3)).then_some(n << 20),
            limit_bytes: n.is_multiple_of(2).then_some(n << 21),
        }
    }

    fn oom_scope(&mut self, stack: &[u64]) -> Option<OomScope> {
        match stack.first().map(|f| f % 3) {
            Some(1) => Some(OomScope::Memcg),
            Some(2) => Some(OomScope::Global),
            _ => None,
        }
    }
}

/// A correlator with [`CAPS`] and a fixed clock.
#[must_use]
pub fn correlator() -> Correlator {
    let mut config = CorrelatorConfig::new("node-fuzz", PAGE, BootClock::from_offset_ns(OFFSET_NS));
    config.caps = CAPS;
    config.hold = Duration::from_millis(1);
    config.oom_exit_wait = Duration::from_millis(50);
    Correlator::new(config).expect("a valid config")
}

fn assert_within_caps(c: &Correlator) {
    let s = c.sizes();
    let within = s.signal_histories <= CAPS.signal_histories
        && s.pending_exits <= CAPS.pending_exits
        && s.oom_victims <= CAPS.oom_victims
        && s.exec_failure_memcgs <= CAPS.exec_failure_memcgs
        && s.finished <= CAPS.finished
        && s.cause_memcgs <= CAPS.cause_memcgs;
    assert!(within, "{s:?} over {CAPS:?}");
}

/// What [`check`] saw, for tests that want more than "nothing broke".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub decoded: usize,
    pub undecodable: usize,
    /// Exit and OOM events: every record comes from one of them.
    pub deaths: usize,
    pub records: Vec<TerminationRecord>,
}

/// Decodes every framed record, feeds what decodes to a correlator, drains where asked and
/// flushes at the end; panics if any promise breaks.
pub fn check(data: &[u8]) -> Outcome {
    let mut c = correlator();
    let mut cgroups = FuzzCgroups;
    let mut out = Outcome::default();
    let mut now = 0u64;
    for (bytes, drain) in records(data) {
        let Some(event) = check_decode(bytes) else {
            out.undecodable += 1;
            continue;
        };
        out.decoded += 1;
        if matches!(event, KernelEvent::Exit(_) | KernelEvent::Oom(_)) {
            out.deaths += 1;
        }
        now = now.max(ktime(&event));
        c.ingest(&event, &mut cgroups);
        assert_within_caps(&c);
        if drain {
            out.records.extend(c.drain_ready(now, &mut cgroups));
            assert_within_caps(&c);
        }
    }
    out.records.extend(c.flush(&mut cgroups));
    let sizes = c.sizes();
    assert_eq!(
        (sizes.pending_exits, sizes.oom_victims),
        (0, 0),
        "flush leaves nothing waiting"
    );
    assert!(
        out.records.len() <= out.deaths,
        "{} records from {} deaths",
        out.records.len(),
        out.deaths
    );
    let stats = c.stats();
    assert_eq!(stats.records, out.records.len() as u64, "{stats:?}");
    for record in &out.records {
        check_record(record);
    }
    out
}

/// One record: a container's, self-consistent, and valid JSON with every contract field.
pub fn check_record(r: &TerminationRecord) {
    let container =
        parse_container(&r.cgroup).unwrap_or_else(|| panic!("a record outside containers: {r:?}"));
    assert_eq!(r.pod_uid.as_deref(), Some(container.pod_uid.as_str()));
    assert_eq!(
        r.container_id.as_deref(),
        Some(container.container_id.as_str())
    );
    assert!(!r.comm.contains('\0') && r.comm.len() <= 3 * agent_ebpf::COMM_LEN);
    let status = match (r.exit_code, r.signal) {
        (Some(code), None) => u16::from(code),
        (None, Some(signal)) => 128 + u16::from(signal),
        other => panic!("exit_code and signal {other:?}"),
    };
    assert_eq!(r.exit_status, status);
    assert!(!r.core_dumped || r.signal.is_some());
    let exited = matches!(
        r.reason,
        Reason::Completed | Reason::Error | Reason::CommandNotFound | Reason::NotExecutable
    );
    assert_eq!(exited, r.exit_code.is_some(), "{:?} for {r:?}", r.reason);
    match r.exit_code {
        Some(0) => assert_eq!(r.reason, Reason::Completed),
        Some(126) => assert_eq!(r.reason, Reason::NotExecutable),
        Some(127) => assert_eq!(r.reason, Reason::CommandNotFound),
        _ => {}
    }
    assert_eq!(
        r.reason == Reason::OomKilled,
        r.signal == Some(9) && r.oom.is_some()
    );
    if let Some(grace) = r.grace_seconds {
        assert!(grace.is_finite() && grace >= 0.0);
        assert!(r.sigterm_time.is_some() && r.sigkill_time.is_some());
    }
    if let Some(oom) = &r.oom {
        // The parts add up, or all of them are unknown together.
        let parts = [oom.anon_rss_bytes, oom.file_rss_bytes, oom.shmem_rss_bytes];
        let sum = parts
            .iter()
            .try_fold(0u64, |sum, part| part.map(|p| sum.saturating_add(p)));
        assert!(
            oom.victim_rss_bytes == sum && (sum.is_some() || parts.iter().all(Option::is_none)),
            "{oom:?}"
        );
        assert!(oom.scope == OomScope::Memcg || oom.memory_limit_bytes.is_none());
    }
    if let Some(cause) = &r.cause {
        assert!(
            r.role == Role::Init && r.exit_status != 0 && r.oom.is_none(),
            "{r:?}"
        );
        let window = Duration::from_nanos(CAUSE_WINDOW_NS).as_secs_f64();
        assert!((0.0..=window).contains(&cause.seconds_before), "{cause:?}");
        assert!(cause.signal.is_some() || cause.oom.is_some(), "{cause:?}");
    }
    let text = serde_json::to_string(r).expect("a record serialises");
    assert!(!text.contains('\n'), "one record, one line");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let object = json.as_object().expect("an object");
    for field in CONTRACT_FIELDS {
        assert!(object.contains_key(field), "`{field}` missing: {text}");
    }
    let mut back: TerminationRecord = serde_json::from_str(&text).expect("reads back");
    // Floats go through decimal text: equal to a few ulps, not bit for bit.
    for (ours, theirs) in [
        (r.grace_seconds, &mut back.grace_seconds),
        (r.uptime_seconds, &mut back.uptime_seconds),
    ] {
        assert_eq!(ours.is_some(), theirs.is_some());
        if let (Some(a), Some(b)) = (ours, *theirs) {
            assert!((a - b).abs() <= a.abs() * 1e-12);
        }
        *theirs = ours;
    }
    if let (Some(a), Some(b)) = (&r.cause, &mut back.cause) {
        assert!((a.seconds_before - b.seconds_before).abs() <= a.seconds_before * 1e-12);
        b.seconds_before = a.seconds_before;
    }
    assert_eq!(&back, r);
}
