use std::time::Duration;

use anyhow::Context as _;
use coroner::{events, probes::Probes};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let probes = Probes::load().context("loading the kernel probes")?;
    let mut reader = events::EventReader::new(probes.events);
    loop {
        reader.poll(Duration::from_millis(100), |e| {
            println!("{}", events::describe(&e))
        });
    }
}
