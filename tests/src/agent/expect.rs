//! What a record must say given what the test did: containers staged in kubelet layouts, the
//! fields every record carries, and the death `wait4` saw.

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{Agent, Record};
use crate::cgroups::{Layout, TestCgroup, container_path, kubepods_top, pod_uid, unique_hex};
use crate::victim::{Reaped, spawn_in};

/// Every field `docs/record.md` names: present in every record, null or not.
pub use coroner::record::FIELDS as CONTRACT_FIELDS;

/// How far a record's `time` may be from the test's clock when it reads the record.
const TIME_SLACK: Duration = Duration::from_secs(10);

/// Makes a container's cgroup path from `(top, pod_uid, container_id)`.
pub type PathOf = fn(&str, &str, &str) -> String;

/// A container as a runtime makes one: a memory cgroup in a kubelet layout.
pub struct Container {
    pub cgroup: TestCgroup,
    path_of: PathOf,
    pub top: String,
    pub pod_uid: String,
    pub container_id: String,
}

impl Container {
    /// A container of a new pod under a private kubepods tree.
    pub fn new(layout: Layout) -> Result<Self> {
        let path_of: PathOf = match layout {
            Layout::CgroupfsBurstable => {
                |t, u, c| container_path(Layout::CgroupfsBurstable, t, u, c)
            }
            Layout::CgroupfsGuaranteed => {
                |t, u, c| container_path(Layout::CgroupfsGuaranteed, t, u, c)
            }
            Layout::SystemdContainerd => {
                |t, u, c| container_path(Layout::SystemdContainerd, t, u, c)
            }
            Layout::SystemdCrio => |t, u, c| container_path(Layout::SystemdCrio, t, u, c),
        };
        Self::with_path(path_of)
    }

    /// A container of a new pod in a layout [`Layout`] does not name.
    pub fn with_path(path_of: PathOf) -> Result<Self> {
        Self::in_pod(path_of, &kubepods_top(), &pod_uid())
    }

    /// Another container of the same pod.
    pub fn sibling(&self) -> Result<Self> {
        Self::in_pod(self.path_of, &self.top, &self.pod_uid)
    }

    fn in_pod(path_of: PathOf, top: &str, pod_uid: &str) -> Result<Self> {
        let container_id = unique_hex(64);
        let cgroup = TestCgroup::create(&path_of(top, pod_uid, &container_id))?;
        Ok(Self {
            cgroup,
            path_of,
            top: top.into(),
            pod_uid: pod_uid.into(),
            container_id,
        })
    }

    /// The pod's cgroup: the container's parent, relative to the hierarchy root.
    #[must_use]
    pub fn pod_dir(&self) -> std::path::PathBuf {
        self.cgroup
            .dir()
            .parent()
            .expect("a container cgroup has a parent")
            .to_path_buf()
    }

    /// The `cgroup` a record of this container names.
    #[must_use]
    pub fn path(&self) -> String {
        self.cgroup.path()
    }

    /// Starts `coroner-victim <args>` as this container's main process.
    pub fn spawn(&self, args: &[&str]) -> Result<Child> {
        spawn_in(&self.cgroup, args)
    }
}

/// How long a record may take to appear once the death happened.
pub const RECORD_WAIT: Duration = Duration::from_secs(10);

/// Runs `args` as the main process of `container` (its parent, the test, stays outside),
/// reaps it, and returns its record checked against the common fields and `wait4`.
pub fn main_process(
    agent: &mut Agent,
    container: &Container,
    args: &[&str],
) -> Result<(Record, Reaped)> {
    let child = container.spawn(args)?;
    let pid = child.id();
    let reaped = crate::victim::reap(child)?;
    let record = agent.wait_for_pid(pid, RECORD_WAIT)?;
    common(&record, agent.node(), container, pid, true)?;
    death(&record, reaped)?;
    if record.record.ppid != std::process::id() {
        bail!(
            "ppid {}: the parent is the test, outside the container",
            record.record.ppid
        );
    }
    Ok((record, reaped))
}

