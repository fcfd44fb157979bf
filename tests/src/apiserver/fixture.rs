//! An agent-side [`KubeClient`] connected to a double the way production connects: through
//! `coroner::kube::connect` and a kubeconfig.

use std::time::Duration;

use coroner::kube::{KubeClient, KubeMode, KubeOptions, connect};

use super::ApiServer;

pub const NODE: &str = "node-a";

/// Options for `node` reading the double's kubeconfig; lookups wait 2 s by default.
#[must_use]
pub fn options(server: &ApiServer, node: &str) -> KubeOptions {
    let mut options = KubeOptions::new(node);
    options.kubeconfig = Some(server.kubeconfig().to_path_buf());
    options.label_wait = Duration::from_secs(2);
    options
}

/// `connect(On, options)`; panics (a test failure) when it does not give a client.
pub async fn connect_on(options: KubeOptions) -> KubeClient {
    match connect(KubeMode::On, options).await {
        Ok(Some(client)) => client,
        Ok(None) => panic!("--kube on gave no client"),
        Err(e) => panic!("--kube on: {e}"),
    }
}

/// A double that is up, and a client of `NODE` whose watch has synced.
pub async fn synced() -> (ApiServer, KubeClient) {
    let server = ApiServer::start().expect("the double starts");
    let client = connect_on(options(&server, NODE)).await;
    assert!(
        client.wait_watch_up(Duration::from_secs(5)).await,
        "watch synced: {:?}",
        client.stats()
    );
    assert!(
        server
            .wait_until(Duration::from_secs(5), |s| s.open_watches() == 1)
            .await,
        "the watch is open"
    );
    (server, client)
}

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
