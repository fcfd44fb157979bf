//! Who may read the agent's HTTP API: the real agent with `--http-auth kubernetes` (and
//! `--metrics-auth kubernetes`) against the API server double, which answers `TokenReview`
//! and `SubjectAccessReview` with the test's tokens and grants. Allowed, denied (403),
//! unauthenticated (401), the API server down (503: fail closed, while /metrics keeps being
//! served to Prometheus), the cache (a second request reviews nothing), the health endpoints
//! open. Needs root (the agent loads its probes): run through `cargo xtask test`.

use coroner_tests::agent::bare::{Bare, Started};
use coroner_tests::agent::{Agent, Options};
use coroner_tests::apiserver::ApiServer;
use coroner_tests::apiserver::access_review::Grant;
use coroner_tests::exposition::metric;
use coroner_tests::http::{Response, exchange};

const NS: &str = "coroner";
const POD: &str = "coroner-x7k2p";
const PROXY_HEADER: &str = "X-Coroner-Authorization";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start(api: &ApiServer, auth: &[&str]) -> Agent {
    let mut args: Vec<std::ffi::OsString> = ["--pod-name", POD, "--pod-namespace", NS]
        .iter()
        .map(Into::into)
        .collect();
    args.extend(auth.iter().map(Into::into));
    Agent::start_with(&Options {
        kube: Some("on".into()),
        env: vec![("KUBECONFIG".into(), api.kubeconfig().into())],
        args,
        ..Options::default()
    })
    .unwrap()
}

