//! What can go wrong, in words a person can act on: which object, which permission, which
//! node's agent.

use thiserror::Error;

/// A request to the API server, named the way RBAC names it (`get pods/proxy in namespace
/// coroner`), so that a 403 says which permission is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    /// `pods`, `pods/proxy`, `deployments.apps`, `events.events.k8s.io`, …
    pub resource: &'static str,
    pub namespace: String,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} in namespace {}",
            self.verb, self.resource, self.namespace
        )
    }
}

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    #[error("{kind} {namespace}/{name} not found{hint}")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
        /// What else was looked at (coroner's Events of a pod of that name).
        hint: &'static str,
    },
    #[error(
        "forbidden: you may not {access} ({message}); the ClusterRole coroner-viewer \
         (deploy/base/rbac-viewer.yaml) grants what `kubectl coroner` needs"
    )]
    Forbidden { access: Access, message: String },
    #[error("the API server refused to {access}: {message}")]
    Api { access: Access, message: String },
    #[error("the API server could not be reached to {access}: {message}")]
    Unreachable { access: Access, message: String },
}

impl PluginError {
    /// The error of a failed request, by what the request was for.
    #[must_use]
    pub fn from_kube(access: Access, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden {
                access,
                message: status.message,
            },
            kube::Error::Api(status) => Self::Api {
                access,
                message: if status.message.is_empty() {
                    format!("HTTP {}", status.code)
                } else {
                    format!("{} (HTTP {})", status.message, status.code)
                },
            },
            other => Self::Unreachable {
                access,
                message: other.to_string(),
            },
        }
    }

    /// A 404 of the object itself (not of the API path).
    #[must_use]
    pub fn is_not_found(error: &kube::Error) -> bool {
        matches!(error, kube::Error::Api(status) if status.code == 404 && status.reason == "NotFound")
    }
}
