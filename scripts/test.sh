#!/usr/bin/env bash
# The test command: set up (idempotent), lint, run the test suite (pytest-xdist, 2 workers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m ruff check .
# Two workers, a test file each at a time (its module fixtures built once); conftest.py
# hands out the slow end-to-end files first, so the other worker fills in beside them.
python3 -m pytest -q -n 2 --dist loadfile "$@"