/// `GET path` with extra header lines (each ending in `\r\n`).
fn get(agent: &Agent, path: &str, headers: &str) -> Response {
    let addr = agent.addr();
    exchange(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n"),
    )
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn pod_proxy(user: &str) -> Grant {
    Grant::Resource {
        user: user.into(),
        verb: "get".into(),
        namespace: NS.into(),
        resource: "pods/proxy".into(),
    }
}

fn decisions(agent: &Agent, endpoint: &str, decision: &str) -> Option<f64> {
    let text = get(agent, "/metrics", "").body;
    metric(
        &text,
        "coroner_http_auth_decisions_total",
        &[("endpoint", endpoint), ("decision", decision)],
    )
}

#[test]
fn terminations_need_a_reviewed_token_and_pods_proxy_on_the_agent_pod() {
    let rt = runtime();
    let _enter = rt.enter();
    let api = ApiServer::start().unwrap();
    api.add_token("t-alice", "alice", &["sre"]);
    api.add_token("t-bob", "bob", &[]);
    api.add_token("t-carol", "carol", &[]);
    api.grant(pod_proxy("alice"));
    api.grant(pod_proxy("carol"));
    let agent = start(&api, &["--http-auth", "kubernetes"]);

    // The kubelet's probes and Prometheus carry no token.
    for path in ["/livez", "/readyz", "/healthz", "/metrics"] {
        let reply = get(&agent, path, "");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    let none = get(&agent, "/v1/terminations", "");
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(none.body.contains("bearer token"), "{}", none.body);
    let bad = get(&agent, "/v1/terminations", &bearer("t-mallory"));
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert!(
        bad.body.contains("did not accept the token"),
        "{}",
        bad.body
    );
    let bob = get(&agent, "/v1/terminations", &bearer("t-bob"));
    assert_eq!(bob.status, 403, "{}", bob.body);
    assert!(
        bob.body
            .contains(&format!("\"bob\" may not get pods/proxy {NS}/{POD}")),
        "{}",
        bob.body
    );

    let alice = get(&agent, "/v1/terminations", &bearer("t-alice"));
    assert_eq!(alice.status, 200, "{}", alice.body);
    assert!(serde_json::from_str::<Vec<serde_json::Value>>(&alice.body).is_ok());
    // The review the API server got: the caller as the TokenReview named it, the agent's pod.
    let review = api
        .access_reviews()
        .into_iter()
        .find(|r| r["user"] == "alice")
        .expect("alice's access was reviewed");
    assert_eq!(
        review["resourceAttributes"],
        serde_json::json!({"verb": "get", "namespace": NS, "group": "", "version": "v1",
                           "resource": "pods", "subresource": "proxy", "name": POD}),
        "{review}"
    );
    assert_eq!(
        review["groups"],
        serde_json::json!(["system:authenticated", "sre"])
    );

    // Cached: neither review is asked again, whichever header carries the token.
    let (tokens, accesses) = (api.token_reviews().len(), api.access_reviews().len());
    for headers in [
        bearer("t-alice"),
        format!("{PROXY_HEADER}: Bearer t-alice\r\n"),
    ] {
        assert_eq!(get(&agent, "/v1/terminations", &headers).status, 200);
    }
    assert_eq!(api.token_reviews().len(), tokens, "token review cached");
    assert_eq!(api.access_reviews().len(), accesses, "access review cached");

    // The API server down: the API fails closed, Prometheus and the probes go on.
    rt.block_on(api.down());
    let carol = get(&agent, "/v1/terminations", &bearer("t-carol"));
    assert_eq!(carol.status, 503, "{}", carol.body);
    assert!(
        carol.body.contains("cannot check the caller"),
        "{}",
        carol.body
    );
    for path in ["/metrics", "/livez", "/readyz"] {
        assert_eq!(
            get(&agent, path, "").status,
            200,
            "{path} with the API down"
        );
    }
    // An unanswered review is not cached: carol is served once the API server is back.
    api.up().unwrap();
    let carol = get(&agent, "/v1/terminations", &bearer("t-carol"));
    assert_eq!(carol.status, 200, "{}", carol.body);

    assert_eq!(decisions(&agent, "terminations", "allowed"), Some(4.0));
    assert_eq!(
        decisions(&agent, "terminations", "unauthenticated"),
        Some(2.0)
    );
    assert_eq!(decisions(&agent, "terminations", "forbidden"), Some(1.0));
    assert_eq!(decisions(&agent, "terminations", "unavailable"), Some(1.0));
    let metrics = get(&agent, "/metrics", "").body;
    let cache = |review: &str, result: &str| {
        metric(
            &metrics,
            "coroner_http_auth_cache_total",
            &[("review", review), ("result", result)],
        )
    };
    assert_eq!(cache("token", "hit"), Some(2.0));
    assert_eq!(cache("access", "hit"), Some(2.0));
    agent.stop().unwrap();
}

#[test]
fn metrics_auth_guards_metrics_with_the_non_resource_url() {
    let rt = runtime();
    let _enter = rt.enter();
    let api = ApiServer::start().unwrap();
    api.add_token(
        "t-prometheus",
        "system:serviceaccount:monitoring:prometheus",
        &[],
    );
    api.add_token("t-eve", "eve", &[]);
    api.grant(Grant::Path {
        user: "system:serviceaccount:monitoring:prometheus".into(),
        verb: "get".into(),
        path: "/metrics".into(),
    });
    let agent = start(&api, &["--metrics-auth", "kubernetes"]);
    assert_eq!(get(&agent, "/metrics", "").status, 401);
    let eve = get(&agent, "/metrics", &bearer("t-eve"));
    assert_eq!(eve.status, 403, "{}", eve.body);
    assert!(eve.body.contains("may not get /metrics"), "{}", eve.body);
    let scrape = get(&agent, "/metrics", &bearer("t-prometheus"));
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert!(scrape.body.contains("coroner_build_info"));
    // --http-auth stays off: the API and the probes are open.
    for path in ["/v1/terminations", "/livez", "/readyz"] {
        assert_eq!(get(&agent, path, "").status, 200, "{path}");
    }
    let review = api.access_reviews().pop().expect("a review");
    assert_eq!(
        review["nonResourceAttributes"],
        serde_json::json!({"verb": "get", "path": "/metrics"})
    );
    agent.stop().unwrap();
}

#[test]
fn http_auth_without_an_api_server_does_not_start() {
    let started = Bare::start(&["--http-auth", "kubernetes"], None).unwrap();
    let Started::Exited { log, .. } = started else {
        panic!("coroner serves with --http-auth kubernetes and --kube off");
    };
    assert!(log.contains("needs the API server"), "{log}");
}
