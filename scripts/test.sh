#!/usr/bin/env bash
# Sets up a virtual environment (once) and runs the linters and the whole test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt || exit 1
.venv/bin/python -m ruff check . || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure of the test set-up, not a pass" >&2
  exit 1
fi
exit "$rc"
