//! The plugin test's cluster: the kubelet double and containerd, the API server double with
//! the agent pod and a user whose token comes from an `exec` credential plugin, the real
//! agent as the `DaemonSet` runs it, the `kubectl-coroner` runner, and the two real deaths the
//! checks read.

use coroner_tests::agent::{Agent, Record, coroner_bin};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::access_review::Grant;
use coroner_tests::apiserver::objects::{replicaset, with_owner};
use coroner_tests::cgroups::unique_hex;
use coroner_tests::runtime::publish::pod_object;
use coroner_tests::runtime::{ContainerSpec, Handler, Kubelet, Pod, PodOptions};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod as ApiPod, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

pub const MIB: u64 = 1 << 20;
pub const LIMIT: u64 = 64 * MIB;
pub const RECORD_WAIT: Duration = Duration::from_secs(15);
pub const EXIT_WAIT: Duration = Duration::from_secs(20);
pub const AGENT_NS: &str = "coroner";
pub const DEPLOYMENT: &str = "hogs";
pub const REPLICASET: &str = "hogs-7d9f8c";
/// The plugin user's token, as its credential plugin prints it, and who the double says it is.
pub const TOKEN: &str = "t-dev";
pub const USER: &str = "dev";

/// `kubectl-coroner`, built beside `coroner` (`cargo build --workspace --bins`).
pub fn plugin_bin() -> PathBuf {
    coroner_bin().with_file_name("kubectl-coroner")
}

pub struct Cluster {
    pub kubelet: Kubelet,
    pub server: ApiServer,
    pub agent: Agent,
    pub node: String,
    /// The plugin's kubeconfig: the double's cluster, a user whose token comes from `exec`.
    pub kubeconfig: PathBuf,
    pub _dir: tempfile::TempDir,
}

/// The double's kubeconfig with the user's token from an `exec` credential plugin (what EKS,
/// GKE and OIDC kubeconfigs use): a script that prints an `ExecCredential`.
pub fn exec_kubeconfig(server: &ApiServer, dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let plain = std::fs::read_to_string(server.kubeconfig()).expect("the double's kubeconfig");
    let script = dir.join("credential");
    let credential = serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": TOKEN},
    });
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat <<'EOF'\n{credential}\nEOF\n"),
    )
    .expect("the credential script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exec = format!(
        "  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      \
         command: {}\n      interactiveMode: Never\n",
        script.display()
    );
    assert!(plain.contains("  user: {}\n"), "{plain}");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, plain.replace("  user: {}\n", &exec)).expect("a kubeconfig");
    path
}

impl Cluster {
    pub fn start(test: &str) -> Option<Self> {
        if !coroner_tests::runtime::available(test) {
            return None;
        }
        assert!(
            plugin_bin().exists(),
            "{} is missing: cargo build --release -p coroner --bins",
            plugin_bin().display()
        );
        // The agent as the DaemonSet runs it: callers' tokens reviewed by the API server.
        let args = ["--http-auth", "kubernetes", "--pod-name", "coroner-agent"];
        let node = coroner_tests::runtime::cluster::Cluster::start(
            test,
            Handler::Runc,
            &[&args[..], &["--pod-namespace", AGENT_NS]].concat(),
        )?;
        let coroner_tests::runtime::cluster::Cluster {
            kubelet,
            server,
            agent,
            node,
        } = node;
        server.add_token(TOKEN, USER, &[]);
        server.grant(Grant::Resource {
            user: USER.into(),
            verb: "get".into(),
            namespace: AGENT_NS.into(),
            resource: "pods/proxy".into(),
        });
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kubeconfig = exec_kubeconfig(&server, dir.path());
        Some(Self {
            kubelet,
            server,
            agent,
            node,
            kubeconfig,
            _dir: dir,
        })
    }

    /// The pod as the kubelet writes it, as a pod of Deployment `hogs` (labels, owner).
    pub fn publish(&self, pod: &Pod) {
        let mut object = pod_object(&self.kubelet, &self.node, pod).expect("the pod's statuses");
        object.metadata.labels = Some(labels());
        let object = with_owner(object, "apps/v1", "ReplicaSet", REPLICASET);
        self.server.put_pod(&object);
    }

