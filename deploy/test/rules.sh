#!/bin/sh
# Checks and unit-tests the alerts of deploy/prometheus-rule.yaml with promtool.
# The PrometheusRule's `spec` is a plain rule file: it is cut out (everything under `spec:`,
# dedented by two spaces) next to the tests, which name it coroner.rules.yaml.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
promtool=${PROMTOOL:-promtool}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed -n '/^spec:$/,$p' "$deploy/prometheus-rule.yaml" | tail -n +2 | sed 's/^  //' \
    >"$work/coroner.rules.yaml"
# The cut must have kept the rule file whole: it starts with its `groups:` key.
head -n 1 "$work/coroner.rules.yaml" | grep -qx 'groups:' || {
    echo "rules.sh: cannot find 'spec:' followed by 'groups:' in prometheus-rule.yaml" >&2
    exit 1
}
cp "$here/rules-test.yaml" "$work/"

"$promtool" check rules "$work/coroner.rules.yaml"
cd "$work" && "$promtool" test rules rules-test.yaml
