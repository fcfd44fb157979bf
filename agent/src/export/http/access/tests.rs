//! The guard's decisions against a reviewer whose answers the test writes: what is cached,
//! for whom, how a missing answer fails closed. (Against an API server:
//! `tests/tests/http_access.rs`, with the API server double.)

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::http::HeaderMap;
use futures::future::BoxFuture;

use super::*;

/// Tokens it knows, grants it gives, and how often it was asked.
#[derive(Default)]
pub struct Scripted {
    pub tokens: Mutex<HashMap<String, String>>,
    /// (user, target as displayed)
    pub grants: Mutex<HashSet<(String, String)>>,
    pub down: AtomicBool,
    pub hang: AtomicBool,
    pub token_reviews: AtomicUsize,
    pub access_reviews: AtomicUsize,
}

impl Scripted {
    fn failure(&self) -> Option<Unavailable> {
        self.down
            .load(Ordering::Relaxed)
            .then(|| Unavailable("connection refused".to_owned()))
    }

    async fn maybe_hang(&self) {
        if self.hang.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    }
}

impl Reviewer for Scripted {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Result<Identity, String>, Unavailable>> {
        Box::pin(async move {
            self.token_reviews.fetch_add(1, Ordering::Relaxed);
            self.maybe_hang().await;
            if let Some(e) = self.failure() {
                return Err(e);
            }
            let user = self.tokens.lock().unwrap().get(token).cloned();
            Ok(user
                .map(|username| Identity {
                    username,
                    uid: None,
                    groups: vec!["system:authenticated".to_owned()],
                    extra: std::collections::BTreeMap::new(),
                })
                .ok_or_else(|| "unknown token".to_owned()))
        })
    }

    fn review_access<'a>(
        &'a self,
        who: &'a Identity,
        what: &'a Target,
    ) -> BoxFuture<'a, Result<Decision, Unavailable>> {
        Box::pin(async move {
            self.access_reviews.fetch_add(1, Ordering::Relaxed);
            if let Some(e) = self.failure() {
                return Err(e);
            }
            let key = (who.username.clone(), what.to_string());
            Ok(if self.grants.lock().unwrap().contains(&key) {
                Decision::Allowed
            } else {
                Decision::Denied("no RBAC policy matched".to_owned())
            })
        })
    }
}

const TERMINATIONS: &str = "get pods/proxy coroner/coroner-x1";

fn guarded(reviewer: &Arc<Scripted>, metrics: AuthMode) -> (Access, Metrics) {
    let registry = Metrics::default();
    let mut config = AccessConfig::new(AuthMode::Kubernetes, metrics, "coroner", "coroner-x1");
    config.review_timeout = Duration::from_millis(200);
    let access = Access::new(config, reviewer.clone(), registry.clone());
    (access, registry)
}

fn scripted() -> Arc<Scripted> {
    let reviewer = Scripted::default();
    reviewer.tokens.lock().unwrap().extend([
        ("t-alice".into(), "alice".into()),
        ("t-bob".into(), "bob".into()),
    ]);
    reviewer
        .grants
        .lock()
        .unwrap()
        .insert(("alice".into(), TERMINATIONS.into()));
    Arc::new(reviewer)
}

fn with(name: &str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    headers
}

