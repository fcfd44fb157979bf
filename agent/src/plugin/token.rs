//! The caller's bearer token, for the agent's HTTP guard: the API server authenticates the
//! caller itself and removes `Authorization` before it proxies the request to the agent's pod,
//! so the plugin sends the same token again in `X-Coroner-Authorization` (docs/access.md). It
//! comes from `--agent-token`, else from the kubeconfig user as kubectl reads it: `token`,
//! `tokenFile`, or an `exec` credential plugin (EKS, GKE, AKS, OIDC helpers). A user who
//! authenticates with a client certificate has none.

use std::process::Stdio;
use std::time::Duration;

use kube::config::{AuthInfo, ExecConfig};
use secrecy::ExposeSecret as _;
use serde_json::Value;

/// A bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(String);

impl Bearer {
    /// `None` for an empty token (a blank flag or file).
    #[must_use]
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self(token.to_owned()))
    }

    /// The header value: `Bearer <token>`.
    #[must_use]
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(…)")
    }
}

/// Where the token was looked for, when there is none: said to the user with the fallback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoToken {
    /// The kubeconfig user authenticates otherwise (a client certificate, basic auth).
    NotBearer,
    /// The token file or credential plugin failed.
    Failed(String),
}

impl std::fmt::Display for NoToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotBearer => f.write_str(
                "the kubeconfig user has no bearer token (a client certificate?): \
                 pass --agent-token (e.g. `kubectl create token …`)",
            ),
            Self::Failed(why) => write!(f, "the kubeconfig user's token: {why}"),
        }
    }
}

/// The token of the kubeconfig user, as kubectl would send it.
pub async fn of_user(user: &AuthInfo, timeout: Duration) -> Result<Bearer, NoToken> {
    if let Some(token) = user.token.as_ref() {
        return Bearer::new(token.expose_secret()).ok_or(NoToken::NotBearer);
    }
    if let Some(path) = user.token_file.as_deref() {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| NoToken::Failed(format!("tokenFile {path}: {e}")))?;
        return Bearer::new(&text)
            .ok_or_else(|| NoToken::Failed(format!("tokenFile {path} is empty")));
    }
    if let Some(exec) = user.exec.as_ref() {
        return from_exec(exec, timeout).await;
    }
    Err(NoToken::NotBearer)
}

/// Runs the credential plugin as client-go does (non-interactive) and takes
/// `status.token` from the `ExecCredential` it prints.
async fn from_exec(exec: &ExecConfig, timeout: Duration) -> Result<Bearer, NoToken> {
    let command = exec
        .command
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| NoToken::Failed("exec without a command".to_owned()))?;
    let api_version = exec
        .api_version
        .as_deref()
        .unwrap_or("client.authentication.k8s.io/v1");
    let info = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(exec.args.iter().flatten())
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in exec.drop_env.iter().flatten() {
        cmd.env_remove(name);
    }
    for pair in exec.env.iter().flatten() {
        if let (Some(name), Some(value)) = (pair.get("name"), pair.get("value")) {
            cmd.env(name, value);
        }
    }
    let failed = |why: String| NoToken::Failed(format!("exec {command}: {why}"));
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| failed(format!("no answer within {timeout:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!("{}: {}", output.status, stderr.trim())));
    }
    let credential: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| failed(format!("not an ExecCredential: {e}")))?;
    match credential["status"]["token"].as_str().and_then(Bearer::new) {
        Some(token) => Ok(token),
        // A plugin that hands out a client certificate.
        None => Err(NoToken::NotBearer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig user, written as JSON (the field names are the YAML's).
    fn user(json: &str) -> AuthInfo {
        serde_json::from_str(json).expect("an AuthInfo")
    }

    const SECOND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_static_token_is_sent_and_never_printed() {
        let token = of_user(&user(r#"{"token": "abc.def"}"#), SECOND)
            .await
            .unwrap();
        assert_eq!(token.header_value(), "Bearer abc.def");
        assert_eq!(format!("{token:?}"), "Bearer(…)");
    }

    #[tokio::test]
    async fn a_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-token\n").unwrap();
        let json = serde_json::json!({"tokenFile": path}).to_string();
        let token = of_user(&user(&json), SECOND).await.unwrap();
        assert_eq!(token.header_value(), "Bearer file-token");
        let json = serde_json::json!({"tokenFile": dir.path().join("gone")}).to_string();
        assert!(matches!(
            of_user(&user(&json), SECOND).await,
            Err(NoToken::Failed(_))
        ));
    }

    #[tokio::test]
    async fn an_exec_plugin_gives_its_status_token() {
        // What `aws eks get-token` and kubelogin print, made by a shell.
        let json = serde_json::json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "sh",
            "args": ["-c", "test -n \"$KUBERNETES_EXEC_INFO\" && printf '{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\"}}' \"$TOKEN_FOR_TEST\""],
            "env": [{"name": "TOKEN_FOR_TEST", "value": "from-exec"}],
        }})
        .to_string();
        let token = of_user(&user(&json), SECOND).await.unwrap();
        assert_eq!(token.header_value(), "Bearer from-exec");
    }

    #[tokio::test]
    async fn a_failing_exec_plugin_and_a_certificate_user_say_why() {
        let json = serde_json::json!({"exec": {"command": "sh", "args": ["-c", "echo expired >&2; exit 3"]}})
            .to_string();
        let Err(NoToken::Failed(why)) = of_user(&user(&json), SECOND).await else {
            panic!("a failing plugin is an error");
        };
        assert!(why.contains("expired"), "{why}");
        let cert = user(r#"{"client-certificate-data": "LS0t", "client-key-data": "LS0t"}"#);
        assert_eq!(of_user(&cert, SECOND).await, Err(NoToken::NotBearer));
    }
}
