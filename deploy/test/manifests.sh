#!/bin/sh
# Reads what `kubectl apply -k deploy/` would apply and checks that it holds what it promises:
# least privilege, probes, node name, wiring between the objects; and that every query of the
# Grafana dashboard parses as PromQL. Needs kubectl (kustomize), yq (the jq wrapper), jq, promtool.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
promtool=${PROMTOOL:-promtool}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kubectl kustomize "$deploy" >"$work/all.yaml"
yq -s '.' "$work/all.yaml" >"$work/all.json"

failures=0
# check DESCRIPTION JQ-FILTER: the filter, run on the array of every object, must yield true.
check() {
    if jq -e "$2" "$work/all.json" >/dev/null 2>"$work/err"; then
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

# Every dashboard query, with Grafana's variables filled in, as a recording rule: promtool
# parses each one.
jq -r '.panels[].targets[]?.expr' "$deploy/grafana-dashboard.json" >"$work/exprs"
if [ ! -s "$work/exprs" ]; then
    echo "FAIL the dashboard has queries"
    failures=$((failures + 1))
fi
{
    echo "groups:"
    echo "  - name: dashboard"
    echo "    rules:"
    n=0
    while IFS= read -r expr; do
        n=$((n + 1))
        expr=$(printf '%s' "$expr" | sed -e 's/\$__rate_interval/2m/g' -e 's/\$__interval/1m/g' \
            -e 's/\$__range/6h/g' -e 's/\$namespace/.*/g' -e 's/\$node/.*/g')
        echo "      - record: dashboard:query$n"
        printf '        expr: %s\n' "$(printf '%s' "$expr" | jq -Rs .)"
    done <"$work/exprs"
} >"$work/dashboard.rules.yaml"
if "$promtool" check rules "$work/dashboard.rules.yaml" >"$work/err" 2>&1; then
    echo "ok   every dashboard query parses ($(wc -l <"$work/exprs") queries)"
else
    echo "FAIL dashboard queries"
    sed 's/^/     /' "$work/err"
    failures=$((failures + 1))
fi
if jq -e '[.panels[] | select(.type != "row")
          | .gridPos.w > 0 and .gridPos.h > 0 and .datasource.uid == "${datasource}"
            and (.targets | length > 0)] | all' "$deploy/grafana-dashboard.json" >/dev/null; then
    echo "ok   every dashboard panel has a place, a Prometheus datasource and queries"
else
    echo "FAIL every dashboard panel has a place, a Prometheus datasource and queries"
    failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all manifest checks passed"
