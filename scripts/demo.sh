#!/usr/bin/env bash
# The main job: set up (idempotent), then run the offline synthetic recipe at a
# small preset. Extra arguments go to the recipe (e.g. --preset tiny, --nj 4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash recipes/synth/run.sh --preset cpu "$@"
