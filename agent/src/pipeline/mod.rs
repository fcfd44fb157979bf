//! The agent, assembled: probes → kernel stage (events, correlation, cgroups) → labelling
//! (Kubernetes) → sink (metrics, JSON lines, recent records, Events), plus the HTTP server.

pub mod kallsyms;
pub mod kernel;
pub mod labelling;
pub mod lookup;
pub mod privileges;
pub mod sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::cgroup::{CgroupResolver, MemoryHierarchy};
use crate::cli::{Args, Switch};
use crate::correlate::{BootClock, Correlator, CorrelatorConfig, page_size};
use crate::events::EventReader;
use crate::export::{
    Access, AccessConfig, AuthMode, HttpState, JsonLines, KubeReviewer, Metrics, Readiness,
    RecentRecords,
};
use crate::kube::{self, KubeClient, KubeOptions};
use crate::probes::{LoadOptions, Probes};
use crate::record::TerminationRecord;

/// Records between the kernel stage and labelling: seconds of a death storm.
const RECORD_CHANNEL: usize = 16_384;
/// Records waiting for their pod metadata at once; beyond, the channel fills (and counts).
const LABELLING_IN_FLIGHT: usize = 1_024;
const RECENT_RECORDS: usize = 1_024;

/// What only a privileged process can get: taken before any other thread exists, after
/// which every capability is dropped (see [`privileges`]).
pub struct Privileged {
    probes: Probes,
    oom_symbols: Option<kallsyms::OomSymbols>,
    listener: std::net::TcpListener,
    json: Option<JsonLines>,
    hierarchy: MemoryHierarchy,
}

impl Privileged {
    /// Drops every capability this process will not need again (see [`privileges::drop_all`]);
    /// a read of the kernel counters is the map operation tried without privilege.
    pub fn drop_privileges(&self) {
        let counters = &self.probes;
        privileges::drop_all(&|| counters.try_counter(agent_ebpf::counter::EMITTED).is_ok());
    }

    /// Binds the listener (a port below 1024 needs a capability), opens the output, finds the
    /// memory hierarchy, loads and attaches the probes and reads kallsyms. Call it on the main
    /// thread before the async runtime starts; then call [`Privileged::drop_privileges`].
    pub fn acquire(args: &Args) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(args.listen)
            .with_context(|| format!("listening on {}", args.listen))?;
        listener.set_nonblocking(true)?;
        let json = args
            .events_json
            .as_deref()
            .map(JsonLines::open)
            .transpose()
            .context("opening --events-json")?;
        let hierarchy = MemoryHierarchy::detect(&args.cgroup_root)
            .context("finding the memory cgroup hierarchy")?;
        let mut probes = Probes::load_with(&LoadOptions {
            ring_buffer_bytes: args.ring_buffer_kib.map(|kib| kib << 10),
            exec_failures: args.exec_failures == Switch::On,
        })
        .context("loading the kernel probes")?;
        probes.seed_roles(&crate::cgroup::running_containers(
            &hierarchy,
            std::path::Path::new("/proc"),
        ));
        let oom_symbols = kallsyms::OomSymbols::load();
        if oom_symbols.is_none() {
            warn!(
                "/proc/kallsyms hides addresses: OOM scope is decided by the memory cgroup limits sampled at the kill"
            );
        }
        Ok(Self {
            probes,
            oom_symbols,
            listener,
            json,
            hierarchy,
        })
    }
}

