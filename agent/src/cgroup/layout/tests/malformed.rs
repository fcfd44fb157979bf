//! Paths that look like kubelet cgroups and are not: malformed, lossy, long, adversarial.

use super::*;

/// Paths that look like kubelet cgroups but fit no layout: Host, with where they broke off.
#[test]
fn mismatches_are_host_with_prefix() {
    let cases = [
        // Unknown QoS level / stray directory below the kubepods root.
        ("/kubepods/burstable2/pod/x".to_owned(), "/kubepods"),
        (
            format!("/kubepods/burstable/pod{UID}/notanid"),
            "/kubepods/burstable/pod0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70",
        ),
        // Uppercase, short and long ids.
        (
            format!("/kubepods/burstable/pod{UID}/{}", ID.to_uppercase()),
            "/kubepods/burstable/pod0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70",
        ),
        (
            format!("/kubepods/pod{UID}/{}", &ID[..63]),
            "/kubepods/pod0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70",
        ),
        (
            format!("/kubepods/pod{UID}/{ID}0"),
            "/kubepods/pod0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70",
        ),
        // Underscored uid under cgroupfs, dashed uid under systemd: each driver has one spelling.
        (
            format!("/kubepods/burstable/pod{UID_SYSTEMD}/{ID}"),
            "/kubepods/burstable",
        ),
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice/cri-containerd-{ID}.scope"
            ),
            "/kubepods.slice/kubepods-burstable.slice",
        ),
        // A pod slice whose name does not repeat its parent's.
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"
            ),
            "/kubepods.slice/kubepods-burstable.slice",
        ),
        // A burstable pod slice directly below kubepods.slice (no QoS slice).
        (
            format!("/kubepods.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"),
            "/kubepods.slice",
        ),
        // Scope without .scope, unknown runtime prefix, runtime prefix under cgroupfs.
        (
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/crio-{ID}"),
            "/kubepods.slice/kubepods-pod0f1d7c3a_4b6e_4d2a_9c1e_2b3c4d5e6f70.slice",
        ),
        (
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/rkt-{ID}.scope"),
            "/kubepods.slice/kubepods-pod0f1d7c3a_4b6e_4d2a_9c1e_2b3c4d5e6f70.slice",
        ),
        (
            format!("/kubepods/pod{UID}/docker-{ID}.scope"),
            "/kubepods/pod0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70",
        ),
        // conmon with a malformed id is not the monitor either.
        (
            format!("/kubepods/pod{UID}/crio-conmon-{}", &ID[1..]),
            "/kubepods/pod0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70",
        ),
        // A QoS slice without its kubepods.slice parent.
        ("/kubepods-burstable.slice/x".to_owned(), "/"),
        (
            "/system.slice/kubepods-cleanup.service".to_owned(),
            "/system.slice",
        ),
    ];
    for (path, prefix) in &cases {
        let analysis = analyse(path);
        assert_eq!(analysis.class, CgroupClass::Host, "{path}");
        assert_eq!(analysis.mismatch, Some(*prefix), "{path}");
        assert_eq!(parse_container(path), None, "{path}");
    }
}

#[test]
fn malformed_pod_uids_are_rejected() {
    let bad_uids = [
        "",
        "0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f7",
        "0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f700",
        "0F1D7C3A-4B6E-4D2A-9C1E-2B3C4D5E6F70",
        "0f1d7c3a4-b6e-4d2a-9c1e-2b3c4d5e6f70",
        "0f1d7c3a-4b6e-4d2a-9c1e_2b3c4d5e6f70",
        "0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6fzz",
        "6a1b9f3f7c5b04b2e1e1c1f5a4c1b2d",
        "6a1b9f3f7c5b04b2e1e1c1f5a4c1b2d3-",
    ];
    for uid in bad_uids {
        let path = format!("/kubepods/burstable/pod{uid}/{ID}");
        assert_eq!(classify(&path), CgroupClass::Host, "{path}");
        assert_eq!(
            analyse(&path).mismatch,
            Some("/kubepods/burstable"),
            "{path}"
        );
    }
}

#[test]
fn adversarial_paths_do_not_panic_or_match() {
    let lossy = String::from_utf8_lossy(b"/kubepods/burstable/pod\xff\xfe/\xc3\x28");
    let long_prefix = "/a".repeat(100_000);
    let many_anchors = "/kubepods".repeat(50_000);
    let multibyte = format!(
        "/kubepods/burstable/pod{}/{}",
        "é".repeat(18),
        "ü".repeat(32)
    );
    let cases: Vec<(String, CgroupClass)> = vec![
        (lossy.into_owned(), CgroupClass::Host),
        (
            format!("{long_prefix}/kubepods/pod{UID}/{ID}"),
            container(QosClass::Guaranteed, Runtime::Unknown),
        ),
        (many_anchors.clone(), CgroupClass::Host),
        (
            format!("{many_anchors}/pod{UID}/{ID}"),
            container(QosClass::Guaranteed, Runtime::Unknown),
        ),
        (multibyte, CgroupClass::Host),
        ("////kubepods////burstable".to_owned(), CgroupClass::Host),
        (
            format!("//kubepods//burstable//pod{UID}//{ID}//"),
            container(QosClass::Burstable, Runtime::Unknown),
        ),
        (
            format!("/kubepods/burstable/pod{UID}/{ID}/../../pod{UID}/x"),
            CgroupClass::Host,
        ),
        (format!("/kubepods/./pod{UID}/{ID}"), CgroupClass::Host),
        ("kubepods.slice.slice".to_owned(), CgroupClass::Host),
        (".slice".to_owned(), CgroupClass::Host),
        ("/-kubepods.slice/--pod.slice".to_owned(), CgroupClass::Host),
        (format!("/kubepods/pod{UID}/crio-"), CgroupClass::Host),
        (
            format!("/kubepods/pod{UID}/crio-conmon-"),
            CgroupClass::Host,
        ),
        ("/kubepods/pod".to_owned(), CgroupClass::Host),
        ("\0/kubepods\0".to_owned(), CgroupClass::Host),
    ];
    for (path, expected) in cases {
        let shown: String = path.chars().take(120).collect();
        assert_eq!(classify(&path), expected, "{shown}");
    }
}

/// The first anchor that fits wins: a kubepods tree inside a container (Kubernetes in a pod)
/// belongs to the outer container; a stray kubepods directory before a real one does not hide it.
#[test]
fn outermost_matching_anchor_wins() {
    let other = "1111111111111111111111111111111111111111111111111111111111111111";
    let nested = format!("/kubepods/burstable/pod{UID}/{ID}/kubepods/pod{STATIC_UID}/{other}");
    assert_eq!(
        classify(&nested),
        container(QosClass::Burstable, Runtime::Unknown)
    );
    let behind_stray = format!("/kubepods/stray/kubepods/besteffort/pod{UID}/{ID}");
    let analysis = analyse(&behind_stray);
    assert_eq!(
        analysis.class,
        container(QosClass::BestEffort, Runtime::Unknown)
    );
    assert_eq!(analysis.mismatch, None);
}

#[test]
fn kubepods_mentions() {
    for yes in [
        "kubepods",
        "kubepods.slice",
        "kubelet-kubepods.slice",
        "kubepods-burstable.slice",
        "x-kubepods-y.scope",
    ] {
        assert!(mentions_kubepods(yes), "{yes}");
    }
    for no in ["mykubepods", "kubepodsx.slice", "system.slice", "kube-pods"] {
        assert!(!mentions_kubepods(no), "{no}");
    }
}
