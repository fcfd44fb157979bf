//! The command line of RECORD.md: names and defaults are part of the contract.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::kube::KubeMode;

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "coroner",
    version,
    about = "The cause of death of every container process on this node"
)]
pub struct Args {
    /// HTTP: /metrics, /healthz, /v1/terminations.
    #[arg(long, env = "CORONER_LISTEN", default_value = "0.0.0.0:9750")]
    pub listen: SocketAddr,
    /// One termination record per line; `-` is stdout. Flushed per record.
    #[arg(long = "events-json", env = "CORONER_EVENTS_JSON")]
    pub events_json: Option<String>,
    /// auto: in-cluster config or KUBECONFIG, else standalone; on: required; off: standalone.
    #[arg(long, env = "CORONER_KUBE", value_enum, default_value_t = KubeMode::Auto)]
    pub kube: KubeMode,
    /// The node whose pods are watched (default: the hostname).
    #[arg(long = "node-name", env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Where the cgroup hierarchies are mounted.
    #[arg(
        long = "cgroup-root",
        env = "CORONER_CGROUP_ROOT",
        default_value = "/sys/fs/cgroup"
    )]
    pub cgroup_root: PathBuf,
    /// Also print each record as one human-readable line on stdout.
    #[arg(long)]
    pub print: bool,
    /// Log every kernel event as it arrives (debugging; verbose).
    #[arg(long)]
    pub trace_events: bool,
}

impl Args {
    /// `--node-name`, or the hostname.
    #[must_use]
    pub fn node(&self) -> String {
        if let Some(name) = &self.node_name {
            return name.clone();
        }
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return "unknown".into();
        }
        String::from_utf8_lossy(agent_ebpf::c_str_bytes(&buf)).into_owned()
    }
}
