#!/usr/bin/env bash
# What ansible-test sanity (make lint) does not check: modules compile with the system python3 (the
# pgbouncer hosts run pgbouncer_watchdog with it), and every role has argument specs.
# The tarball's list: tests/unit/test_build_artifact.py.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
for m in plugins/modules/*.py; do
  /usr/bin/python3 -m py_compile "$m" || fail=1
done
for r in roles/*/; do
  [ -f "$r/meta/argument_specs.yml" ] || { echo "sanity: $r has no meta/argument_specs.yml"; fail=1; }
done
[ "$fail" = 0 ] && echo "sanity: ok"
exit $fail
