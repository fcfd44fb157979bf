//! `TokenReview` (authentication.k8s.io/v1) and `SubjectAccessReview` (authorization.k8s.io/v1)
//! as the API server answers them: the object posted comes back with a `status`. Tokens and
//! grants are the test's: [`ApiServer::add_token`], [`ApiServer::grant`]. A review the API
//! server would reject (no token; no user and no groups; neither or both attribute kinds) is
//! a 422 `Invalid` Status, as from the real one.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Value, json};

use super::http::{Body, json_response};
use super::store::status;
use super::{ApiServer, Shared};

/// A user a token belongs to.
#[derive(Clone, Debug)]
struct User {
    username: String,
    groups: Vec<String>,
}

/// What a `SubjectAccessReview` allows: the user may `verb` the resource (any name), or the
/// non-resource path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    Resource {
        user: String,
        verb: String,
        namespace: String,
        /// `pods/proxy`, `pods`, …
        resource: String,
    },
    Path {
        user: String,
        verb: String,
        path: String,
    },
}

/// The double's tokens, grants, and the reviews it answered.
#[derive(Debug, Default)]
pub struct AccessReviews {
    tokens: HashMap<String, User>,
    grants: Vec<Grant>,
    /// The `spec` of every `TokenReview` answered, in order.
    tokens_reviewed: Vec<Value>,
    /// The `spec` of every `SubjectAccessReview` answered, in order.
    accesses_reviewed: Vec<Value>,
}

/// `POST` of a review: answered here; `None` for every other request.
pub fn route(
    shared: &Shared,
    method: &http::Method,
    segments: &[&str],
    body: &[u8],
) -> Option<http::Response<Body>> {
    if method != http::Method::POST {
        return None;
    }
    let review = match segments {
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] => token_review,
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => access_review,
        _ => return None,
    };
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return Some(invalid("the body is not JSON"));
    };
    Some(
        match shared.with(|s| review(&mut s.access, &object["spec"])) {
            Ok(answer) => {
                object["status"] = answer;
                json_response(StatusCode::CREATED, &object)
            }
            Err(why) => invalid(why),
        },
    )
}

fn invalid(message: &str) -> http::Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &status(422, "Invalid", message),
    )
}

fn token_review(reviews: &mut AccessReviews, spec: &Value) -> Result<Value, &'static str> {
    let token = spec["token"].as_str().filter(|t| !t.is_empty());
    let token = token.ok_or("spec.token: Required value")?;
    reviews.tokens_reviewed.push(spec.clone());
    Ok(match reviews.tokens.get(token) {
        Some(user) => json!({
            "authenticated": true,
            "user": {"username": user.username, "uid": format!("uid-{}", user.username),
                     "groups": user.groups},
            "audiences": ["https://kubernetes.default.svc"],
        }),
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
    })
}

fn access_review(reviews: &mut AccessReviews, spec: &Value) -> Result<Value, &'static str> {
    let user = spec["user"].as_str().unwrap_or_default();
    if user.is_empty() && spec["groups"].as_array().is_none_or(Vec::is_empty) {
        return Err(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified",
        );
    }
    let resource = &spec["resourceAttributes"];
    let path = &spec["nonResourceAttributes"];
    if resource.is_null() == path.is_null() {
        return Err(
            "spec: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        );
    }
    reviews.accesses_reviewed.push(spec.clone());
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let wanted = if resource.is_null() {
        Grant::Path {
            user: user.to_owned(),
            verb: text(path, "verb"),
            path: text(path, "path"),
        }
    } else {
        let sub = text(resource, "subresource");
        let mut name = text(resource, "resource");
        if !sub.is_empty() {
            name = format!("{name}/{sub}");
        }
        Grant::Resource {
            user: user.to_owned(),
            verb: text(resource, "verb"),
            namespace: text(resource, "namespace"),
            resource: name,
        }
    };
    Ok(if reviews.grants.contains(&wanted) {
        json!({"allowed": true, "reason": "granted by the test"})
    } else {
        json!({"allowed": false})
    })
}

impl ApiServer {
    /// `token` belongs to `username` (in `system:authenticated` and `groups`).
    pub fn add_token(&self, token: &str, username: &str, groups: &[&str]) {
        let mut all = vec!["system:authenticated".to_owned()];
        all.extend(groups.iter().map(|g| (*g).to_owned()));
        let user = User {
            username: username.to_owned(),
            groups: all,
        };
        self.shared
            .with(|s| s.access.tokens.insert(token.to_owned(), user));
    }

    /// `SubjectAccessReview`s of `grant` are allowed from now on.
    pub fn grant(&self, grant: Grant) {
        self.shared.with(|s| s.access.grants.push(grant));
    }

    /// Every grant is taken back (tokens stay valid).
    pub fn revoke_grants(&self) {
        self.shared.with(|s| s.access.grants.clear());
    }

    /// The specs of the `TokenReview`s answered so far.
    #[must_use]
    pub fn token_reviews(&self) -> Vec<Value> {
        self.shared.read(|s| s.access.tokens_reviewed.clone())
    }

    /// The specs of the `SubjectAccessReview`s answered so far.
    #[must_use]
    pub fn access_reviews(&self) -> Vec<Value> {
        self.shared.read(|s| s.access.accesses_reviewed.clone())
    }
}
