#!/bin/sh
# Unit-tests the Grafana dashboard's death counts with promtool: every query of
# deploy/base/grafana-dashboard.json becomes a recording rule `dashboard:panel<id>:<refId>`, Grafana's
# variables filled in as a 1-minute step and a 1-hour range would fill them ($__interval=1m,
# $__rate_interval=2m, $__range=1h, every cluster, namespace, pod and node), and deploy/test/dashboard-test.yaml
# checks what they record for series born, retired and born again. Needs jq and promtool.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
promtool=${PROMTOOL:-promtool}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
    echo "groups:"
    echo "  - name: dashboard"
    echo "    interval: 1m"
    echo "    rules:"
    jq -r '.panels[] | .id as $id | .targets[]? | "\($id) \(.refId) \(.expr)"' \
        "$deploy/base/grafana-dashboard.json" |
        while IFS=' ' read -r id ref expr; do
            expr=$(printf '%s' "$expr" | sed -e 's/\$__rate_interval/2m/g' -e 's/\$__interval/1m/g' \
                -e 's/\$__range/1h/g' -e 's/\$cluster/.*/g' -e 's/\$namespace/.*/g' -e 's/\$pod/.*/g' -e 's/\$node/.*/g')
            echo "      - record: dashboard:panel$id:$ref"
            printf '        expr: %s\n' "$(printf '%s' "$expr" | jq -Rs .)"
        done
} >"$work/dashboard.rules.yaml"
cp "$here/dashboard-test.yaml" "$work/dashboard-test.yaml"

"$promtool" check rules "$work/dashboard.rules.yaml"
cd "$work" && "$promtool" test rules dashboard-test.yaml
