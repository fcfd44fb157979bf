//! `coroner`: the node agent. Everything but argument parsing and logging set-up lives in
//! the library (`coroner::pipeline`), so tests drive the same code.

use std::io::IsTerminal as _;

use clap::Parser as _;
use coroner::cli::LogFormat;

fn main() -> anyhow::Result<()> {
    let args = coroner::cli::Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match args.log_format {
        // Colour codes only for a person at a terminal, never in a log pipeline's file.
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    // Privileged set-up first, on this thread alone, then every capability is dropped before
    // the runtime starts its threads (they inherit the empty sets).
    let privileged = coroner::pipeline::Privileged::acquire(&args)?;
    privileged.drop_privileges();
    // Loading parsed the kernel's whole BTF (aya's parser, then ours): tens of MiB freed now,
    // which glibc would otherwise keep in the heap for good.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(coroner::pipeline::run(args, privileged))
}
