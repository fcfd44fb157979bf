use super::*;

pub(super) const UID: &str = "0f1d7c3a-4b6e-4d2a-9c1e-2b3c4d5e6f70";
pub(super) const UID_SYSTEMD: &str = "0f1d7c3a_4b6e_4d2a_9c1e_2b3c4d5e6f70";
/// Static pods' uid: the hash of their manifest.
pub(super) const STATIC_UID: &str = "6a1b9f3f7c5b04b2e1e1c1f5a4c1b2d3";
pub(super) const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

pub(super) fn container(qos: QosClass, runtime: Runtime) -> CgroupClass {
    CgroupClass::Container(ContainerRef {
        pod_uid: UID.to_owned(),
        container_id: ID.to_owned(),
        runtime,
        qos,
    })
}

fn pod(qos: QosClass) -> CgroupClass {
    CgroupClass::Pod {
        pod_uid: UID.to_owned(),
        qos,
    }
}

/// Literal paths as kubelets write them, one per quality-of-service class × driver × runtime.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "a table of literal paths reads best whole"
)]
fn literal_layouts() {
    use QosClass::{BestEffort, Burstable, Guaranteed};
    use Runtime::{Containerd, CriO, Docker, Unknown};
    let cases = [
        // cgroupfs driver: containerd and docker leave the bare id, CRI-O prefixes it.
        (
            format!("/kubepods/pod{UID}/{ID}"),
            container(Guaranteed, Unknown),
        ),
        (
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            container(Burstable, Unknown),
        ),
        (
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
            container(BestEffort, Unknown),
        ),
        (
            format!("/kubepods/pod{UID}/crio-{ID}"),
            container(Guaranteed, CriO),
        ),
        (
            format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
            container(Burstable, CriO),
        ),
        (
            format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
            container(BestEffort, CriO),
        ),
        // systemd driver.
        (
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"),
            container(Guaranteed, Containerd),
        ),
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
            ),
            container(Burstable, Containerd),
        ),
        (
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
            ),
            container(BestEffort, Containerd),
        ),
        (
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"),
            container(Guaranteed, CriO),
        ),
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"
            ),
            container(Burstable, CriO),
        ),
        (
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope"
            ),
            container(BestEffort, CriO),
        ),
        (
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/docker-{ID}.scope"),
            container(Guaranteed, Docker),
        ),
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/docker-{ID}.scope"
            ),
            container(Burstable, Docker),
        ),
        (
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/docker-{ID}.scope"
            ),
            container(BestEffort, Docker),
        ),
        // kind: the kubelet's cgroup root is /kubelet, so every slice name carries it.
        (
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
            ),
            container(Burstable, Containerd),
        ),
        (
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
            ),
            container(Guaranteed, Containerd),
        ),
        // A nested cgroup root (kind on a cgroupfs docker host) and a --cgroup-root prefix.
        (
            format!("/docker/{ID}/kubepods/besteffort/pod{UID}/{ID}"),
            container(BestEffort, Unknown),
        ),
        (
            format!("/kubelet/kubepods/burstable/pod{UID}/{ID}"),
            container(Burstable, Unknown),
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(classify(&path), expected, "{path}");
        let expected_container = match expected {
            CgroupClass::Container(c) => Some(c),
            _ => None,
        };
        assert_eq!(parse_container(&path), expected_container, "{path}");
        assert!(analyse(&path).mismatch.is_none(), "{path}");
    }
}

