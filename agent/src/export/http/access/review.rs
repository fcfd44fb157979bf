//! The two questions asked of the API server, as kube-rbac-proxy and the kubelet ask them: who
//! holds this token (`TokenReview`, authentication.k8s.io/v1) and may they do this
//! (`SubjectAccessReview`, authorization.k8s.io/v1). The agent's `ServiceAccount` needs
//! `create` on both (deploy/base/rbac.yaml).

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

/// Who a token belongs to, as the `TokenReview` said.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request does, in the API server's authorization vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `verb` on `resource/subresource` named `name` in `namespace`.
    Resource {
        verb: &'static str,
        namespace: String,
        resource: &'static str,
        subresource: &'static str,
        name: String,
    },
    /// `verb` on a path that is no API object (`/metrics`).
    NonResource {
        verb: &'static str,
        path: &'static str,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Resource {
                verb,
                namespace,
                resource,
                subresource,
                name,
            } => write!(f, "{verb} {resource}/{subresource} {namespace}/{name}"),
            Target::NonResource { verb, path } => write!(f, "{verb} {path}"),
        }
    }
}

/// The access review's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// With the authorizer's reason, when it gave one.
    Denied(String),
}

/// The API server did not answer (down, timed out, refused the review itself).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Asks the API server. A trait so that the guard's logic (cache, fail-closed) is tested
/// against answers of the test's choosing; the agent has one implementation, [`KubeReviewer`].
pub trait Reviewer: Send + Sync {
    /// `Ok(None)`: the token is not valid (unknown, expired, revoked), with the reason.
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Result<Identity, String>, Unavailable>>;

    fn review_access<'a>(
        &'a self,
        who: &'a Identity,
        what: &'a Target,
    ) -> BoxFuture<'a, Result<Decision, Unavailable>>;
}

/// The reviews through the agent's own API client.
pub struct KubeReviewer {
    client: kube::Client,
}

impl KubeReviewer {
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl Reviewer for KubeReviewer {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Result<Identity, String>, Unavailable>> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_owned()),
                    audiences: None,
                },
                ..TokenReview::default()
            };
            let answer = Api::<TokenReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| Unavailable(format!("TokenReview: {e}")))?;
            let status = answer.status.unwrap_or_default();
            let user = status.user.unwrap_or_default();
            match (status.authenticated, user.username) {
                (Some(true), Some(username)) if !username.is_empty() => Ok(Ok(Identity {
                    username,
                    uid: user.uid.filter(|u| !u.is_empty()),
                    groups: user.groups.unwrap_or_default(),
                    extra: user.extra.unwrap_or_default(),
                })),
                _ => Ok(Err(status
                    .error
                    .unwrap_or_else(|| "not authenticated".to_owned()))),
            }
        })
    }

    fn review_access<'a>(
        &'a self,
        who: &'a Identity,
        what: &'a Target,
    ) -> BoxFuture<'a, Result<Decision, Unavailable>> {
        Box::pin(async move {
            let mut spec = SubjectAccessReviewSpec {
                user: Some(who.username.clone()),
                uid: who.uid.clone(),
                groups: Some(who.groups.clone()),
                extra: Some(who.extra.clone()),
                ..SubjectAccessReviewSpec::default()
            };
            match what {
                Target::Resource {
                    verb,
                    namespace,
                    resource,
                    subresource,
                    name,
                } => {
                    spec.resource_attributes = Some(ResourceAttributes {
                        verb: Some((*verb).to_owned()),
                        namespace: Some(namespace.clone()),
                        group: Some(String::new()),
                        version: Some("v1".to_owned()),
                        resource: Some((*resource).to_owned()),
                        subresource: Some((*subresource).to_owned()),
                        name: Some(name.clone()),
                        ..ResourceAttributes::default()
                    });
                }
                Target::NonResource { verb, path } => {
                    spec.non_resource_attributes = Some(NonResourceAttributes {
                        verb: Some((*verb).to_owned()),
                        path: Some((*path).to_owned()),
                    });
                }
            }
            let review = SubjectAccessReview {
                spec,
                ..SubjectAccessReview::default()
            };
            let answer = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| Unavailable(format!("SubjectAccessReview: {e}")))?;
            let status = answer.status.unwrap_or_default();
            // As the API server's own webhook authorizer reads an answer: allowed and not
            // denied is a grant, anything else is not (an evaluation error only explains).
            Ok(if status.allowed && status.denied != Some(true) {
                Decision::Allowed
            } else {
                let reason = [status.reason, status.evaluation_error]
                    .into_iter()
                    .flatten()
                    .filter(|r| !r.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                Decision::Denied(reason)
            })
        })
    }
}
