//! A node with its Kubernetes side, for the real-runtime tests that need the API: the kubelet
//! double with its containerd, the API server double on the kubelet's Tokio runtime, and the
//! real agent with `--kube on` and `KUBECONFIG` pointing at the double, its pod watch open.

use std::time::Duration;

use crate::agent::{Agent, Options};
use crate::apiserver::ApiServer;
use crate::cgroups::unique_hex;

use super::{Handler, Kubelet};

/// How long the agent may take to open its watch of the node's pods.
const WATCH_OPEN_LIMIT: Duration = Duration::from_secs(10);

/// The node; dropped in field order: the kubelet's pods first, then the doubles, the agent last.
pub struct Cluster {
    pub kubelet: Kubelet,
    pub server: ApiServer,
    pub agent: Agent,
    /// The node name the agent runs as (`--node-name`) and the pods are published on.
    pub node: String,
}

impl Cluster {
    /// `None` (the test skipped, the reason printed) when not root; see
    /// [`super::available`]. `args` go to the agent after the harness's own.
    #[must_use]
    pub fn start(test: &str, handler: Handler, args: &[&str]) -> Option<Self> {
        if !super::available(test) {
            return None;
        }
        let kubelet = Kubelet::start(handler).expect("containerd and the kubelet double start");
        let server = {
            let _enter = kubelet.tokio().enter();
            ApiServer::start().expect("the API server double starts")
        };
        let node = format!("node-rt-{}", unique_hex(8));
        let agent = Agent::start_with(&Options {
            kube: Some("on".into()),
            node: Some(node.clone()),
            env: vec![("KUBECONFIG".into(), server.kubeconfig().into())],
            args: args.iter().map(|a| (*a).into()).collect(),
        })
        .expect("coroner starts with --kube on");
        let up = kubelet
            .tokio()
            .block_on(server.wait_until(WATCH_OPEN_LIMIT, |s| s.open_watches() >= 1));
        assert!(up, "the agent's pod watch is open:\n{}", agent.log_tail());
        Some(Self {
            kubelet,
            server,
            agent,
            node,
        })
    }
}
