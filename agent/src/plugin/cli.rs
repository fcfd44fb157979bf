//! The command line, as kubectl passes it to a plugin (`kubectl coroner -n NS why pod/NAME`:
//! the flags may come before or after the subcommand). docs/plugin.md lists every flag; the
//! test `docs_contract` holds the two together.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-coroner",
    about = "Why did it die? The cause of death of a pod's containers, from coroner"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// The namespace; the kubeconfig context's by default.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig file; `KUBECONFIG` or ~/.kube/config by default (in-cluster config as a
    /// last resort).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// `table` (for people) or `json` (the records as the agent wrote them).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The namespace of the coroner agents (deploy/).
    #[arg(long, global = true, default_value = "coroner")]
    pub agent_namespace: String,
    /// The labels of the agent pods (a label selector).
    #[arg(long, global = true, default_value = "app.kubernetes.io/name=coroner")]
    pub agent_selector: String,
    /// The agent's HTTP port; the agent pod's `http-metrics` port by default.
    #[arg(long, global = true)]
    pub agent_port: Option<u16>,
    /// The bearer token for the agents (sent through the API server's pod proxy in
    /// `X-Coroner-Authorization`); the kubeconfig user's token by default. For a user who
    /// authenticates with a client certificate, e.g. `$(kubectl create token NAME)`.
    #[arg(
        long,
        global = true,
        env = "CORONER_AGENT_TOKEN",
        hide_env_values = true
    )]
    pub agent_token: Option<String>,
    /// The `reportingController` of coroner's Events (what the agent writes).
    #[arg(long, global = true, default_value = "coroner")]
    pub reporting_controller: String,
    /// Seconds to wait for each answer.
    #[arg(long, global = true, default_value_t = 10)]
    pub request_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The deaths of a pod's (or a workload's pods') containers, newest first.
    Why {
        /// `pod/NAME` (or `NAME`), `deployment/NAME`, `statefulset/NAME`, `daemonset/NAME`,
        /// `job/NAME`.
        target: String,
        /// Only this container.
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Every record: also the deaths of processes other than the containers' own that
        /// exited cleanly, and the runtime's and the sandbox's.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}
