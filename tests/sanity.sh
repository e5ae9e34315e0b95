#!/usr/bin/env bash
# Collection sanity: docs load, artifact is clean, every role has argument specs, changelog lints.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
for m in plugins/modules/*.py; do
  name=$(basename "$m" .py)
  if ! out=$(ansible-doc "fastdowntime.postgresql.$name" 2>&1) || ! grep -q "EXAMPLES" <<<"$out" || ! grep -q "RETURN VALUES" <<<"$out"; then
    echo "sanity: ansible-doc fastdowntime.postgresql.$name lacks DOCUMENTATION/EXAMPLES/RETURN: $out" | head -5; fail=1
  fi
  # Modules run on target hosts too: they must compile with the system python3.
  /usr/bin/python3 -m py_compile "$m" || fail=1
done
for c in plugins/callback/*.py; do
  ansible-doc -t callback "fastdowntime.postgresql.$(basename "$c" .py)" >/dev/null || { echo "sanity: callback $c docs"; fail=1; }
done
for r in roles/*/; do
  [ -f "$r/meta/argument_specs.yml" ] || { echo "sanity: $r has no meta/argument_specs.yml"; fail=1; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ansible-galaxy collection build --output-path "$tmp" . >/dev/null
artifact=$(ls "$tmp"/*.tar.gz)
if tar tzf "$artifact" | grep -E '^(lab|tests|molecule|benchmarks|\.venv|\.collections|inventories/lab)/|__pycache__' ; then
  echo "sanity: the artifact carries lab/test/venv files"; fail=1
fi
antsibull-changelog lint || fail=1
[ "$fail" = 0 ] && echo "sanity: ok ($(tar tzf "$artifact" | wc -l) files in $(basename "$artifact"))"
exit $fail
