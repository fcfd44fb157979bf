//! `kubectl coroner why`, end to end: the real `kubectl-coroner` binary with a kubeconfig that
//! points at the API server double, which serves the pod, its Deployment and the coroner agent
//! pod on the node, and forwards the pod proxy path to the REAL agent's HTTP listener. The
//! deaths are real: containers on the real runtime (containerd + runc, driven by the kubelet
//! double), one OOM-killed at its memory limit. Checked: the table and `-o json` (the records
//! as the agent wrote them), a Deployment's deaths through the records' workload, the fallback
//! to coroner's Events when the agent pod is absent, unreachable or forbidden, and the error for
//! a pod that does not exist. The agent runs as the `DaemonSet` runs it, with `--http-auth
//! kubernetes`: the plugin's kubeconfig user gets its token from an `exec` credential plugin, and
//! the plugin sends it through the proxy in `X-Coroner-Authorization`, which the double's proxy
//! passes on as the API server does (it drops `Authorization`). Needs root and the runtime
//! (`cargo xtask test` installs it).

#[path = "plugin/support.rs"]
mod support;

use std::process::Output;

use coroner_tests::runtime::Pod;
use serde_json::Value;
use support::{AGENT_NS, Cluster, DEPLOYMENT, Deaths, RECORD_WAIT, contains, plugin_as, stage};

#[test]
fn why_a_pod_died_from_the_agent_then_from_events() {
    let Some(mut c) = Cluster::start("why_a_pod_died_from_the_agent_then_from_events") else {
        return;
    };
    let deaths = stage(&mut c);
    from_the_agent(&c, &deaths);
    // The agent's own Event about the OOM kill, for the fallbacks.
    let server = &c.server;
    let posted = c
        .kubelet
        .tokio()
        .block_on(server.wait_until(RECORD_WAIT, |s| {
            s.events().iter().any(|e| e["reason"] == "OOMKilled")
        }));
    assert!(posted, "the agent's Event: {:#?}", server.events());
    from_events(&c, &deaths.pod);
    missing(&c, &deaths.pod.namespace);
}

/// The table and `-o json` from the real agent through the pod proxy; one container; the
/// Deployment.
fn from_the_agent(c: &Cluster, d: &Deaths) {
    let (pod, ns) = (&d.pod, d.pod.namespace.as_str());
    let agent_pod = c.put_agent_pod(c.agent.addr().port());
    let target = format!("pod/{}", pod.name);
    let table = c.ok(&["why", &target, "-n", ns]);
    contains(&table, &format!("pod {ns}/{} on node {}", pod.name, c.node));
    contains(
        &table,
        &format!("node {}: agent {AGENT_NS}/{agent_pod}, 2 records", c.node),
    );
    contains(&table, "2 deaths, newest first:");
    let oom_at = table
        .find("container hog  OOMKilled")
        .expect("the OOM kill");
    let crash_at = table.find("container setup  Error").expect("the crash");
    assert!(oom_at < crash_at, "newest first:\n{table}");
    contains(&table, "    initiator  oom_killer\n");
    contains(
        &table,
        "    exit       status 137: SIGKILL from the kernel\n",
    );
    contains(&table, "limit 64Mi; OOM memcg, limit 64Mi of ");
    contains(&table, &format!("of {}", pod.cgroup_of(&d.hog)));
    contains(&table, "    role       init: hog (pid ");
    contains(&table, "    exit       status 3: exit code 3\n");
    contains(
        &table,
        "OOMKilled by the kernel: memcg limit 64Mi hit by container \"hog\"",
    );

    // -o json: the records exactly as the agent wrote them, newest first.
    let json: Value = serde_json::from_str(&c.ok(&["why", &target, "-n", ns, "-o", "json"]))
        .expect("-o json is JSON");
    assert_eq!(json["records"][0], d.oom.json, "{json:#}");
    assert_eq!(json["records"][1], d.crashed.json, "{json:#}");
    assert_eq!(
        json["sources"][0]["agent"],
        format!("{AGENT_NS}/{agent_pod}")
    );

    let only = c.ok(&["why", &target, "-n", ns, "-c", "setup"]);
    contains(&only, "1 death, newest first:");
    // Flags before the subcommand, as `kubectl coroner -n NS why …` passes them.
    let by_deployment = c.ok(&["-n", ns, "why", &format!("deployment/{DEPLOYMENT}")]);
    contains(
        &by_deployment,
        &format!("Deployment {ns}/{DEPLOYMENT} (1 pod)"),
    );
    contains(
        &by_deployment,
        &format!("pod {}  container hog  OOMKilled", pod.name),
    );
    contains(&by_deployment, "2 deaths, newest first:");
    c.server.delete_pod(AGENT_NS, &agent_pod);
}

