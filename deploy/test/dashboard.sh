#!/bin/sh
# Checks the Grafana dashboard (deploy/base/grafana-dashboard.json, or the file given): every
# query parses as PromQL (promtool, Grafana's variables filled in), every panel has a place, the
# Prometheus datasource and queries, and every query filters by the dashboard's variables:
# `$cluster` and `$node` on every series selector; `$namespace` and `$pod` on the selectors of
# per-pod families (docs/metrics.md: those labelled namespace and pod: the pod that died) and
# on no other (there namespace and pod are the agent's own pod, the target's labels, and a
# dead pod's namespace would hide every agent). Needs jq and promtool.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
root=$(dirname "$deploy")
promtool=${PROMTOOL:-promtool}
dashboard=${1:-$deploy/base/grafana-dashboard.json}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
ok() { echo "ok   $1"; }
fail() {
    echo "FAIL $1"
    [ -s "$work/err" ] && sed 's/^/     /' "$work/err"
    failures=$((failures + 1))
}

# The per-pod families, from the contract's table.
grep '^| `coroner_' "$root/docs/metrics.md" | grep '`namespace`' | grep '`pod`' \
    | sed 's/^| `\([a-z_]*\)`.*/\1/' | jq -R . | jq -s . >"$work/per-pod.json"
if [ "$(jq length "$work/per-pod.json")" -ge 6 ]; then
    ok "docs/metrics.md names the per-pod families ($(jq -r 'join(", ")' "$work/per-pod.json"))"
else
    : >"$work/err"
    fail "docs/metrics.md names the per-pod families"
fi

if jq -e '[.templating.list[] | select(.type == "query") | .name] as $v
          | ["cluster", "namespace", "pod", "node"] | all(. as $n | $v | index($n))' \
    "$dashboard" >/dev/null; then
    ok "the dashboard has the variables cluster, namespace, pod, node"
else
    : >"$work/err"
    fail "the dashboard has the variables cluster, namespace, pod, node"
fi

# One line per selector that lacks a matcher it needs or has one it must not have.
jq -r --slurpfile perpod "$work/per-pod.json" '
  def has($m): index($m) != null;
  .panels[] | select(.type != "row") | .title as $title | .targets[]? | .expr as $expr
  | [$expr | scan("\\b(coroner_[a-z_]+|up)\\b(\\{[^}]*\\})?")]
  | if length == 0 then "\($title): no series in \($expr)" else .[] end
  | select(type == "array")
  | .[0] as $name | (.[1] // "") as $m
  | ($name | sub("_bucket$"; "")) as $family
  | select($name != "up" or $m != "")
  | ([ (if ($m | has("cluster=~\"$cluster\"")) then empty else "cluster=~\"$cluster\"" end),
       (if ($m | has("node=~\"$node\"")) then empty else "node=~\"$node\"" end),
       (if ($perpod[0] | index($family)) then
          (if ($m | has("namespace=~\"$namespace\"")) then empty else "namespace=~\"$namespace\"" end),
          (if ($m | has("pod=~\"$pod\"")) then empty else "pod=~\"$pod\"" end)
        else empty end) ] | map("lacks " + .)) as $missing
  | ([ if ($perpod[0] | index($family)) then empty
       else (if ($m | has("$namespace") or has("$pod")) then "filters the agent'"'"'s own namespace/pod by $namespace/$pod" else empty end)
       end ]) as $wrong
  | ($missing + $wrong) | select(length > 0)
  | "\($title): \($name)\($m): \(join("; "))"
' "$dashboard" >"$work/err"
if [ ! -s "$work/err" ]; then
    ok "every query filters by \$cluster and \$node, per-pod series by \$namespace and \$pod too"
else
    fail "every query filters by \$cluster and \$node, per-pod series by \$namespace and \$pod too"
fi

# Every query, with Grafana's variables filled in, as a recording rule: promtool parses each.
jq -r '.panels[].targets[]?.expr' "$dashboard" >"$work/exprs"
if [ ! -s "$work/exprs" ]; then
    : >"$work/err"
    fail "the dashboard has queries"
fi
{
    echo "groups:"
    echo "  - name: dashboard"
    echo "    rules:"
    n=0
    while IFS= read -r expr; do
        n=$((n + 1))
        expr=$(printf '%s' "$expr" | sed -e 's/\$__rate_interval/2m/g' -e 's/\$__interval/1m/g' -e 's/\$__range/6h/g' \
            -e 's/\$cluster/.*/g' -e 's/\$namespace/.*/g' -e 's/\$pod/.*/g' -e 's/\$node/.*/g')
        echo "      - record: dashboard:query$n"
        printf '        expr: %s\n' "$(printf '%s' "$expr" | jq -Rs .)"
    done <"$work/exprs"
} >"$work/dashboard.rules.yaml"
if "$promtool" check rules "$work/dashboard.rules.yaml" >"$work/err" 2>&1; then
    ok "every dashboard query parses ($(wc -l <"$work/exprs") queries)"
else
    fail "dashboard queries"
fi
: >"$work/err"
if jq -e '[.panels[] | select(.type != "row")
          | .gridPos.w > 0 and .gridPos.h > 0 and .datasource.uid == "${datasource}"
            and (.targets | length > 0)] | all' "$dashboard" >/dev/null; then
    ok "every dashboard panel has a place, a Prometheus datasource and queries"
else
    fail "every dashboard panel has a place, a Prometheus datasource and queries"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures dashboard check(s) failed"
    exit 1
fi
echo "all dashboard checks passed"
