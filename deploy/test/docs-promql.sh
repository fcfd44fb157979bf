#!/bin/sh
# Every PromQL example in README.md and docs/*.md (```promql blocks) parses: promtool checks
# each as a recording rule. A block holds one or more expressions: a line that starts at its
# first column with a letter starts a new one (after a comment, or after a line that does
# not leave the expression open), indented lines and lines starting with `)` or an operator
# continue it. Needs promtool.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
promtool=${PROMTOOL:-promtool}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
    echo "groups:"
    echo "  - name: docs"
    echo "    rules:"
    for doc in "$root/README.md" "$root"/docs/*.md; do
        # Each expression as a block scalar: no quoting to get wrong.
        awk -v doc="${doc#"$root"/}" '
          function flush() {
            if (expr != "") {
              n++
              printf "      # %s, example %d\n      - record: docs:%s_%d\n        expr: |\n%s\n", doc, n, id, n, expr
            }
            expr = ""
          }
          BEGIN { id = doc; gsub(/[^A-Za-z0-9]/, "_", id) }
          /^```promql$/ { inblock = 1; next }
          /^```/ && inblock { flush(); inblock = 0; next }
          !inblock { next }
          /^#/ || /^[[:space:]]*$/ { flush(); next }
          /^[A-Za-z]/ && expr != "" && last !~ /([(,*\/+-]|and|or|unless|by|on)[[:space:]]*$/ { flush() }
          { expr = (expr == "" ? "" : expr "\n") "          " $0; last = $0 }
          END { flush() }
        ' "$doc"
    done
} >"$work/docs.rules.yaml"

count=$(grep -c 'record:' "$work/docs.rules.yaml" || true)
if [ "$count" -lt 10 ]; then
    echo "FAIL the docs have PromQL examples: found $count"
    exit 1
fi
if "$promtool" check rules "$work/docs.rules.yaml" >"$work/err" 2>&1; then
    echo "ok   every PromQL example in README.md and docs/ parses ($count examples)"
else
    echo "FAIL PromQL examples in README.md and docs/"
    sed 's/^/     /' "$work/err"
    cat -n "$work/docs.rules.yaml" | sed 's/^/     /'
    exit 1
fi