/// No agent pod, an agent pod that answers nothing, the pod proxy forbidden, the pod deleted:
/// each said, and coroner's Events instead.
fn from_events(c: &Cluster, pod: &Pod) {
    let (ns, server) = (pod.namespace.as_str(), &c.server);
    let target = format!("pod/{}", pod.name);
    let fallback = c.ok(&["why", &target, "-n", ns]);
    contains(
        &fallback,
        &format!(
            "node {}: no coroner agent (no pod labelled app.kubernetes.io/name=coroner in \
             namespace coroner)",
            c.node
        ),
    );
    contains(
        &fallback,
        "2 Events of coroner's (no agent had records of this pod)",
    );
    contains(&fallback, "container hog  Warning OOMKilled");
    contains(&fallback, "    OOMKilled by the kernel: memcg limit 64Mi");
    let json: Value =
        serde_json::from_str(&c.ok(&["why", &target, "-n", ns, "-o", "json"])).expect("JSON");
    assert_eq!(json["records"], serde_json::json!([]), "{json:#}");
    assert!(
        json["events"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["reason"] == "OOMKilled" && e["container"] == "hog")),
        "{json:#}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dead = c.put_agent_pod(closed);
    let unreachable = c.ok(&["why", &target, "-n", ns]);
    contains(
        &unreachable,
        &format!("the agent {AGENT_NS}/{dead} is unreachable: "),
    );
    contains(
        &unreachable,
        &format!(
            "error trying to reach service: dial tcp 127.0.0.1:{closed}: connect: connection refused (HTTP 503)"
        ),
    );
    contains(&unreachable, "container hog  Warning OOMKilled");
    server.delete_pod(AGENT_NS, &dead);

    let back = c.put_agent_pod(c.agent.addr().port());
    server.forbid(
        "/proxy/",
        &format!(
            "pods \"{back}\" is forbidden: User \"dev\" cannot get resource \"pods/proxy\" in \
             API group \"\" in the namespace \"coroner\""
        ),
    );
    let forbidden = c.ok(&["why", &target, "-n", ns]);
    contains(
        &forbidden,
        &format!("forbidden to read the agent {AGENT_NS}/{back}: you may not get pods/proxy"),
    );
    contains(&forbidden, "container hog  Warning OOMKilled");
    server.allow_all();

    // The agent's own guard: a user without a bearer token (the double's kubeconfig user has
    // none, as a client-certificate user), a token the API server does not know, and a user
    // whose grant was taken back.
    let stdout = |out: Output| {
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let no_token = stdout(plugin_as(server.kubeconfig(), &["why", &target, "-n", ns]));
    contains(
        &no_token,
        &format!(
            "the agent {AGENT_NS}/{back} needs your bearer token: the kubeconfig user has no \
             bearer token (a client certificate?): pass --agent-token"
        ),
    );
    contains(&no_token, "container hog  Warning OOMKilled");
    let unknown = c.ok(&["why", &target, "-n", ns, "--agent-token", "t-unknown"]);
    contains(
        &unknown,
        &format!(
            "the agent {AGENT_NS}/{back} needs your bearer token: unauthenticated: the API \
             server did not accept the token"
        ),
    );
    // A user the API server knows, without the grant (the agent caches a grant for a minute:
    // a revocation would be seen that much later).
    server.add_token("t-eve", "eve", &[]);
    let refused = c.ok(&["why", &target, "-n", ns, "--agent-token", "t-eve"]);
    contains(
        &refused,
        &format!("forbidden to read the agent {AGENT_NS}/{back}: you may not get pods/proxy"),
    );
    contains(&refused, "user \"eve\" may not");
    contains(&refused, "container hog  Warning OOMKilled");

    // The pod deleted: its Events still tell.
    server.delete_pod(ns, &pod.name);
    let gone = c.ok(&["why", &target, "-n", ns]);
    contains(&gone, &format!("pod {ns}/{}\n", pod.name));
    contains(
        &gone,
        "the pod does not exist (any more): only coroner's Events tell",
    );
    contains(&gone, "container hog  Warning OOMKilled");
}

/// A pod that does not exist and has no Events, a pod RBAC hides, a Deployment that does not
/// exist: exit 1.
fn missing(c: &Cluster, ns: &str) {
    let out = c.plugin(&["why", "pod/no-such-pod", "-n", ns]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    contains(
        &String::from_utf8_lossy(&out.stderr),
        &format!(
            "error: pod {ns}/no-such-pod not found, and coroner posted no Events about a pod \
             of that name"
        ),
    );
    // RBAC refuses the pod itself: which permission, and where to get it.
    c.server.forbid(
        "/pods/secret-pod",
        &format!("pods \"secret-pod\" is forbidden: User \"dev\" cannot get resource \"pods\" in API group \"\" in the namespace \"{ns}\""),
    );
    let out = c.plugin(&["why", "pod/secret-pod", "-n", ns]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    contains(
        &String::from_utf8_lossy(&out.stderr),
        &format!(
            "error: forbidden: you may not get pods in namespace {ns} (pods \"secret-pod\" is forbidden: "
        ),
    );
    contains(
        &String::from_utf8_lossy(&out.stderr),
        "the ClusterRole coroner-viewer (deploy/base/rbac-viewer.yaml) grants what `kubectl coroner` needs",
    );
    let out = c.plugin(&["why", "deploy/nope", "-n", ns]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    contains(
        &String::from_utf8_lossy(&out.stderr),
        &format!("error: Deployment {ns}/nope not found"),
    );
}
