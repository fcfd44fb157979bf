//! [`classify`] and [`parse_container`] on any path: no panic, and what they find is really
//! in the path, well-formed, and stable under the changes that must not matter.

use crate::cgroup::{CgroupClass, ContainerRef, classify, parse_container};

/// A container id as runtimes write it.
fn is_container_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A pod uid as the API server spells it: an RFC 4122 uuid, or a static pod's 32-digit hash.
fn is_pod_uid(uid: &str) -> bool {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    match uid.len() {
        32 => uid.bytes().all(hex),
        36 => uid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                hex(b)
            }
        }),
        _ => false,
    }
}

/// The uid as this path must spell it somewhere: with dashes (cgroupfs) or underscores
/// (systemd).
fn uid_in_path(uid: &str, path: &str) -> bool {
    path.contains(uid) || path.contains(&uid.replace('-', "_"))
}

fn check_pod_uid(uid: &str, path: &str) {
    assert!(is_pod_uid(uid), "pod uid {uid:?} of {path:?}");
    assert!(uid_in_path(uid, path), "pod uid {uid:?} not in {path:?}");
}

fn check_container(c: &ContainerRef, path: &str) {
    assert!(is_container_id(&c.container_id), "{c:?} of {path:?}");
    assert!(path.contains(&c.container_id), "{c:?} not in {path:?}");
    check_pod_uid(&c.pod_uid, path);
}

/// Panics if a promise of the parser breaks for `path`; returns its class.
pub fn check(path: &str) -> CgroupClass {
    let class = classify(path);
    let container = parse_container(path);
    match &class {
        CgroupClass::Container(c) => {
            assert_eq!(container.as_ref(), Some(c));
            check_container(c, path);
        }
        CgroupClass::Pod { pod_uid, .. } => {
            assert_eq!(container, None);
            check_pod_uid(pod_uid, path);
        }
        CgroupClass::Host => assert_eq!(container, None),
    }
    // Empty components do not count: doubled, leading and trailing slashes change nothing.
    assert_eq!(
        classify(&format!("/{path}/")),
        class,
        "{path:?} with slashes"
    );
    assert_eq!(
        classify(&path.replace('/', "//")),
        class,
        "{path:?} doubled slashes"
    );
    // A cgroup below a container's belongs to that container.
    if let CgroupClass::Container(_) = &class {
        assert_eq!(classify(&format!("{path}/sub")), class, "below {path:?}");
    }
    // `.` and `..` never name a container.
    let dotted = format!("{path}/..");
    assert_eq!(parse_container(&dotted), None, "{dotted:?}");
    class
}

/// `prefix` is a path of components that cannot anchor a kubelet layout (no `kubepods`, no
/// dots): putting it in front of `path` must not change what `path` is.
pub fn check_prefix_invariance(prefix: &str, path: &str) {
    assert!(
        !prefix.contains("kubepods") && !prefix.contains('.'),
        "not a neutral prefix: {prefix:?}"
    );
    if path.split('/').any(|c| c == "." || c == "..") {
        return;
    }
    assert_eq!(
        classify(&format!("{prefix}/{path}")),
        classify(path),
        "{prefix:?} in front of {path:?}"
    );
}
