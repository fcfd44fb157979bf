#!/bin/sh
# Reads what `kubectl apply -k` would apply — deploy/ (the base, no CRDs), the overlays with the
# Prometheus Operator's objects and kube-prometheus-stack's label, and a user's overlay in
# another namespace (deploy/test/overlay-elsewhere) — and checks that it holds what it
# promises: least privilege, probes, node name, wiring between the objects, alerts with their
# runbooks. The dashboard's queries are dashboard.sh's. Needs kustomize with Components
# (`kubectl kustomize` of kubectl ≥ 1.21, or KUSTOMIZE="kustomize build"), yq (the jq
# wrapper), jq.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
root=$(dirname "$deploy")
kustomize=${KUSTOMIZE:-kubectl kustomize}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# render DIR NAME: DIR (under deploy/) as kustomize builds it, to $work/NAME.json.
render() {
    if ! $kustomize "$deploy/$1" >"$work/$2.yaml" 2>"$work/err"; then
        echo "FAIL $kustomize $1"
        sed 's/^/     /' "$work/err"
        echo "     (deploy/ and the overlays need kustomize v4, as in kubectl >= 1.21: directories"
        echo "     in resources, Components; an older kubectl renders deploy/base only;"
        echo "     this one: $(${kustomize%% *} version --client 2>/dev/null | tr '\n' ' '))"
        exit 1
    fi
    yq -s '.' "$work/$2.yaml" >"$work/$2.json"
}
render . base
render overlays/prometheus-operator all
render overlays/kube-prometheus-stack kps
render test/overlay-elsewhere elsewhere
# The example applied with kubectl apply -f, as it is.
yq -s '.' "$deploy/examples/crashloop-reason/prometheus-rule.yaml" >"$work/example.json"

failures=0
# check DESCRIPTION JQ-FILTER [RENDER]: the filter, run on the array of every object of the
# render (default: deploy/overlays/prometheus-operator, everything), must yield true.
check() {
    if jq -e --slurpfile base "$work/base.json" --slurpfile all "$work/all.json" \
        --rawfile runbooks "$root/docs/runbooks.md" "$2" "$work/${3:-all}.json" >/dev/null 2>"$work/err"; then
        echo "ok   $1"
    else
        echo "FAIL $1"
        sed 's/^/     /' "$work/err"
        failures=$((failures + 1))
    fi
}

ds='(.[] | select(.kind == "DaemonSet" and .metadata.name == "coroner"))'
pod="$ds.spec.template.spec"
ctr="($pod.containers[] | select(.name == \"coroner\"))"

check "every object is there" '
  [.[] | .kind] | sort == (["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
    "Namespace", "NetworkPolicy", "PriorityClass", "PrometheusRule", "Service", "ServiceAccount",
    "ServiceMonitor"] | sort)'
check "namespaced objects are in namespace coroner" '
  [.[] | select(.kind | IN("Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass") | not)
       | .metadata.namespace] | all(. == "coroner")'
check "the namespace admits the agent's pods (host paths, BPF capabilities)" '
  .[] | select(.kind == "Namespace") | .metadata.labels["pod-security.kubernetes.io/enforce"] == "privileged"'

check "ClusterRole: no wildcards" '
  [.[] | select(.kind == "ClusterRole") | .rules[] | (.apiGroups + .resources + .verbs)[]] | all(. != "*")'
check "ClusterRole: no secrets, no writes to pods" '
  [.[] | select(.kind == "ClusterRole") | .rules[]
       | select((.resources | index("secrets")) or
                ((.resources | index("pods")) and (.verbs - ["get", "list", "watch"] | length > 0)))]
  | length == 0'
