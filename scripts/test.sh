#!/usr/bin/env bash
# Lint, then the whole test suite (real-kernel tests included when run as root).
set -uo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local GOCACHE=${GOCACHE:-/tmp/collector-gocache}
.venv/bin/ruff check . || { echo "test: ruff found problems" >&2; exit 1; }
.venv/bin/python -m pytest -ra "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "test: pytest collected no tests; that is a broken suite, not a pass" >&2
  exit 1
fi
exit $rc
