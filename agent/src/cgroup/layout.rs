//! Kubelet cgroup layouts: what a memory cgroup path says about the pod and container.
//!
//! Pure string work. The kubelet names cgroups one of two ways, below an optional prefix
//! (`--cgroup-root`, a nested cgroup namespace, kind's `/kubelet.slice/…`):
//! - cgroupfs driver: `kubepods[/burstable|/besteffort]/pod<uid>/<container>`, where the
//!   container is a bare id (containerd, docker) or `crio-<id>`;
//! - systemd driver: `kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid_>.slice/`
//!   `{cri-containerd,crio,docker}-<id>.scope`, each slice name repeating its parent's, and
//!   the pod uid spelled with underscores because `-` is systemd's hierarchy separator.
//!
//! Guaranteed pods sit directly below the kubepods root. Anything below a container cgroup (a
//! sub-cgroup the container made) belongs to that container.

use super::{ContainerRef, QosClass, Runtime};

/// What a memory cgroup path is, as far as the kubelet's layout tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupClass {
    /// A container's cgroup, or a cgroup below one.
    Container(ContainerRef),
    /// A pod-level cgroup that is not a container: the pod's own slice/directory, or CRI-O's
    /// `crio-conmon-<id>` monitor.
    Pod { pod_uid: String, qos: QosClass },
    /// Everything else: host services, the kubepods and QoS-level cgroups, unmatched paths.
    Host,
}

/// The container a memory cgroup path names, if it names one.
#[must_use]
pub fn parse_container(path: &str) -> Option<ContainerRef> {
    match classify(path) {
        CgroupClass::Container(container) => Some(container),
        CgroupClass::Pod { .. } | CgroupClass::Host => None,
    }
}

/// Classifies a memory cgroup path relative to its hierarchy root (`/kubepods/…`).
#[must_use]
pub fn classify(path: &str) -> CgroupClass {
    analyse(path).class
}

/// A classification, plus where a kubepods-looking path left every known layout.
#[derive(Debug)]
pub(crate) struct Analysis<'a> {
    pub class: CgroupClass,
    /// `Some(prefix)` when the path looks like a kubelet cgroup but matches no layout: the
    /// prefix up to the last component that still fit, for rate-limited warnings.
    pub mismatch: Option<&'a str>,
}

/// Classifies `path` and reports a kubepods-like path that matches no layout.
pub(crate) fn analyse(path: &str) -> Analysis<'_> {
    let components = Components::new(path);
    // The kernel and the hierarchy walk never produce `.` or `..`; a path with them names
    // something else than it seems to, so it is no container.
    if let Some(dot) = (0..components.len()).find(|&i| matches!(components.get(i), "." | "..")) {
        let kubepods_like = (0..components.len()).any(|i| mentions_kubepods(components.get(i)));
        return Analysis {
            class: CgroupClass::Host,
            mismatch: kubepods_like.then(|| components.prefix_before(dot)),
        };
    }
    let mut first_mismatch: Option<&str> = None;
    for anchor in 0..components.len() {
        let Some(driver) = Driver::anchored_at(components.get(anchor)) else {
            continue;
        };
        match driver.walk(&components, anchor) {
            Walk::Matched(class) => {
                return Analysis {
                    class,
                    mismatch: None,
                };
            }
            Walk::Mismatch { at } => {
                first_mismatch.get_or_insert_with(|| components.prefix_before(at));
            }
        }
    }
    let mismatch = first_mismatch.or_else(|| {
        (0..components.len())
            .find(|&i| mentions_kubepods(components.get(i)))
            .map(|i| components.prefix_before(i))
    });
    Analysis {
        class: CgroupClass::Host,
        mismatch,
    }
}

/// The non-empty components of a path, with their byte offsets into it.
struct Components<'a> {
    path: &'a str,
    /// (start, end) byte offsets of each component.
    spans: Vec<(usize, usize)>,
}

impl<'a> Components<'a> {
    fn new(path: &'a str) -> Self {
        let mut spans = Vec::new();
        let mut start = 0;
        for (i, byte) in path.bytes().enumerate() {
            if byte == b'/' {
                if i > start {
                    spans.push((start, i));
                }
                start = i + 1;
            }
        }
        if path.len() > start {
            spans.push((start, path.len()));
        }
        Self { path, spans }
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, index: usize) -> &'a str {
        let (start, end) = self.spans[index];
        &self.path[start..end]
    }

    /// The path up to (not including) component `index`; `/` when that is nothing.
    fn prefix_before(&self, index: usize) -> &'a str {
        match index.checked_sub(1).map(|i| self.spans[i].1) {
            Some(end) => &self.path[..end],
            None => "/",
        }
    }
}

/// How the kubelet named the cgroups below an anchor component.
enum Driver<'a> {
    /// The anchor is exactly `kubepods`.
    Cgroupfs,
    /// The anchor is `<base>.slice` with `base` = `kubepods` or `<prefix>-kubepods`.
    Systemd { base: &'a str },
}

enum Walk {
    Matched(CgroupClass),
    /// Component `at` fits no layout below its parent.
    Mismatch {
        at: usize,
    },
}

/// What one component below a pod-level cgroup is.
enum Leaf {
    Container { id: String, runtime: Runtime },
    Conmon,
}