check "ClusterRole: exactly what the agent uses" '
  [.[] | select(.kind == "ClusterRole" and .metadata.name == "coroner") | .rules[] | {g: .apiGroups, r: .resources, v: (.verbs | sort)}]
  == [{g: [""], r: ["pods"], v: ["list", "watch"]},
      {g: ["apps"], r: ["replicasets"], v: ["get"]},
      {g: ["batch"], r: ["jobs"], v: ["get"]},
      {g: [""], r: ["events"], v: ["list", "watch"]},
      {g: ["events.k8s.io"], r: ["events"], v: ["create", "patch"]},
      {g: ["authentication.k8s.io"], r: ["tokenreviews"], v: ["create"]},
      {g: ["authorization.k8s.io"], r: ["subjectaccessreviews"], v: ["create"]}]'
check "coroner-viewer: exactly what kubectl coroner uses, read-only" '
  [.[] | select(.kind == "ClusterRole" and .metadata.name == "coroner-viewer") | .rules[]
       | {g: .apiGroups, r: (.resources | sort), v: (.verbs | sort)}]
  == [{g: [""], r: ["pods"], v: ["get", "list"]},
      {g: [""], r: ["pods/proxy"], v: ["get"]},
      {g: ["apps"], r: ["daemonsets", "deployments", "replicasets", "statefulsets"], v: ["get", "list"]},
      {g: ["batch"], r: ["jobs"], v: ["get"]},
      {g: ["events.k8s.io"], r: ["events"], v: ["list"]}]'
check "coroner-viewer is bound to no one: the cluster's admin chooses who" '
  [.[] | select(.kind | IN("ClusterRoleBinding", "RoleBinding")) | .roleRef.name] | index("coroner-viewer") == null'
