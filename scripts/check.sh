#!/usr/bin/env bash
# The whole check, as CI runs it: set up with the dev tools, lint, type-check, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check imgsearch tests scripts
.venv/bin/mypy imgsearch
.venv/bin/python -m pytest -q "$@"