fn count(metrics: &Metrics, family: &str, labels: &str) -> u64 {
    let line = format!("{family}{{{labels}}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or_else(|| panic!("no {line}"))
}

#[tokio::test]
async fn a_granted_caller_is_served_and_the_second_request_asks_nothing() {
    let reviewer = scripted();
    let (access, metrics) = guarded(&reviewer, AuthMode::Off);
    let alice = with("authorization", "Bearer t-alice");
    assert_eq!(access.check(Endpoint::Terminations, &alice).await, Ok(()));
    assert_eq!(access.check(Endpoint::Terminations, &alice).await, Ok(()));
    assert_eq!(reviewer.token_reviews.load(Ordering::Relaxed), 1);
    assert_eq!(reviewer.access_reviews.load(Ordering::Relaxed), 1);
    let cache = "coroner_http_auth_cache_total";
    assert_eq!(count(&metrics, cache, r#"review="token",result="miss""#), 1);
    assert_eq!(count(&metrics, cache, r#"review="token",result="hit""#), 1);
    assert_eq!(count(&metrics, cache, r#"review="access",result="hit""#), 1);
    let decisions = "coroner_http_auth_decisions_total";
    let allowed = r#"endpoint="terminations",decision="allowed""#;
    assert_eq!(count(&metrics, decisions, allowed), 2);
}

#[tokio::test]
async fn no_token_a_bad_token_and_a_denied_caller_are_told_apart() {
    let reviewer = scripted();
    let (access, metrics) = guarded(&reviewer, AuthMode::Off);
    let check = |headers: HeaderMap| {
        let access = access.clone();
        async move { access.check(Endpoint::Terminations, &headers).await }
    };
    assert_eq!(check(HeaderMap::new()).await, Err(Refusal::NoToken));
    assert_eq!(
        check(with("authorization", "Basic dTpw")).await,
        Err(Refusal::NoToken),
        "only bearer tokens"
    );
    assert_eq!(
        check(with("authorization", "Bearer t-mallory")).await,
        Err(Refusal::BadToken("unknown token".into()))
    );
    assert_eq!(
        check(with("authorization", "bearer t-bob")).await,
        Err(Refusal::Forbidden {
            user: "bob".into(),
            target: TERMINATIONS.into(),
            reason: "no RBAC policy matched".into()
        })
    );
    // A denial is cached too (briefly): bob again asks nothing new.
    let before = reviewer.access_reviews.load(Ordering::Relaxed);
    assert!(check(with("authorization", "Bearer t-bob")).await.is_err());
    assert_eq!(reviewer.access_reviews.load(Ordering::Relaxed), before);
    let decisions = "coroner_http_auth_decisions_total";
    let refused = |d: &str| format!(r#"endpoint="terminations",decision="{d}""#);
    assert_eq!(count(&metrics, decisions, &refused("unauthenticated")), 3);
    assert_eq!(count(&metrics, decisions, &refused("forbidden")), 2);
}

#[tokio::test]
async fn the_pod_proxy_header_carries_the_token_the_api_server_removed() {
    let reviewer = scripted();
    let (access, _) = guarded(&reviewer, AuthMode::Off);
    let proxied = with(PROXY_AUTHORIZATION, "Bearer t-alice");
    assert_eq!(access.check(Endpoint::Terminations, &proxied).await, Ok(()));
}

#[tokio::test]
async fn no_answer_from_the_api_server_fails_closed_and_is_not_cached() {
    let reviewer = scripted();
    let (access, metrics) = guarded(&reviewer, AuthMode::Off);
    let alice = with("authorization", "Bearer t-alice");
    reviewer.down.store(true, Ordering::Relaxed);
    assert!(matches!(
        access.check(Endpoint::Terminations, &alice).await,
        Err(Refusal::Unavailable(_))
    ));
    reviewer.down.store(false, Ordering::Relaxed);
    reviewer.hang.store(true, Ordering::Relaxed);
    let Err(Refusal::Unavailable(why)) = access.check(Endpoint::Terminations, &alice).await else {
        panic!("a review that never answers must fail closed");
    };
    assert!(why.contains("took longer than"), "{why}");
    reviewer.hang.store(false, Ordering::Relaxed);
    assert_eq!(access.check(Endpoint::Terminations, &alice).await, Ok(()));
    assert_eq!(reviewer.token_reviews.load(Ordering::Relaxed), 3);
    let unavailable = r#"endpoint="terminations",decision="unavailable""#;
    assert_eq!(
        count(&metrics, "coroner_http_auth_decisions_total", unavailable),
        2
    );
}

#[tokio::test]
async fn metrics_are_open_unless_metrics_auth_is_on() {
    let reviewer = scripted();
    reviewer.down.store(true, Ordering::Relaxed);
    let (open, _) = guarded(&reviewer, AuthMode::Off);
    assert_eq!(
        open.check(Endpoint::Metrics, &HeaderMap::new()).await,
        Ok(())
    );
    assert_eq!(reviewer.token_reviews.load(Ordering::Relaxed), 0);

    reviewer.down.store(false, Ordering::Relaxed);
    let (guarded, _) = guarded(&reviewer, AuthMode::Kubernetes);
    let alice = with("authorization", "Bearer t-alice");
    assert!(matches!(
        guarded.check(Endpoint::Metrics, &alice).await,
        Err(Refusal::Forbidden { target, .. }) if target == "get /metrics"
    ));
    reviewer
        .grants
        .lock()
        .unwrap()
        .insert(("bob".into(), "get /metrics".into()));
    let bob = with("authorization", "Bearer t-bob");
    assert_eq!(guarded.check(Endpoint::Metrics, &bob).await, Ok(()));
}

#[test]
fn refusals_answer_with_their_status_and_a_challenge() {
    let status = |r: Refusal| {
        let response = r.into_response();
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).cloned();
        (response.status().as_u16(), challenge.is_some())
    };
    assert_eq!(status(Refusal::NoToken), (401, true));
    assert_eq!(status(Refusal::BadToken("expired".into())), (401, true));
    let forbidden = Refusal::Forbidden {
        user: "bob".into(),
        target: TERMINATIONS.into(),
        reason: String::new(),
    };
    assert_eq!(status(forbidden), (403, false));
    assert_eq!(status(Refusal::Unavailable("down".into())), (503, false));
}
