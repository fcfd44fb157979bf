//! `coroner`: the node agent. Everything but argument parsing and logging set-up lives in
//! the library (`coroner::pipeline`), so tests drive the same code.

use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let args = coroner::cli::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(coroner::pipeline::run(args))
}
