#!/bin/sh
# Checks and unit-tests the alerts of a PrometheusRule with promtool: deploy/components/prometheus-operator/prometheus-rule.yaml
# with deploy/test/rules-test.yaml, or the rule and tests given (rules.sh RULE TESTS).
# The PrometheusRule's `spec` is a plain rule file: it is cut out (everything under `spec:`,
# dedented by two spaces) next to the tests, which name it coroner.rules.yaml.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
deploy=$(dirname "$here")
promtool=${PROMTOOL:-promtool}
rule=${1:-$deploy/components/prometheus-operator/prometheus-rule.yaml}
tests=${2:-$here/rules-test.yaml}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed -n '/^spec:$/,$p' "$rule" | tail -n +2 | sed 's/^  //' \
    >"$work/coroner.rules.yaml"
# The cut must have kept the rule file whole: it starts with its `groups:` key.
head -n 1 "$work/coroner.rules.yaml" | grep -qx 'groups:' || {
    echo "rules.sh: cannot find 'spec:' followed by 'groups:' in $rule" >&2
    exit 1
}
cp "$tests" "$work/rules-test.yaml"

"$promtool" check rules "$work/coroner.rules.yaml"
cd "$work" && "$promtool" test rules rules-test.yaml
