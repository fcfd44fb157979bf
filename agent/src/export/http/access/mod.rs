//! Who may read `/v1/terminations` (and `/metrics`, with `--metrics-auth`): the caller's bearer
//! token is reviewed by the API server (`TokenReview`), the access by a `SubjectAccessReview`,
//! both answers kept briefly — what kube-rbac-proxy does in front of a workload, done in the
//! agent. The decisions and why (the pod proxy strips `Authorization`, hence
//! [`PROXY_AUTHORIZATION`]) are docs/access.md.
//!
//! - `/v1/terminations`: `get` on `pods/proxy` of the agent's own pod — the permission the API
//!   server checks for the same request through its pod proxy, so one `Role` grants both
//!   ways in.
//! - `/metrics`: `get` on the non-resource path `/metrics`, as kube-rbac-proxy checks it and
//!   as Prometheus' `ClusterRole` in kube-prometheus already grants.
//!
//! Fail closed: no answer from the API server is a 503 for the protected path, never a pass.
//! `/livez`, `/readyz` and `/healthz` are not guarded (the kubelet's probes carry no token).

mod cache;
mod review;
#[cfg(test)]
pub(super) mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::super::metrics::Metrics;
use cache::TtlCache;
pub use review::{Decision, Identity, KubeReviewer, Reviewer, Target, Unavailable};

/// Where a caller whose request goes through the API server's pod proxy puts its token: the
/// API server removes `Authorization` once it has authenticated the caller itself.
pub const PROXY_AUTHORIZATION: &str = "x-coroner-authorization";

/// `--http-auth`, `--metrics-auth`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone who reaches the port may read (the `NetworkPolicy` decides who reaches it).
    #[default]
    Off,
    /// A bearer token, reviewed by the API server, and an access review.
    Kubernetes,
}

/// A guarded path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Terminations,
    Metrics,
}

impl Endpoint {
    /// The `endpoint` label of `coroner_http_auth_decisions_total`.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Endpoint::Terminations => "terminations",
            Endpoint::Metrics => "metrics",
        }
    }
}

/// What the guard protects and how.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    pub api: AuthMode,
    pub metrics: AuthMode,
    /// The agent's own pod: `get pods/proxy` on it is what reading `/v1/terminations` takes.
    pub pod_namespace: String,
    pub pod_name: String,
    /// Longest wait for one review; the request is answered 503 after it.
    pub review_timeout: Duration,
    /// How long a valid token and a granted access are taken as they were.
    pub allowed_ttl: Duration,
    /// How long a rejected token and a denied access are.
    pub denied_ttl: Duration,
    /// Answers kept at most, per kind of review.
    pub capacity: usize,
}

impl AccessConfig {
    /// kube-rbac-proxy keeps tokens 2 min and grants 5 min; shorter here, so that a removed
    /// `RoleBinding` takes effect within a minute.
    #[must_use]
    pub fn new(api: AuthMode, metrics: AuthMode, pod_namespace: &str, pod_name: &str) -> Self {
        Self {
            api,
            metrics,
            pod_namespace: pod_namespace.to_owned(),
            pod_name: pod_name.to_owned(),
            review_timeout: Duration::from_secs(5),
            allowed_ttl: Duration::from_mins(1),
            denied_ttl: Duration::from_secs(10),
            capacity: 1024,
        }
    }

    fn target(&self, endpoint: Endpoint) -> Target {
        match endpoint {
            Endpoint::Terminations => Target::Resource {
                verb: "get",
                namespace: self.pod_namespace.clone(),
                resource: "pods",
                subresource: "proxy",
                name: self.pod_name.clone(),
            },
            Endpoint::Metrics => Target::NonResource {
                verb: "get",
                path: "/metrics",
            },
        }
    }
}

/// The HTTP server's guard; [`Access::open`] guards nothing. Clones share the caches.
#[derive(Clone, Default)]
pub struct Access {
    guard: Option<Arc<Guard>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("config", &self.guard.as_ref().map(|g| &g.config))
            .finish()
    }
}

struct Guard {
    config: AccessConfig,
    reviewer: Arc<dyn Reviewer>,
    /// SHA-256 of the token → who it is, or why it is not valid.
    tokens: TtlCache<[u8; 32], Result<Identity, String>>,
    grants: TtlCache<(Identity, Target), Decision>,
    metrics: Metrics,
}

/// Why a request was not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoToken,
    BadToken(String),
    Forbidden {
        user: String,
        target: String,
        reason: String,
    },
    Unavailable(String),
}

impl Refusal {
    const fn decision(&self) -> &'static str {
        match self {
            Refusal::NoToken | Refusal::BadToken(_) => "unauthenticated",
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::Unavailable(_) => "unavailable",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Refusal::NoToken => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "unauthenticated: send a bearer token in Authorization (or in \
                     {PROXY_AUTHORIZATION} through the API server's pod proxy, which removes \
                     Authorization)\n"
                ),
            ),
            Refusal::BadToken(why) => (
                StatusCode::UNAUTHORIZED,
                format!("unauthenticated: the API server did not accept the token: {why}\n"),
            ),
            Refusal::Forbidden {
                user,
                target,
                reason,
            } => (
                StatusCode::FORBIDDEN,
                format!("forbidden: user {user:?} may not {target} ({reason})\n"),
            ),
            Refusal::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot check the caller, so nothing is served: {why}\n"),
            ),
        };
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"coroner\""),
            );
        }
        response
    }
}

