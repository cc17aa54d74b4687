#!/usr/bin/env bash
# Create .venv (if missing) and install imgsearch into it, with the test tools when given "dev".
# Used by demo.sh and check.sh; needs only python3 (>= 3.10) and the package registry.
# pip's output goes to .venv/setup.log and is shown only when the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
target=.
[ "${1:-}" = "dev" ] && target='.[dev]'
echo "setting up .venv (pip install -e $target) ..." >&2
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e "$target"; } \
    > .venv/setup.log 2>&1; then
  tail -n 40 .venv/setup.log >&2
  echo "setup failed; the whole log is in .venv/setup.log" >&2
  exit 1
fi
