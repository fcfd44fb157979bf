//! The command line of `docs/flags.md`: names and defaults are part of the contract.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::export::{AuthMode, MetricsConfig};
use crate::kube::{EventTypes, KubeMode, NamespaceFilter};

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "coroner",
    version,
    about = "The cause of death of every container process on this node"
)]
pub struct Args {
    /// HTTP: /metrics, /v1/terminations, /livez, /readyz (and /healthz, its old name).
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
    /// Log lines as text (colour only on a terminal) or as one JSON object per line.
    #[arg(long = "log-format", env = "CORONER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A container whose init dies this many times within the crash-loop window is in a loop:
    /// one Event tells its deaths.
    #[arg(long = "crash-loop-deaths", env = "CORONER_CRASH_LOOP_DEATHS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..))]
    pub crash_loop_deaths: u32,
    /// The crash-loop window in seconds: deaths this close make a loop; this long without one
    /// ends it.
    #[arg(long = "crash-loop-window-seconds", env = "CORONER_CRASH_LOOP_WINDOW_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub crash_loop_window_seconds: u64,
    /// At most one API write per looping container per this many seconds.
    #[arg(long = "crash-loop-update-seconds", env = "CORONER_CRASH_LOOP_UPDATE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub crash_loop_update_seconds: u64,
    /// Which deaths get a Kubernetes Event on their pod: abnormal ones and crash loops
    /// (warning), also each `Completed` one (all), or none (off).
    #[arg(long, env = "CORONER_EVENTS", value_enum, default_value_t = EventTypes::Warning)]
    pub events: EventTypes,
    /// Only pods in these namespaces get Events (comma-separated; default: every namespace).
    #[arg(long, env = "CORONER_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Pods in these namespaces get no Events (comma-separated); wins over `--namespaces`.
    #[arg(
        long = "exclude-namespaces",
        env = "CORONER_EXCLUDE_NAMESPACES",
        value_delimiter = ','
    )]
    pub exclude_namespaces: Vec<String>,
    /// Seconds a pod's series stay at /metrics after the pod was last known to exist (in the pod
    /// index; standalone, at its last death).
    #[arg(long = "metrics-retention-seconds", env = "CORONER_METRICS_RETENTION_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub metrics_retention_seconds: u64,
    /// Who may read /v1/terminations: anyone who reaches the port (off), or a caller whose
    /// bearer token and access the API server reviews (kubernetes; docs/access.md).
    #[arg(long = "http-auth", env = "CORONER_HTTP_AUTH", value_enum, default_value_t = AuthMode::Off)]
    pub http_auth: AuthMode,
    /// The same for /metrics (kubernetes: `get` on the non-resource URL /metrics).
    #[arg(long = "metrics-auth", env = "CORONER_METRICS_AUTH", value_enum, default_value_t = AuthMode::Off)]
    pub metrics_auth: AuthMode,
    /// The agent's own pod, whose `pods/proxy` access the guard checks (default: the hostname).
    #[arg(long = "pod-name", env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The agent pod's namespace (default: the service account's namespace).
    #[arg(long = "pod-namespace", env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// on: failed execs (the path and errno behind an exit 126/127) are captured; off: the
    /// syscall tracepoints that capture them are not attached, and no syscall on the node
    /// pays for them (exit codes 126/127 still give the verdict, without `exec_failure`).
    #[arg(long = "exec-failures", env = "CORONER_EXEC_FAILURES", value_enum, default_value_t = Switch::On)]
    pub exec_failures: Switch,
    /// Size of the kernel → user ring buffer in KiB: a power of two, at least a page. Hidden:
    /// the default suits every node; tests shrink it to make the kernel drop events.
    #[arg(long = "ring-buffer-kib", hide = true, value_parser = ring_buffer_kib)]
    pub ring_buffer_kib: Option<u32>,
}

/// A capture the operator may turn off.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

/// How log lines are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The largest ring buffer accepted: 1 GiB, far beyond any need, far below the kernel's limit.
const MAX_RING_BUFFER_KIB: u32 = 1 << 20;

fn ring_buffer_kib(value: &str) -> Result<u32, String> {
    let kib: u32 = value
        .parse()
        .map_err(|e| format!("{value:?} is not a number of KiB: {e}"))?;
    // SAFETY: sysconf has no preconditions.
    let page_kib = u32::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) } / 1024)
        .unwrap_or(4)
        .max(1);
    if !kib.is_power_of_two() || kib < page_kib || kib > MAX_RING_BUFFER_KIB {
        return Err(format!(
            "a power of two KiB from a page ({page_kib}) to {MAX_RING_BUFFER_KIB} is needed"
        ));
    }
    Ok(kib)
}

/// Where a pod's service account token's namespace is mounted.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl Args {
    /// The crash-loop flags.
    #[must_use]
    pub fn crash_loop(&self) -> crate::kube::LoopOptions {
        crate::kube::LoopOptions {
            window: std::time::Duration::from_secs(self.crash_loop_window_seconds),
            min_deaths: self.crash_loop_deaths,
            interval: std::time::Duration::from_secs(self.crash_loop_update_seconds),
            ..crate::kube::LoopOptions::default()
        }
    }

    /// The namespace flags.
    #[must_use]
    pub fn event_namespaces(&self) -> NamespaceFilter {
        NamespaceFilter::new(
            self.namespaces.iter().cloned(),
            self.exclude_namespaces.iter().cloned(),
        )
    }

    /// The metrics flags.
    #[must_use]
    pub fn metrics(&self) -> MetricsConfig {
        MetricsConfig {
            retention: std::time::Duration::from_secs(self.metrics_retention_seconds),
            ..MetricsConfig::default()
        }
    }

    /// `--node-name`, or the hostname.
    #[must_use]
    pub fn node(&self) -> String {
        self.node_name.clone().unwrap_or_else(hostname)
    }

    /// `--pod-name`, or the hostname (a pod's hostname is its name unless the spec says
    /// otherwise).
    #[must_use]
    pub fn pod(&self) -> String {
        self.pod_name.clone().unwrap_or_else(hostname)
    }

    /// `--pod-namespace`, or the service account's; `None` outside a pod.
    #[must_use]
    pub fn pod_namespace(&self) -> Option<String> {
        self.pod_namespace.clone().or_else(|| {
            let ns = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok()?;
            Some(ns.trim().to_owned()).filter(|ns| !ns.is_empty())
        })
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    String::from_utf8_lossy(agent_ebpf::c_str_bytes(&buf)).into_owned()
}
