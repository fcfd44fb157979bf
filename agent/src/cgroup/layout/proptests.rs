//! The cgroup path fuzz target's promises (`crate::fuzzing::cgroup_path`) under generated
//! input: every layout with random ids, prefixes and sub-cgroups; the same paths corrupted
//! one byte at a time; and anything at all.

use proptest::prelude::*;

use crate::cgroup::{CgroupClass, ContainerRef, QosClass, Runtime, classify};
use crate::fuzzing::cgroup_path::{check, check_prefix_invariance};

#[derive(Clone, Copy, Debug)]
enum Driver {
    Cgroupfs,
    /// systemd, with `kubelet-` before `kubepods` or not.
    Systemd {
        prefixed: bool,
    },
}

/// A kubelet container path with its expected identity.
#[derive(Clone, Debug)]
struct Staged {
    path: String,
    container: ContainerRef,
}

fn qos() -> impl Strategy<Value = QosClass> {
    prop_oneof![
        Just(QosClass::Guaranteed),
        Just(QosClass::Burstable),
        Just(QosClass::BestEffort)
    ]
}

fn pod_uid() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        // Static pods: the config's hash, no dashes.
        "[0-9a-f]{32}",
    ]
}

/// Components that anchor no layout.
fn neutral_prefix() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-jl-z0-9_-]{1,12}", 0..4)
        .prop_map(|c| c.iter().flat_map(|c| ["/", c.as_str()]).collect::<String>())
}

fn sub_cgroups() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9_.-]{1,12}", 0..4).prop_map(|c| {
        c.iter()
            .filter(|c| *c != "." && *c != "..")
            .flat_map(|c| ["/", c.as_str()])
            .collect()
    })
}

fn staged() -> impl Strategy<Value = Staged> {
    (
        prop_oneof![
            Just(Driver::Cgroupfs),
            Just(Driver::Systemd { prefixed: false }),
            Just(Driver::Systemd { prefixed: true })
        ],
        qos(),
        pod_uid(),
        "[0-9a-f]{64}",
        0usize..3,
        neutral_prefix(),
        sub_cgroups(),
    )
        .prop_map(|(driver, qos, uid, id, runtime, outer, below)| {
            let (path, runtime) = container_path(driver, qos, &uid, &id, runtime);
            Staged {
                path: format!("{outer}{path}{below}"),
                container: ContainerRef {
                    pod_uid: uid,
                    container_id: id,
                    runtime,
                    qos,
                },
            }
        })
}

fn container_path(
    driver: Driver,
    qos: QosClass,
    uid: &str,
    id: &str,
    runtime: usize,
) -> (String, Runtime) {
    match driver {
        Driver::Cgroupfs => {
            let level = match qos {
                QosClass::Guaranteed => "",
                QosClass::Burstable => "/burstable",
                QosClass::BestEffort => "/besteffort",
            };
            let (leaf, runtime) = if runtime == 0 {
                (id.to_owned(), Runtime::Unknown)
            } else {
                (format!("crio-{id}"), Runtime::CriO)
            };
            (format!("/kubepods{level}/pod{uid}/{leaf}"), runtime)
        }
        Driver::Systemd { prefixed } => {
            let base = if prefixed {
                "kubelet-kubepods"
            } else {
                "kubepods"
            };
            let (level, pod_base) = match qos {
                QosClass::Guaranteed => (String::new(), base.to_owned()),
                QosClass::Burstable => (
                    format!("/{base}-burstable.slice"),
                    format!("{base}-burstable"),
                ),
                QosClass::BestEffort => (
                    format!("/{base}-besteffort.slice"),
                    format!("{base}-besteffort"),
                ),
            };
            let (scope, runtime) = match runtime {
                0 => ("cri-containerd", Runtime::Containerd),
                1 => ("crio", Runtime::CriO),
                _ => ("docker", Runtime::Docker),
            };
            let uid_ = uid.replace('-', "_");
            (
                format!("/{base}.slice{level}/{pod_base}-pod{uid_}.slice/{scope}-{id}.scope"),
                runtime,
            )
        }
    }
}

proptest! {
    #![proptest_config(crate::fuzzing::testing::config(1024))]

    #[test]
    fn every_layout_names_its_container(staged in staged()) {
        let class = check(&staged.path);
        prop_assert_eq!(class, CgroupClass::Container(staged.container.clone()), "{}", staged.path);
    }

    #[test]
    fn a_neutral_prefix_changes_nothing(staged in staged(), prefix in neutral_prefix()) {
        check_prefix_invariance(&prefix, &staged.path);
    }

    /// One byte changed anywhere: still checked, and never a *different* container that
    /// takes its identity from outside the path (every reported id is in the path).
    #[test]
    fn corrupted_layouts_are_checked(
        staged in staged(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![Just(b'/'), Just(b'.'), Just(b'-'), Just(b'_'), Just(b'G'), any::<u8>()],
    ) {
        let mut bytes = staged.path.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let path = String::from_utf8_lossy(&bytes);
        check(&path);
    }

    #[test]
    fn any_string_is_checked(path in "\\PC{0,300}") {
        check(&path);
    }

    #[test]
    fn kubepods_words_in_any_order_are_checked(
        parts in prop::collection::vec(
            prop_oneof![
                Just("kubepods".to_owned()), Just("kubepods.slice".to_owned()),
                Just("burstable".to_owned()), Just("besteffort".to_owned()),
                Just("kubepods-burstable.slice".to_owned()),
                "pod[0-9a-f-]{36}", "[0-9a-f]{64}", "crio-[0-9a-f]{64}",
                "cri-containerd-[0-9a-f]{64}\\.scope", Just("..".to_owned()), Just(".".to_owned()),
                Just(String::new()),
            ],
            0..8,
        )
    ) {
        check(&parts.join("/"));
    }
}

/// Not vacuous: the generator stages containers the parser really recognises, in every
/// driver, and a bad id is refused.
#[test]
fn the_checks_see_containers_and_refuse_bad_ids() {
    let uid = "0a1b2c3d-0000-4000-8000-000000000001";
    let id = "ab".repeat(32);
    for driver in [Driver::Cgroupfs, Driver::Systemd { prefixed: true }] {
        let (path, _) = container_path(driver, QosClass::Burstable, uid, &id, 1);
        assert!(matches!(check(&path), CgroupClass::Container(_)), "{path}");
        let bad = path.replace(&id, &"AB".repeat(32));
        assert!(
            !matches!(classify(&bad), CgroupClass::Container(_)),
            "{bad}"
        );
    }
}