/// The token of `Authorization: Bearer …`, else of [`PROXY_AUTHORIZATION`].
fn bearer(headers: &HeaderMap) -> Option<&str> {
    [header::AUTHORIZATION.as_str(), PROXY_AUTHORIZATION]
        .into_iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .find_map(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
        })
}

impl Access {
    /// Guards nothing: `--http-auth off --metrics-auth off`.
    #[must_use]
    pub fn open() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn new(config: AccessConfig, reviewer: Arc<dyn Reviewer>, metrics: Metrics) -> Self {
        if config.api == AuthMode::Off && config.metrics == AuthMode::Off {
            return Self::open();
        }
        Self {
            guard: Some(Arc::new(Guard {
                tokens: TtlCache::new(config.capacity),
                grants: TtlCache::new(config.capacity),
                config,
                reviewer,
                metrics,
            })),
        }
    }

    fn guard_of(&self, endpoint: Endpoint) -> Option<&Guard> {
        let guard = self.guard.as_deref()?;
        let mode = match endpoint {
            Endpoint::Terminations => guard.config.api,
            Endpoint::Metrics => guard.config.metrics,
        };
        (mode == AuthMode::Kubernetes).then_some(guard)
    }

    /// Whether a request to `endpoint` with `headers` may be served (`Ok` also when the
    /// endpoint is not guarded).
    pub async fn check(&self, endpoint: Endpoint, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(guard) = self.guard_of(endpoint) else {
            return Ok(());
        };
        let result = guard.check(endpoint, headers).await;
        let decision = result.as_ref().err().map_or("allowed", Refusal::decision);
        guard.metrics.http_auth_decision(endpoint.label(), decision);
        match &result {
            Err(Refusal::Unavailable(why)) => tracing::warn!(
                endpoint = endpoint.label(),
                "refusing a request, the API server did not answer: {why}"
            ),
            Err(refusal) => tracing::debug!(endpoint = endpoint.label(), ?refusal, "refused"),
            Ok(()) => {}
        }
        result
    }
}

impl Guard {
    async fn check(&self, endpoint: Endpoint, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = bearer(headers).ok_or(Refusal::NoToken)?;
        let who = self.identify(token).await?;
        let target = self.config.target(endpoint);
        match self.authorize(&who, &target).await? {
            Decision::Allowed => Ok(()),
            Decision::Denied(reason) => Err(Refusal::Forbidden {
                user: who.username,
                target: target.to_string(),
                reason,
            }),
        }
    }

    async fn identify(&self, token: &str) -> Result<Identity, Refusal> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        if let Some(answer) = self.tokens.get(&key, Instant::now()) {
            self.metrics.http_auth_cache("token", true);
            return answer.map_err(Refusal::BadToken);
        }
        self.metrics.http_auth_cache("token", false);
        let answer = self
            .ask(self.reviewer.review_token(token), "TokenReview")
            .await?;
        let ttl = if answer.is_ok() {
            self.config.allowed_ttl
        } else {
            self.config.denied_ttl
        };
        self.tokens.put(key, answer.clone(), Instant::now(), ttl);
        answer.map_err(Refusal::BadToken)
    }

    async fn authorize(&self, who: &Identity, target: &Target) -> Result<Decision, Refusal> {
        let key = (who.clone(), target.clone());
        if let Some(decision) = self.grants.get(&key, Instant::now()) {
            self.metrics.http_auth_cache("access", true);
            return Ok(decision);
        }
        self.metrics.http_auth_cache("access", false);
        let decision = self
            .ask(
                self.reviewer.review_access(who, target),
                "SubjectAccessReview",
            )
            .await?;
        let ttl = if decision == Decision::Allowed {
            self.config.allowed_ttl
        } else {
            self.config.denied_ttl
        };
        self.grants.put(key, decision.clone(), Instant::now(), ttl);
        Ok(decision)
    }

    /// One review, bounded by the timeout; no answer is [`Refusal::Unavailable`].
    async fn ask<T>(
        &self,
        review: impl Future<Output = Result<T, Unavailable>>,
        what: &str,
    ) -> Result<T, Refusal> {
        match tokio::time::timeout(self.config.review_timeout, review).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Unavailable(why))) => Err(Refusal::Unavailable(why)),
            Err(_) => Err(Refusal::Unavailable(format!(
                "the {what} took longer than {:?}",
                self.config.review_timeout
            ))),
        }
    }
}

/// The middleware of one guarded route: the route decides which endpoint it is, never the
/// request's spelling of the path.
pub async fn guard(
    State((access, endpoint)): State<(Access, Endpoint)>,
    request: Request,
    next: Next,
) -> Response {
    match access.check(endpoint, request.headers()).await {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}