/// [`main_process`] in a new container of `layout`, returned with it.
pub fn main_process_in(
    agent: &mut Agent,
    layout: Layout,
    args: &[&str],
) -> Result<(Container, Record, Reaped)> {
    let container = Container::new(layout)?;
    let (record, reaped) = main_process(agent, &container, args)?;
    Ok((container, record, reaped))
}

/// A death in `container`, recorded with the fields every record carries: proof the agent
/// still records (after whatever the test threw at it).
pub fn still_records(agent: &mut Agent, container: &Container) -> Result<()> {
    // The pod's next container: a container has one init, and only its death is recorded
    // whatever it is.
    let next = container.sibling()?;
    let child = next.spawn(&["exit", "3"])?;
    let pid = child.id();
    crate::victim::reap(child)?;
    let record = agent.wait_for_pid(pid, RECORD_WAIT)?;
    common(&record, agent.node(), &next, pid, true)
}

/// An exit, not a kill: nothing of signals or OOM.
pub fn quiet(record: &Record) -> Result<()> {
    for field in [
        "sender",
        "sigterm_time",
        "sigkill_time",
        "grace_seconds",
        "oom",
    ] {
        if !record.field(field).is_null() {
            bail!("{field} should be null: {}", record.json);
        }
    }
    Ok(())
}

/// Nanoseconds since the epoch, now.
#[must_use]
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Checks the fields every record carries against the process the test started.
pub fn common(
    record: &Record,
    node: &str,
    container: &Container,
    pid: u32,
    main_process: bool,
) -> Result<()> {
    let json = record
        .json
        .as_object()
        .context("a record is a JSON object")?;
    for field in CONTRACT_FIELDS {
        if !json.contains_key(field) {
            bail!("field `{field}` missing from {}", record.json);
        }
    }
    let r = &record.record;
    let mut wrong = Vec::new();
    let mut want = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    want(r.node == node, format!("node {:?}, want {node:?}", r.node));
    want(r.pid == pid, format!("pid {}, want {pid}", r.pid));
    want(r.comm == "coroner-victim", format!("comm {:?}", r.comm));
    want(
        r.main_process == main_process,
        format!("main_process {}, want {main_process}", r.main_process),
    );
    want(
        r.cgroup == container.path(),
        format!("cgroup {:?}, want {:?}", r.cgroup, container.path()),
    );
    want(
        r.pod_uid.as_deref() == Some(&container.pod_uid),
        format!("pod_uid {:?}, want {}", r.pod_uid, container.pod_uid),
    );
    want(
        r.container_id.as_deref() == Some(&container.container_id),
        format!(
            "container_id {:?}, want {}",
            r.container_id, container.container_id
        ),
    );
    let skew =
        Duration::from_nanos((r.time.unix_timestamp_nanos() - now_ns()).unsigned_abs() as u64);
    want(
        skew < TIME_SLACK,
        format!("time {} is {skew:?} from now", record.field("time")),
    );
    want(r.peak_rss_bytes > 0, "peak_rss_bytes 0".into());
    let status = match (r.exit_code, r.signal) {
        (Some(code), None) => Some(u16::from(code)),
        (None, Some(signal)) => Some(128 + u16::from(signal)),
        _ => None,
    };
    want(
        status == Some(r.exit_status),
        format!(
            "exit_status {} with exit_code {:?}, signal {:?}",
            r.exit_status, r.exit_code, r.signal
        ),
    );
    for field in ["namespace", "pod", "container", "owner_kind", "owner_name"] {
        want(
            record.field(field).is_null(),
            format!("{field} is {} with --kube off", record.field(field)),
        );
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        bail!("{}\nin {}", wrong.join("; "), record.json)
    }
}