    /// The agent's pod on the node, as the `DaemonSet` makes it: its labels, its `http-metrics`
    /// port, the pod IP the API server proxies to.
    pub fn put_agent_pod(&self, port: u16) -> String {
        let name = format!("coroner-{}", unique_hex(5));
        let pod = ApiPod {
            metadata: ObjectMeta {
                namespace: Some(AGENT_NS.into()),
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/name".into(), "coroner".into()),
                    ("app.kubernetes.io/component".into(), "node-agent".into()),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(self.node.clone()),
                containers: vec![Container {
                    name: "coroner".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http-metrics".into()),
                        container_port: i32::from(port),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("127.0.0.1".into()),
                ..PodStatus::default()
            }),
        };
        self.server.put_pod(&pod);
        name
    }

    pub fn plugin(&self, args: &[&str]) -> Output {
        plugin_as(&self.kubeconfig, args)
    }

    /// Stdout of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.plugin(args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    pub fn init_record(&mut self, id: &str) -> Record {
        self.agent
            .wait_for(&format!("the init of {id}"), RECORD_WAIT, |r| {
                r.record.container_id.as_deref() == Some(id) && r.field("role") == "init"
            })
            .unwrap()
    }
}

/// `kubectl-coroner ARGS --kubeconfig KUBECONFIG`, its output shown.
pub fn plugin_as(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let out = Command::new(plugin_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env_remove("CORONER_AGENT_TOKEN")
        .output()
        .expect("kubectl-coroner runs");
    eprintln!(
        "$ kubectl coroner {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".into(), DEPLOYMENT.into())])
}

pub fn deployment(namespace: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(DEPLOYMENT.into()),
            uid: Some(format!("uid-Deployment-{DEPLOYMENT}")),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(labels()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec::default(),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub fn contains(text: &str, want: &str) {
    assert!(text.contains(want), "{want:?} not in:\n{text}");
}

/// Two real deaths of pod containers (a crash, then an OOM kill at the 64Mi limit), a pod of
/// Deployment `hogs`; their records as the agent wrote them.
pub struct Deaths {
    pub pod: Pod,
    pub hog: String,
    pub crashed: Record,
    pub oom: Record,
}

pub fn stage(c: &mut Cluster) -> Deaths {
    let pod = c
        .kubelet
        .run_pod(&PodOptions::default())
        .expect("RunPodSandbox");
    let mut rs = replicaset(&pod.namespace, REPLICASET, Some(DEPLOYMENT));
    rs.metadata.labels = Some(labels());
    c.server.put_replicaset(&rs);
    c.server.put_deployment(&deployment(&pod.namespace));
    let (crash, _) = c
        .kubelet
        .run_container(&pod, &ContainerSpec::sh("setup", "exit 3"))
        .unwrap();
    c.publish(&pod);
    c.kubelet.wait_exited(&crash, EXIT_WAIT).unwrap();
    c.publish(&pod);
    let crashed = c.init_record(&crash);
    let spec = ContainerSpec {
        memory_limit: Some(LIMIT),
        ..ContainerSpec::sh("hog", "sleep 1; exec /bin/hog 300")
    };
    let (hog, _) = c.kubelet.run_container(&pod, &spec).unwrap();
    c.publish(&pod);
    let exited = c.kubelet.wait_exited(&hog, EXIT_WAIT).unwrap();
    assert_eq!(exited.reason, "OOMKilled", "{exited:?}");
    c.publish(&pod);
    let oom = c.init_record(&hog);
    assert_eq!(oom.reason(), "OOMKilled", "{}", oom.json);
    assert_eq!(
        oom.field("owner_kind"),
        "Deployment",
        "the agent named the workload: {}",
        oom.json
    );
    Deaths {
        pod,
        hog,
        crashed,
        oom,
    }
}
