//! `kubectl coroner`: the kubectl plugin (`kubectl-coroner`) that answers `why pod/NAME` and
//! `why deployment/NAME` with the deaths of the pod's containers, newest first (docs/plugin.md).
//!
//! The records come from the coroner agent on each pod's node, through the API server's pod
//! proxy ([`agent`]); where no agent has them, from the Events coroner posted on the pod
//! ([`events`]). Nothing of our own aggregates: the agents' rings and the API's Events are the
//! only stores. The kubeconfig is read as kubectl reads it.

pub mod agent;
pub mod cli;
pub mod error;
pub mod events;
pub mod format;
pub mod target;
pub mod token;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::export::recent::RecentFilter;
use crate::record::{Role, TerminationRecord};
use agent::{AgentLocator, AgentProblem};
pub use cli::{Args, Command, Output};
use error::PluginError;
use events::DeathEvent;
use target::{PodInfo, Target};

/// One death as the agent wrote it (`json`, every field kept) and as this version reads it.
#[derive(Clone, Debug)]
pub struct Death {
    pub record: TerminationRecord,
    pub json: Value,
}

/// Where a node's records came from, or why they did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub node: String,
    pub agent: Option<String>,
    pub records: usize,
    pub problem: Option<String>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.agent, &self.problem) {
            (_, Some(problem)) => write!(f, "node {}: {problem}", self.node),
            (Some(agent), None) => write!(
                f,
                "node {}: agent {agent}, {} record{}",
                self.node,
                self.records,
                if self.records == 1 { "" } else { "s" }
            ),
            (None, None) => write!(f, "node {}", self.node),
        }
    }
}

/// The whole answer, before it is printed.
#[derive(Clone, Debug)]
pub struct Report {
    /// `pod NS/NAME`, `Deployment NS/NAME (3 pods)`.
    pub target: String,
    pub namespace: String,
    pub pods: Vec<PodInfo>,
    pub sources: Vec<Source>,
    pub notes: Vec<String>,
    /// Newest first.
    pub deaths: Vec<Death>,
    /// coroner's Events of the pods no agent had records of, newest first.
    pub events: Vec<DeathEvent>,
    /// Name the pod of each death (a workload has several).
    pub show_pod: bool,
}