impl<'a> Driver<'a> {
    fn anchored_at(component: &'a str) -> Option<Self> {
        if component == "kubepods" {
            return Some(Self::Cgroupfs);
        }
        let base = component.strip_suffix(".slice")?;
        let prefix = base.strip_suffix("kubepods")?;
        (prefix.is_empty() || prefix.ends_with('-')).then_some(Self::Systemd { base })
    }

    /// Follows the layout from the anchor at `anchor` down the rest of `components`.
    fn walk(&self, components: &Components<'_>, anchor: usize) -> Walk {
        let mut at = anchor + 1;
        if at == components.len() {
            return Walk::Matched(CgroupClass::Host);
        }
        let (qos, pod_uid) = match self.qos_level(components.get(at)) {
            Some(qos) => {
                at += 1;
                if at == components.len() {
                    return Walk::Matched(CgroupClass::Host);
                }
                match self.pod_level(components.get(at), Some(qos)) {
                    Some(uid) => (qos, uid),
                    None => return Walk::Mismatch { at },
                }
            }
            None => match self.pod_level(components.get(at), None) {
                Some(uid) => (QosClass::Guaranteed, uid),
                None => return Walk::Mismatch { at },
            },
        };
        at += 1;
        if at == components.len() {
            return Walk::Matched(CgroupClass::Pod { pod_uid, qos });
        }
        match self.leaf(components.get(at)) {
            Some(Leaf::Container { id, runtime }) => {
                Walk::Matched(CgroupClass::Container(ContainerRef {
                    pod_uid,
                    container_id: id,
                    runtime,
                    qos,
                }))
            }
            Some(Leaf::Conmon) => Walk::Matched(CgroupClass::Pod { pod_uid, qos }),
            None => Walk::Mismatch { at },
        }
    }

    fn qos_level(&self, component: &str) -> Option<QosClass> {
        let name = match self {
            Self::Cgroupfs => component,
            Self::Systemd { base } => component
                .strip_suffix(".slice")?
                .strip_prefix(base)?
                .strip_prefix('-')?,
        };
        match name {
            "burstable" => Some(QosClass::Burstable),
            "besteffort" => Some(QosClass::BestEffort),
            _ => None,
        }
    }

    /// The pod uid (with dashes) when `component` is a pod cgroup below the given quality-of-service level
    /// (`None`: directly below the anchor, a guaranteed pod).
    fn pod_level(&self, component: &str, qos: Option<QosClass>) -> Option<String> {
        match self {
            Self::Cgroupfs => pod_uid(component.strip_prefix("pod")?, '-'),
            Self::Systemd { base } => {
                let rest = component.strip_suffix(".slice")?.strip_prefix(base)?;
                let rest = match qos {
                    Some(QosClass::Burstable) => rest.strip_prefix("-burstable")?,
                    Some(QosClass::BestEffort) => rest.strip_prefix("-besteffort")?,
                    Some(QosClass::Guaranteed) | None => rest,
                };
                pod_uid(rest.strip_prefix("-pod")?, '_')
            }
        }
    }

    fn leaf(&self, component: &str) -> Option<Leaf> {
        let name = match self {
            Self::Cgroupfs => component,
            Self::Systemd { .. } => component.strip_suffix(".scope")?,
        };
        if let Some(id) = name.strip_prefix("crio-conmon-") {
            return is_container_id(id).then_some(Leaf::Conmon);
        }
        let (id, runtime) = match self {
            Self::Cgroupfs => match name.strip_prefix("crio-") {
                Some(id) => (id, Runtime::CriO),
                None => (name, Runtime::Unknown),
            },
            Self::Systemd { .. } => {
                if let Some(id) = name.strip_prefix("cri-containerd-") {
                    (id, Runtime::Containerd)
                } else if let Some(id) = name.strip_prefix("crio-") {
                    (id, Runtime::CriO)
                } else {
                    (name.strip_prefix("docker-")?, Runtime::Docker)
                }
            }
        };
        is_container_id(id).then(|| Leaf::Container {
            id: id.to_owned(),
            runtime,
        })
    }
}

/// Container ids of containerd, CRI-O and docker: 64 lowercase hex digits.
fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(is_lower_hex)
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

/// A pod uid as the API server spells it, from its cgroup spelling with `separator` between
/// the groups of an RFC 4122 uuid. Static pods' uids are a bare 32-digit hash and have none.
fn pod_uid(spelled: &str, separator: char) -> Option<String> {
    const SEPARATORS: [usize; 4] = [8, 13, 18, 23];
    let bytes = spelled.as_bytes();
    if bytes.len() == 32 && bytes.iter().copied().all(is_lower_hex) {
        return Some(spelled.to_owned());
    }
    let well_formed = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &byte)| {
            if SEPARATORS.contains(&i) {
                char::from(byte) == separator
            } else {
                is_lower_hex(byte)
            }
        });
    well_formed.then(|| spelled.replace(separator, "-"))
}

/// Whether a component names kubepods as one of its dash-separated words
/// (`kubepods`, `kubepods-burstable.slice`, `kubelet-kubepods.slice`), for spotting layouts
/// this module does not know.
fn mentions_kubepods(component: &str) -> bool {
    let stem = component
        .rsplit_once('.')
        .map_or(component, |(stem, _)| stem);
    stem.split('-').any(|word| word == "kubepods")
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
