//! `--kube auto|on|off` and where the config comes from. The environment is the process's, so
//! this binary has a single test that sets it before any thread starts.

use std::time::Duration;

use coroner::kube::{KubeError, KubeMode, KubeOptions, LabelOutcome, connect};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::fixture::{NODE, init_logs};
use coroner_tests::apiserver::objects::{pod, with_running};

fn set_env(key: &str, value: Option<&std::ffi::OsStr>) {
    // SAFETY: called from the test's only thread, before the runtime starts its workers.
    unsafe {
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
}

#[test]
fn modes_and_config_sources() {
    init_logs();
    let home = std::env::temp_dir().join(format!("coroner-kube-modes-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    set_env("HOME", Some(home.as_os_str()));
    for var in [
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
    ] {
        set_env(var, None);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = KubeOptions::new(NODE);
        assert!(
            connect(KubeMode::Off, options.clone())
                .await
                .unwrap()
                .is_none()
        );
        // No in-cluster config, no KUBECONFIG, no ~/.kube/config.
        assert!(
            connect(KubeMode::Auto, options.clone())
                .await
                .unwrap()
                .is_none()
        );
        let err = connect(KubeMode::On, options.clone()).await.unwrap_err();
        assert!(matches!(err, KubeError::NoConfig(_)), "{err}");

        let mut broken = options.clone();
        broken.kubeconfig = Some(home.join("missing.kubeconfig"));
        let err = connect(KubeMode::On, broken).await.unwrap_err();
        assert!(matches!(err, KubeError::Kubeconfig { .. }), "{err}");

        // KUBECONFIG, as an operator running the agent by hand sets it.
        let server = ApiServer::start().unwrap();
        server.put_pod(&with_running(
            pod("shop", "web", "u-web", NODE),
            "app",
            "c-web",
        ));
        set_env("KUBECONFIG", Some(server.kubeconfig().as_os_str()));
        let client = connect(KubeMode::Auto, options)
            .await
            .unwrap()
            .expect("a client");
        let got = client.label("u-web", "c-web", Duration::from_secs(5)).await;
        assert_eq!(got.outcome, LabelOutcome::Complete);
    });
    let _ = std::fs::remove_dir_all(&home);
}
