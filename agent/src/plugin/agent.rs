//! The coroner agent of a node, reached through the API server's pod proxy
//! (`GET /api/v1/namespaces/<ns>/pods/<agent pod>:<port>/proxy/v1/terminations?…`): no port of
//! the agent is exposed outside the cluster, and RBAC (`pods/proxy` get) decides who may read.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::error::{Access, PluginError};
use super::token::{Bearer, NoToken};

/// The port the agent listens on when its pod does not name one (deploy/base/daemonset.yaml).
pub const DEFAULT_PORT: u16 = 9750;
/// The agent container's port name in deploy/base/daemonset.yaml.
const PORT_NAME: &str = "http-metrics";

/// Where the agents are and how to talk to them.
#[derive(Clone, Debug)]
pub struct AgentLocator {
    pub namespace: String,
    /// The agent pods' labels (the `DaemonSet`'s), as a label selector.
    pub selector: String,
    /// `None`: the agent pod's `http-metrics` port, else [`DEFAULT_PORT`].
    pub port: Option<u16>,
    pub timeout: Duration,
    /// Sent in `X-Coroner-Authorization` for the agent's guard (`--http-auth kubernetes`);
    /// why there is none otherwise.
    pub token: Result<Bearer, NoToken>,
}

/// The header the agent reads the caller's token from behind the API server's proxy
/// (`export::http::access::PROXY_AUTHORIZATION`).
const AGENT_AUTHORIZATION: &str = crate::export::PROXY_AUTHORIZATION;

/// Why a node's agent could not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentProblem {
    /// No pod matches the selector on the node (not deployed there, or the node is gone).
    NoAgent,
    /// Listing the agent pods failed.
    Lookup(String),
    /// The proxy request failed: the agent pod is not ready, or the connection failed.
    Unreachable { pod: String, message: String },
    /// The caller may not use the pod proxy.
    Forbidden { pod: String, message: String },
    /// The agent checks callers and took no token from this one (`message` says why there
    /// was none, or what the agent said of it).
    Unauthenticated { pod: String, message: String },
    /// The agent answered something that is not a list of records.
    Malformed { pod: String, message: String },
}

/// What one node's agent said.
#[derive(Clone, Debug)]
pub struct AgentAnswer {
    /// `<namespace>/<pod>` of the agent.
    pub agent: String,
    /// The records as the agent wrote them, oldest first.
    pub records: Vec<Value>,
}

impl AgentLocator {
    /// The records that `query` selects from the agent on `node`.
    pub async fn terminations(
        &self,
        client: &Client,
        node: &str,
        query: &[(&str, &str)],
    ) -> Result<AgentAnswer, AgentProblem> {
        let (pod, port) = self.find(client, node).await?;
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{port}/proxy/v1/terminations{}",
            self.namespace,
            query_string(query)
        );
        let mut request =
            http::Request::get(&path).header(http::header::ACCEPT, "application/json");
        if let Ok(token) = &self.token {
            request = request.header(AGENT_AUTHORIZATION, token.header_value());
        }
        let request = request
            .body(Vec::new())
            .map_err(|e| AgentProblem::Malformed {
                pod: pod.clone(),
                message: e.to_string(),
            })?;
        let agent = format!("{}/{pod}", self.namespace);
        let text = match tokio::time::timeout(self.timeout, client.request_text(request)).await {
            Err(_) => {
                return Err(AgentProblem::Unreachable {
                    pod: agent,
                    message: format!("no answer within {:?}", self.timeout),
                });
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 401 => {
                let message = match &self.token {
                    Ok(_) => status.message.trim().to_owned(),
                    Err(missing) => missing.to_string(),
                };
                return Err(AgentProblem::Unauthenticated {
                    pod: agent,
                    message,
                });
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 403 => {
                return Err(AgentProblem::Forbidden {
                    pod: agent,
                    message: status.message,
                });
            }
            // The API server's proxy words why it could not reach the pod (503 "error trying to
            // reach service: dial tcp …", 400 "address not allowed" without a pod IP).
            Ok(Err(kube::Error::Api(status))) => {
                return Err(AgentProblem::Unreachable {
                    pod: agent,
                    message: format!("{} (HTTP {})", status.message, status.code),
                });
            }
            Ok(Err(e)) => {
                return Err(AgentProblem::Unreachable {
                    pod: agent,
                    message: e.to_string(),
                });
            }
            Ok(Ok(text)) => text,
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(records)) => Ok(AgentAnswer { agent, records }),
            Ok(_) => Err(AgentProblem::Malformed {
                pod: agent,
                message: "not a JSON array".to_owned(),
            }),
            Err(e) => Err(AgentProblem::Malformed {
                pod: agent,
                message: e.to_string(),
            }),
        }
    }

    /// The agent pod on `node` and its port: a running one, the newest if a rollout left two.
    async fn find(&self, client: &Client, node: &str) -> Result<(String, u16), AgentProblem> {
        let api: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let params = ListParams::default()
            .labels(&self.selector)
            .fields(&format!("spec.nodeName={node}"));
        let pods = api.list(&params).await.map_err(|e| {
            let access = Access {
                verb: "list",
                resource: "pods",
                namespace: self.namespace.clone(),
            };
            AgentProblem::Lookup(PluginError::from_kube(access, e).to_string())
        })?;
        let running = |p: &Pod| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        };
        let mut candidates: Vec<&Pod> = pods.items.iter().collect();
        candidates.sort_by_key(|p| (running(p), p.metadata.creation_timestamp.clone()));
        let pod = candidates.last().ok_or(AgentProblem::NoAgent)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        Ok((name, self.port.unwrap_or_else(|| port_of(pod))))
    }
}

/// The agent container's `http-metrics` port, else the default.
fn port_of(pod: &Pod) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_PORT)
}

/// `?k=v&…`, percent-encoded; empty without terms.
fn query_string(query: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in query.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(&encode(k));
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}

fn encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl std::fmt::Display for AgentProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentProblem::NoAgent => write!(f, "no coroner agent pod on the node"),
            AgentProblem::Lookup(m) => write!(f, "could not look for the agent pod: {m}"),
            AgentProblem::Unreachable { pod, message } => {
                write!(f, "the agent {pod} is unreachable: {message}")
            }
            AgentProblem::Forbidden { pod, message } => write!(
                f,
                "forbidden to read the agent {pod}: you may not get pods/proxy ({message})"
            ),
            AgentProblem::Unauthenticated { pod, message } => {
                write!(f, "the agent {pod} needs your bearer token: {message}")
            }
            AgentProblem::Malformed { pod, message } => {
                write!(
                    f,
                    "the agent {pod} answered something else than records: {message}"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(query_string(&[]), "");
        assert_eq!(
            query_string(&[("namespace", "a b"), ("pod", "web-0&x=1")]),
            "?namespace=a%20b&pod=web-0%26x%3D1"
        );
    }
}