/// The binary's `main`: prints the answer or the error; exit 1 on an error, 2 on bad usage.
#[must_use]
pub fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            match args.output {
                Output::Table => print!("{}", format::table(&report)),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&format::json(&report)).unwrap_or_default()
                ),
            }
            ExitCode::SUCCESS
        }
        Err(PluginError::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The answer for `args`.
pub async fn run(args: &Args) -> Result<Report, PluginError> {
    let Command::Why {
        target,
        container,
        all,
    } = &args.command;
    let target: Target = target.parse()?;
    let timeout = Duration::from_secs(args.request_timeout.max(1));
    let (client, user) = client(args, timeout).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let resolved = target::resolve(&client, &namespace, &target).await?;
    let locator = AgentLocator {
        namespace: args.agent_namespace.clone(),
        selector: args.agent_selector.clone(),
        port: args.agent_port,
        timeout,
        token: match args.agent_token.as_deref() {
            Some(given) => token::Bearer::new(given).ok_or(token::NoToken::NotBearer),
            None => token::of_user(&user, timeout).await,
        },
    };
    let show_pod = target.kind != target::Kind::Pod;
    let mut report = Report {
        target: describe(&target, &namespace, &resolved.pods),
        namespace: namespace.clone(),
        pods: resolved.pods.clone(),
        sources: Vec::new(),
        notes: Vec::new(),
        deaths: Vec::new(),
        events: Vec::new(),
        show_pod,
    };
    // The filter each agent applies, applied again here: an older agent ignores the filters it
    // does not know and would answer with more.
    let filters = filters(&namespace, container.as_deref(), &resolved);
    for (node, node_filters) in &filters {
        let mut source = Source {
            node: node.clone(),
            agent: None,
            records: 0,
            problem: None,
        };
        for filter in node_filters {
            match locator.terminations(&client, node, &query(filter)).await {
                Ok(answer) => {
                    source.agent = Some(answer.agent);
                    for json in answer.records {
                        let Ok(record) = serde_json::from_value::<TerminationRecord>(json.clone())
                        else {
                            report.notes.push(format!(
                                "node {node}: a record this version cannot read was skipped"
                            ));
                            continue;
                        };
                        if filter.matches(&record) && (*all || shown(&record)) {
                            source.records += 1;
                            report.deaths.push(Death { record, json });
                        }
                    }
                }
                Err(problem) => {
                    source.problem = Some(match problem {
                        AgentProblem::NoAgent => format!(
                            "no coroner agent (no pod labelled {} in namespace {}); \
                             is the DaemonSet on this node?",
                            locator.selector, locator.namespace
                        ),
                        other => other.to_string(),
                    });
                    break;
                }
            }
        }
        report.sources.push(source);
    }
    for pod in resolved.pods.iter().filter(|p| p.node.is_none()) {
        report
            .notes
            .push(format!("pod {} is not scheduled on a node", pod.name));
    }
    report.deaths.sort_by(|a, b| {
        b.record
            .time
            .cmp(&a.record.time)
            .then(a.record.pid.cmp(&b.record.pid))
    });
    fall_back_to_events(
        &client,
        args,
        &target,
        &namespace,
        container.as_deref(),
        &mut report,
    )
    .await?;
    Ok(report)
}

/// coroner's Events on each pod no agent had a record of; a pod that does not exist has only
/// those, and without any it is an error.
async fn fall_back_to_events(
    client: &Client,
    args: &Args,
    target: &Target,
    namespace: &str,
    container: Option<&str>,
    report: &mut Report,
) -> Result<(), PluginError> {
    let mut names: Vec<String> = report
        .pods
        .iter()
        .filter(|p| {
            !report
                .deaths
                .iter()
                .any(|d| d.record.pod_uid.as_deref() == Some(&p.uid))
        })
        .map(|p| p.name.clone())
        .collect();
    let missing_pod = target.kind == target::Kind::Pod && report.pods.is_empty();
    if missing_pod {
        names.push(target.name.clone());
    }
    for name in names {
        match events::of_pod(client, namespace, &name, &args.reporting_controller).await {
            Ok(found) => report.events.extend(
                found
                    .into_iter()
                    .filter(|e| container.is_none_or(|c| e.container.as_deref() == Some(c))),
            ),
            Err(e) if missing_pod => return Err(e),
            Err(e) => report.notes.push(format!("no Events either: {e}")),
        }
    }
    events::sort_newest_first(&mut report.events);
    if missing_pod {
        if report.events.is_empty() {
            return Err(PluginError::NotFound {
                kind: "pod",
                namespace: namespace.to_owned(),
                name: target.name.clone(),
                hint: ", and coroner posted no Events about a pod of that name",
            });
        }
        report
            .notes
            .push("the pod does not exist (any more): only coroner's Events tell".to_owned());
    }
    Ok(())
}

/// The default selection: the containers' deaths (their inits), and the other processes'
/// abnormal deaths; never the runtime's helpers nor the sandbox.
fn shown(r: &TerminationRecord) -> bool {
    match r.role {
        Role::Init => true,
        Role::Child | Role::Exec => r.reason.is_abnormal(),
        Role::Runtime | Role::Sandbox => false,
    }
}

/// Per node, the filters that select the target's records there: a pod's name, or the
/// workload its records name (which finds the deaths of its pods replaced since).
fn filters(
    namespace: &str,
    container: Option<&str>,
    resolved: &target::Resolved,
) -> BTreeMap<String, Vec<RecentFilter>> {
    let base = RecentFilter {
        namespace: Some(namespace.to_owned()),
        container: container.map(str::to_owned),
        ..RecentFilter::default()
    };
    let mut by_node: BTreeMap<String, Vec<RecentFilter>> = BTreeMap::new();
    for pod in &resolved.pods {
        let Some(node) = &pod.node else { continue };
        let filter = match &resolved.workload {
            Some((kind, name)) => RecentFilter {
                owner_kind: Some(kind.as_str().to_owned()),
                owner_name: Some(name.clone()),
                ..base.clone()
            },
            None => RecentFilter {
                pod: Some(pod.name.clone()),
                ..base.clone()
            },
        };
        let filters = by_node.entry(node.clone()).or_default();
        if !filters.contains(&filter) {
            filters.push(filter);
        }
    }
    by_node
}

fn query(f: &RecentFilter) -> Vec<(&'static str, &str)> {
    [
        ("namespace", &f.namespace),
        ("pod", &f.pod),
        ("pod_uid", &f.pod_uid),
        ("container", &f.container),
        ("owner_kind", &f.owner_kind),
        ("owner_name", &f.owner_name),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect()
}

fn describe(target: &Target, namespace: &str, pods: &[PodInfo]) -> String {
    match target.kind {
        target::Kind::Pod => match pods.first() {
            Some(PodInfo {
                node: Some(node), ..
            }) => format!("pod {namespace}/{} on node {node}", target.name),
            _ => format!("pod {namespace}/{}", target.name),
        },
        kind => format!(
            "{} {namespace}/{} ({})",
            kind.as_str(),
            target.name,
            match pods.len() {
                1 => "1 pod".to_owned(),
                n => format!("{n} pods"),
            }
        ),
    }
}

/// A client as kubectl would make one: `--kubeconfig`, `--context`, else the usual search;
/// and the user it authenticates as (whose token the agent's guard needs too).
async fn client(
    args: &Args,
    timeout: Duration,
) -> Result<(Client, kube::config::AuthInfo), PluginError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| PluginError::Config(e.to_string()))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| PluginError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| PluginError::Config(e.to_string()))?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    // kube retries 429/503/504 with backoff by default; kubectl does not, and an unreachable
    // agent (the proxy's 503) is an answer to give at once, not to wait out.
    config.default_retry = false;
    let user = config.auth_info.clone();
    let client = Client::try_from(config).map_err(|e| PluginError::Config(e.to_string()))?;
    Ok((client, user))
}
