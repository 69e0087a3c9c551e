#!/usr/bin/env bash
# The main job: set up (idempotent), then run the offline synthetic recipe at the
# small preset (every stage, a 10-model ensemble, Tables 1 and 5), which prints the
# report at the end (also in exp/synth/report/). Extra arguments go to the recipe
# (e.g. --preset cpu, --nj 4, --stage 11).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$(date +%s)
bash recipes/synth/run.sh --preset small "$@"
echo "demo: recipe finished in $(( $(date +%s) - start )) s; report in <work dir>/report/ (default exp/synth)" >&2