/// Checks `exit_code`, `signal`, `core_dumped` and `exit_status` against `wait4`'s status.
pub fn death(record: &Record, reaped: Reaped) -> Result<()> {
    let r = &record.record;
    let code = reaped.exit_code().map(|c| c as u8);
    let signal = reaped.signal().map(|s| s as u8);
    let core_dumped = libc::WIFSIGNALED(reaped.status) && libc::WCOREDUMP(reaped.status);
    let status = code.map_or_else(|| 128 + u16::from(signal.unwrap_or(0)), u16::from);
    if (r.exit_code, r.signal, r.core_dumped, r.exit_status) != (code, signal, core_dumped, status)
    {
        bail!(
            "death: record says exit_code {:?} signal {:?} core_dumped {} exit_status {}; wait4 says {code:?} {signal:?} {core_dumped} {status}",
            r.exit_code,
            r.signal,
            r.core_dumped,
            r.exit_status
        );
    }
    Ok(())
}

/// The `sender` object, checked field by field; `comm`/`cgroup` only when given.
pub fn sender(
    record: &Record,
    kind: &str,
    pid: u32,
    comm: Option<&str>,
    cgroup: Option<&str>,
) -> Result<()> {
    let s = record.field("sender");
    let ok = s.get("kind") == Some(&Value::from(kind))
        && s.get("pid") == Some(&Value::from(pid))
        && comm.is_none_or(|c| s.get("comm") == Some(&Value::from(c)))
        && cgroup.is_none_or(|c| s.get("cgroup") == Some(&Value::from(c)));
    if !ok {
        bail!("sender {s}, want kind {kind} pid {pid} comm {comm:?} cgroup {cgroup:?}");
    }
    Ok(())
}

/// `sender` is the test's helper (`coroner-victim`) process `pid` in `from`.
pub fn victim_sender(record: &Record, kind: &str, pid: u32, from: &Container) -> Result<()> {
    sender(
        record,
        kind,
        pid,
        Some("coroner-victim"),
        Some(&from.path()),
    )
}

/// `sender` is this test's thread: a `kill(2)` from outside every container.
pub fn host_sender(record: &Record) -> Result<()> {
    sender(
        record,
        "host",
        std::process::id(),
        Some(&thread_comm()?),
        Some(&own_memcg()?),
    )
}

/// Starts `args` as the main process of `container`, lets `act` kill it (given its pid), and
/// returns its record checked against the common fields and `wait4`.
pub fn killed(
    agent: &mut Agent,
    container: &Container,
    args: &[&str],
    act: impl FnOnce(u32),
) -> Result<(Record, Reaped)> {
    let child = container.spawn(args)?;
    let pid = child.id();
    act(pid);
    let reaped = crate::victim::reap(child)?;
    let record = agent.wait_for_pid(pid, RECORD_WAIT)?;
    common(&record, agent.node(), container, pid, true)?;
    death(&record, reaped)?;
    Ok((record, reaped))
}

/// This test process's memory cgroup, as the agent names cgroups.
pub fn own_memcg() -> Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup")?;
    let v1 = text
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()));
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string));
    v1.or(v2).context("no memory cgroup in /proc/self/cgroup")
}

/// The calling thread's comm: what the kernel reports as the sender of its `kill(2)`.
pub fn thread_comm() -> Result<String> {
    Ok(fs::read_to_string("/proc/thread-self/comm")?
        .trim_end()
        .to_string())
}

/// Until process `pid` runs `comm` (a shell executed its last command in place).
pub fn wait_for_comm(pid: u32, comm: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if now.trim() == comm {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pid {pid} never ran {comm}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `pid` ignores (`SigIgn`) signal `sig`, so a signal sent next cannot kill it.
pub fn wait_ignoring(pid: u32, sig: i32) -> Result<()> {
    wait_mask(pid, sig, "SigIgn:", "ignored")
}

/// Until process `pid` has a handler for signal `sig` (`SigCgt` in its status): a shell's `trap`
/// is set.
pub fn wait_catching(pid: u32, sig: i32) -> Result<()> {
    wait_mask(pid, sig, "SigCgt:", "caught")
}

fn wait_mask(pid: u32, sig: i32, mask: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let bit = 1u64 << (sig - 1);
    loop {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let set = status
            .lines()
            .find_map(|l| l.strip_prefix(mask))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if set & bit != 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pid {pid} never {what} signal {sig}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
