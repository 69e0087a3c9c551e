#!/usr/bin/env bash
# The test command: set up (idempotent), lint, run the test suite (pytest-xdist, 2 workers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m ruff check .
# Two workers, a test file each at a time (its module fixtures are built once; session
# fixtures once per worker). conftest.py puts the slow end-to-end files first and
# --no-loadscope-reorder keeps that order (xdist would hand out the files with the most
# tests first), so the recipe runs start at once instead of last.
python3 -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder "$@"
