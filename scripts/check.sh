#!/usr/bin/env bash
# The whole check, as CI runs it: set up with the dev tools, lint, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check imgsearch tests scripts
.venv/bin/python -m pytest -q "$@"