/// How a driver spells each level, for the generated table.
#[derive(Clone, Copy, Debug)]
enum Spelling {
    Cgroupfs,
    /// systemd with this slice prefix before `kubepods` (`""` or e.g. `"kubelet-"`).
    Systemd(&'static str),
}

fn build(spelling: Spelling, outer: &str, qos: QosClass, leaf: &str) -> String {
    match spelling {
        Spelling::Cgroupfs => {
            let qos_dir = match qos {
                QosClass::Guaranteed => String::new(),
                QosClass::Burstable => "/burstable".to_owned(),
                QosClass::BestEffort => "/besteffort".to_owned(),
            };
            format!("{outer}/kubepods{qos_dir}/pod{UID}/{leaf}")
        }
        Spelling::Systemd(prefix) => {
            let base = format!("{prefix}kubepods");
            let (qos_dir, pod_base) = match qos {
                QosClass::Guaranteed => (String::new(), base.clone()),
                QosClass::Burstable => (
                    format!("/{base}-burstable.slice"),
                    format!("{base}-burstable"),
                ),
                QosClass::BestEffort => (
                    format!("/{base}-besteffort.slice"),
                    format!("{base}-besteffort"),
                ),
            };
            format!("{outer}/{base}.slice{qos_dir}/{pod_base}-pod{UID_SYSTEMD}.slice/{leaf}")
        }
    }
}

/// Every quality-of-service class × driver × runtime × prefix, with the pod level, CRI-O's conmon and a
/// container's own sub-cgroups.
#[test]
fn generated_layouts() {
    let spellings = [
        Spelling::Cgroupfs,
        Spelling::Systemd(""),
        Spelling::Systemd("kubelet-"),
    ];
    let outers = ["", "/kubelet.slice", "/nested/root", "/docker/abc"];
    let qoses = [
        QosClass::Guaranteed,
        QosClass::Burstable,
        QosClass::BestEffort,
    ];
    let mut checked = 0;
    for spelling in spellings {
        let leaves: &[(String, Runtime)] = &match spelling {
            Spelling::Cgroupfs => vec![
                (ID.to_owned(), Runtime::Unknown),
                (format!("crio-{ID}"), Runtime::CriO),
            ],
            Spelling::Systemd(_) => vec![
                (format!("cri-containerd-{ID}.scope"), Runtime::Containerd),
                (format!("crio-{ID}.scope"), Runtime::CriO),
                (format!("docker-{ID}.scope"), Runtime::Docker),
            ],
        };
        let conmon = match spelling {
            Spelling::Cgroupfs => format!("crio-conmon-{ID}"),
            Spelling::Systemd(_) => format!("crio-conmon-{ID}.scope"),
        };
        for outer in outers {
            for qos in qoses {
                for (leaf, runtime) in leaves {
                    let path = build(spelling, outer, qos, leaf);
                    assert_eq!(classify(&path), container(qos, *runtime), "{path}");
                    for below in ["/sub", "/a/b/c", "/init.scope", "/kubepods/burstable"] {
                        let deeper = format!("{path}{below}");
                        assert_eq!(classify(&deeper), container(qos, *runtime), "{deeper}");
                    }
                    checked += 1;
                }
                let pod_path = build(spelling, outer, qos, "");
                let pod_path = pod_path.trim_end_matches('/');
                assert_eq!(classify(pod_path), pod(qos), "{pod_path}");
                let conmon_path = build(spelling, outer, qos, &conmon);
                assert_eq!(classify(&conmon_path), pod(qos), "{conmon_path}");
                assert_eq!(parse_container(&conmon_path), None, "{conmon_path}");
            }
        }
    }
    assert_eq!(checked, 4 * 3 * (2 + 3 + 3));
}

#[test]
fn static_pod_uid_has_no_dashes() {
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{ID}.scope"
    );
    let found = parse_container(&path).expect("static pod container");
    assert_eq!(found.pod_uid, STATIC_UID);
    let path = format!("/kubepods/pod{STATIC_UID}/{ID}");
    assert_eq!(
        parse_container(&path).expect("static pod").pod_uid,
        STATIC_UID
    );
}

#[test]
fn kubelet_levels_above_pods_are_host_and_valid() {
    for path in [
        "/",
        "",
        "/kubepods",
        "/kubepods/burstable",
        "/kubepods/besteffort",
        "/kubepods.slice",
        "/kubepods.slice/kubepods-burstable.slice",
        "/kubepods.slice/kubepods-besteffort.slice",
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice",
        "/system.slice/containerd.service",
        "/user.slice/user-0.slice/session-3.scope",
        "/process_api/c6d82aaf30570572df48ac05ce640974",
    ] {
        let analysis = analyse(path);
        assert_eq!(analysis.class, CgroupClass::Host, "{path}");
        assert_eq!(analysis.mismatch, None, "{path}");
    }
}

mod malformed;