check "the binding gives the ClusterRole to the agent's ServiceAccount" "
  (.[] | select(.kind == \"ClusterRoleBinding\")) as \$b
  | \$b.roleRef.name == (.[] | select(.kind == \"ClusterRole\" and .metadata.name == \"coroner\") | .metadata.name)
  and \$b.subjects == [{kind: \"ServiceAccount\", name: $pod.serviceAccountName, namespace: \"coroner\"}]"

check "DaemonSet: not privileged, no privilege escalation, read-only root" "
  $ctr.securityContext | .privileged == false and .allowPrivilegeEscalation == false
    and .readOnlyRootFilesystem == true"
check "DaemonSet: all capabilities dropped, only BPF, PERFMON and SYS_RESOURCE added" "
  $ctr.securityContext.capabilities | .drop == [\"ALL\"] and (.add | sort) == [\"BPF\", \"PERFMON\", \"SYS_RESOURCE\"]"
check "DaemonSet: no host PID, IPC or network namespace" "
  $pod | (.hostPID // false) == false and (.hostIPC // false) == false and (.hostNetwork // false) == false"
check "DaemonSet: every host path is mounted read-only" "
  [$pod.volumes[] | select(.hostPath) | .name] as \$host
  | [$ctr.volumeMounts[] | select(.name | IN(\$host[])) | .readOnly] | length > 0 and all(. == true)"
check "DaemonSet: cgroups, BTF and tracefs come from the host" "
  [$pod.volumes[] | .hostPath.path] | sort == [\"/sys/fs/cgroup\", \"/sys/kernel/btf\", \"/sys/kernel/tracing\"]"
check "DaemonSet: --cgroup-root is where the host's cgroups are mounted" "
  ($ctr.volumeMounts[] | select(.name == \"cgroup\") | .mountPath) as \$m
  | [$ctr.args[] | select(. == \"--cgroup-root=\" + \$m)] | length == 1"
check "DaemonSet: NODE_NAME from the downward API" "
  [$ctr.env[] | select(.name == \"NODE_NAME\") | .valueFrom.fieldRef.fieldPath] == [\"spec.nodeName\"]"
check "DaemonSet: liveness on /livez, readiness and startup on /readyz" "
  $ctr | (.livenessProbe.httpGet.path == \"/livez\")
    and ([.readinessProbe, .startupProbe] | all(.httpGet.path == \"/readyz\"))
    and ([.livenessProbe, .readinessProbe, .startupProbe] | all(.httpGet.port == \"http-metrics\"))"
check "DaemonSet: a failed start's log is its termination message" "
  $ctr.terminationMessagePolicy == \"FallbackToLogsOnError\""
check "DaemonSet: the API is guarded, the guard knows its pod from the downward API" "
  ($ctr.env | map({(.name): (.value // .valueFrom.fieldRef.fieldPath)}) | add) as \$e
  | \$e.CORONER_HTTP_AUTH == \"kubernetes\" and \$e.POD_NAME == \"metadata.name\"
    and \$e.POD_NAMESPACE == \"metadata.namespace\""
check "NetworkPolicy: only ingress to the agents' port, from the scraper's namespace, its own, the API server" "
  (.[] | select(.kind == \"NetworkPolicy\")) as \$np
  | \$np.spec.podSelector.matchLabels == ${ds}.spec.selector.matchLabels
  and \$np.spec.policyTypes == [\"Ingress\"]
  and (\$np.spec.ingress | length == 1)
  and \$np.spec.ingress[0].ports == [{port: \"http-metrics\", protocol: \"TCP\"}]
  and ([\$np.spec.ingress[0].from[] | keys[0]] | sort == [\"ipBlock\", \"namespaceSelector\", \"podSelector\"])
  and (\$np.spec.ingress[0].from[] | select(.namespaceSelector) | .namespaceSelector.matchLabels == {\"coroner.io/scrape\": \"true\"})"
check "DaemonSet: memory request and limit, CPU request" "
  $ctr.resources | .requests.memory and .limits.memory and .requests.cpu"
check "DaemonSet: on every node, with its priority class" "
  ($pod.tolerations == [{operator: \"Exists\"}])
  and $pod.priorityClassName == (.[] | select(.kind == \"PriorityClass\") | .metadata.name)"
check "DaemonSet: runs as its ServiceAccount" "
  $pod.serviceAccountName == (.[] | select(.kind == \"ServiceAccount\") | .metadata.name)"
check "the port the agent listens on is the one Service and ServiceMonitor use" "
  ($ctr.ports[] | select(.name == \"http-metrics\") | .containerPort) as \$port
  | ($ctr.env[] | select(.name == \"CORONER_LISTEN\") | .value | endswith(\":\" + (\$port | tostring)))
  and (.[] | select(.kind == \"Service\") | .spec.ports[0] | .targetPort == \"http-metrics\" and .port == \$port)
  and (.[] | select(.kind == \"ServiceMonitor\") | .spec.endpoints[0] | .port == \"http-metrics\" and .path == \"/metrics\")"
check "the Service selects the agent's pods" "
  (.[] | select(.kind == \"Service\") | .spec.selector) as \$sel
  | $pod as \$p | ${ds}.spec.template.metadata.labels | to_entries | map(select(.key | IN(\$sel | keys[]))) | from_entries == \$sel"
check "ServiceMonitor: dead pods' namespace/pod/container labels win over the target's" '
  .[] | select(.kind == "ServiceMonitor") | .spec.endpoints[0].honorLabels == true'
check "the job is named coroner, as the alerts expect" '
  (.[] | select(.kind == "Service") | .metadata.name) == "coroner"'
check "the dashboard ConfigMap holds the dashboard" '
  .[] | select(.kind == "ConfigMap") | .data["coroner-dashboard.json"] | fromjson | .uid == "coroner-deaths"'


# Without the Prometheus Operator: the base has nothing but built-in kinds; the overlays add the
# operator's two objects and change nothing else.
check "deploy/ (the base) needs no CRD: only built-in API groups" '
  [.[] | .apiVersion] | all(IN("v1", "apps/v1", "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1", "scheduling.k8s.io/v1"))' base
check "overlays/prometheus-operator: the base plus ServiceMonitor and PrometheusRule, nothing else changed" '
  def key: [.kind, .metadata.name];
  ([.[] | select(.kind | IN("ServiceMonitor", "PrometheusRule") | not)] | sort_by(key))
    == ($base[0] | sort_by(key))
  and ([.[] | select(.apiVersion == "monitoring.coreos.com/v1") | .kind] | sort == ["PrometheusRule", "ServiceMonitor"])'
check "overlays/kube-prometheus-stack: ServiceMonitor and PrometheusRule labelled release: kube-prometheus-stack, nothing else changed" '
  def key: [.kind, .metadata.name];
  ([.[] | select(.apiVersion == "monitoring.coreos.com/v1") | .metadata.labels.release] == ["kube-prometheus-stack", "kube-prometheus-stack"])
  and ([.[] | del(.metadata.labels.release)] | sort_by(key)) == ($all[0] | sort_by(key))' kps
check "an overlay in another namespace: every namespaced object, the binding's subject and the operator's objects follow it" '
  ([.[] | select(.kind | IN("Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass") | not)
        | .metadata.namespace] | length > 0 and all(. == "node-agents"))
  and (.[] | select(.kind == "Namespace") | .metadata.name) == "node-agents"
  and ([.[] | select(.kind == "ClusterRoleBinding") | .subjects[].namespace] | all(. == "node-agents"))' elsewhere
check "an overlay of a release not named kube-prometheus-stack: its label patch wins over the component" '
  [.[] | select(.apiVersion == "monitoring.coreos.com/v1") | .metadata.labels.release] == ["monitoring", "monitoring"]' elsewhere
check "ServiceMonitor: no namespaceSelector, so it finds the Service in its own namespace wherever that is" '
  (.[] | select(.kind == "ServiceMonitor")) as $sm
  | ($sm.spec | has("namespaceSelector") | not)
  and (.[] | select(.kind == "Service") | .metadata.namespace == $sm.metadata.namespace
       and (.metadata.labels | contains($sm.spec.selector.matchLabels)))' elsewhere
check "ServiceMonitor: every series gets the node of the agent that scraped it" '
  .[] | select(.kind == "ServiceMonitor") | .spec.endpoints[0].relabelings
  | any(.sourceLabels == ["__meta_kubernetes_pod_node_name"] and .targetLabel == "node")'

# Alerts: a runbook each, in docs/runbooks.md; deaths keep the node they happened on.
rules='[.[] | select(.kind == "PrometheusRule") | .spec.groups[].rules[] | select(.alert)]'
check "every alert has a runbook_url: docs/runbooks.md#<alert in lower case>, one base for all" "
  $rules | length > 5
  and all(.annotations.runbook_url | test(\"^https://[^#]+/docs/runbooks[.]md#\"))
  and all(.annotations.runbook_url == (.annotations.runbook_url | sub(\"#.*\"; \"\")) + \"#\" + (.alert | ascii_downcase))
  and ([.[].annotations.runbook_url | sub(\"#.*\"; \"\")] | unique | length == 1)"
check "docs/runbooks.md has a section for every alert" "
  ([\$runbooks | scan(\"(?m)^## (\\\\S+)\$\") | .[0]]) as \$sections
  | $rules | all(.alert as \$a | \$sections | index(\$a))"
check "the crash-loop example's alerts too: a runbook_url each (the same base), and its section" "
  ([\$runbooks | scan(\"(?m)^## (\\\\S+)\$\") | .[0]]) as \$sections
  | (\$all[0] | $rules | first | .annotations.runbook_url | sub(\"#.*\"; \"\")) as \$base
  | $rules | length > 0
    and all(.annotations.runbook_url == \$base + \"#\" + (.alert | ascii_downcase))
    and all(.alert as \$a | \$sections | index(\$a))" example
check "every alert that aggregates keeps node (CoronerAbsent: no agent, no node)" "
  $rules | map(select(.alert != \"CoronerAbsent\") | [.expr | scan(\"by \\\\(([^)]*)\\\\)\") | .[0] | split(\",\") | map(ltrimstr(\" \") | rtrimstr(\" \")) | index(\"node\")] | all(. != null)) | all"
check "CoronerEventsLost: a share of the events seen, held for a while" "
  $rules | .[] | select(.alert == \"CoronerEventsLost\")
  | (.expr | test(\"coroner_events_lost_total\") and test(\"/\") and test(\"coroner_events_total\")) and (.for | length > 0)"

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all manifest checks passed"