/// Runs until `SIGTERM` or `SIGINT`, then detaches, flushes and returns.
pub async fn run(args: Args, privileged: Privileged) -> anyhow::Result<()> {
    let Privileged {
        mut probes,
        oom_symbols,
        listener,
        json,
        hierarchy,
    } = privileged;
    let node = args.node();
    let metrics = Metrics::new(args.metrics());
    let recent = RecentRecords::new(RECENT_RECORDS);
    let readiness = Readiness::not_ready("starting");
    for probe in &probes.status {
        metrics.set_probe_attached(probe.name, probe.attached);
    }
    // Required probes that failed stopped the start already: what is missing here is optional.
    if let Err(why) = probes.readiness() {
        warn!("running degraded: {why}");
        readiness.set_degraded(why);
    }

    let kube = connect_kube(&args, &node, &metrics).await?;
    let access = http_access(&args, kube.as_ref(), &metrics)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let events = probes.take_events().context("the ring buffer")?;
    let reader = match probes.take_reader_flag() {
        Some(flag) => EventReader::with_parking(events, flag),
        None => EventReader::new(events),
    };
    let host_memcgs = probes.host_memcgs.take();
    let clock = BootClock::now().context("reading the clocks")?;
    let correlator = Correlator::new(CorrelatorConfig::new(
        node.clone(),
        page_size().unwrap_or(4096),
        clock,
    ))?;

    let (records_tx, records_rx) = mpsc::channel::<TerminationRecord>(RECORD_CHANNEL);
    let shutdown = Arc::new(AtomicBool::new(false));
    let stage = kernel::KernelStage {
        probes,
        reader,
        correlator,
        lookup: lookup::ResolverLookup::new(
            CgroupResolver::new(hierarchy),
            host_memcgs,
            oom_symbols,
        ),
        records: records_tx,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        trace_events: args.trace_events,
        heartbeat: readiness.heartbeat("kernel-events"),
    };
    let kernel_thread = std::thread::Builder::new()
        .name("kernel-events".into())
        .spawn(move || stage.run())?;

    // Labelling may wait seconds per record (a container id not yet in the pod status): each
    // such record waits in a task of its own, bounded; the rest goes straight to the sink.
    let sink = sink::Sink {
        metrics: metrics.clone(),
        recent: recent.clone(),
        json,
        kube: kube.clone(),
        print: args.print,
    };
    let labelling = labelling::spawn(
        records_rx,
        sink,
        kube.clone(),
        metrics.clone(),
        LABELLING_IN_FLIGHT,
    );

    let housekeeping = spawn_housekeeping(metrics.clone());
    readiness.watch_task("labelling", labelling.abort_handle());
    readiness.watch_task("housekeeping", housekeeping.abort_handle());
    // Probes attached, every stage running: records are being made. Only now is the port
    // served (it is bound since the start: a client waits in the backlog, never sees a
    // refusal), so no probe sees a half-started agent.
    readiness.set_ready();
    info!(listen = %args.listen, node, "coroner running");
    let http_state = HttpState {
        metrics: metrics.clone(),
        recent,
        readiness: readiness.clone(),
    };
    let (stop_http, http) = spawn_http(listener, http_state, access);

    wait_for_termination().await;
    info!("terminating: detaching probes and flushing records");
    readiness.set_not_ready("shutting down");
    shutdown.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || kernel_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("kernel stage panicked"))?;
    // The kernel stage dropped its sender: labelling ends when its queue is empty and every
    // in-flight lookup has finished (bounded by the label wait).
    let sink = tokio::time::timeout(labelling::SHUTDOWN_WAIT, labelling).await;
    if let Some(kube) = sink.ok().and_then(Result::ok).and_then(|s| s.kube) {
        kube.flush_events(Duration::from_secs(3)).await;
    }
    housekeeping.abort();
    let _ = stop_http.send(());
    let _ = http.await;
    info!("stopped");
    Ok(())
}

/// The HTTP server, until the sender is used (or dropped).
fn spawn_http(
    listener: tokio::net::TcpListener,
    state: HttpState,
    access: Access,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::export::serve_guarded(
        listener,
        state,
        access,
        async move {
            let _ = stopped.await;
        },
        crate::export::HttpLimits::default(),
    ));
    (stop, task)
}

/// Who may read what (`--http-auth`, `--metrics-auth`): reviews go through the agent's API
/// client, so either needs the API server.
fn http_access(
    args: &Args,
    kube: Option<&KubeClient>,
    metrics: &Metrics,
) -> anyhow::Result<Access> {
    if args.http_auth == AuthMode::Off && args.metrics_auth == AuthMode::Off {
        return Ok(Access::open());
    }
    let kube = kube.context(
        "--http-auth/--metrics-auth kubernetes needs the API server, and --kube found none",
    )?;
    let namespace = args.pod_namespace().context(
        "--http-auth/--metrics-auth kubernetes: --pod-namespace is needed outside a pod",
    )?;
    let pod = args.pod();
    info!(
        api = ?args.http_auth,
        metrics = ?args.metrics_auth,
        pod = %format!("{namespace}/{pod}"),
        "HTTP access reviewed by the API server"
    );
    let config = AccessConfig::new(args.http_auth, args.metrics_auth, &namespace, &pod);
    let reviewer = Arc::new(KubeReviewer::new(kube.api_client()));
    Ok(Access::new(config, reviewer, metrics.clone()))
}

/// The API side, if there is one, with its counters on the metrics.
async fn connect_kube(
    args: &Args,
    node: &str,
    metrics: &Metrics,
) -> anyhow::Result<Option<KubeClient>> {
    let mut options = KubeOptions::new(node.to_owned());
    options.events.crash_loop = args.crash_loop();
    options.events.types = args.events;
    options.events.namespaces = args.event_namespaces();
    let kube = kube::connect(args.kube, options).await.context("--kube")?;
    if let Some(kube) = &kube {
        metrics.watch_kube(kube.stats_reader());
        metrics.watch_pods(kube.pod_presence());
    }
    Ok(kube)
}

/// Every 30 s (a quarter of the retention when that is shorter, at least a second): drop the
/// series of pods gone for the retention. A pod is found gone up to an interval late.
fn spawn_housekeeping(metrics: Metrics) -> tokio::task::JoinHandle<()> {
    let every = (metrics.retention() / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        // The first tick is immediate: nothing is old yet.
        tick.tick().await;
        loop {
            tick.tick().await;
            metrics.sweep(std::time::Instant::now());
        }
    })
}

async fn wait_for_termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
