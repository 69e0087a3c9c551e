#!/usr/bin/env bash
# How many epochs do the baseline and the ensemble members need? The preset's
# dnn_<preset>.yaml (cosine schedule, so fewer epochs is a shorter schedule, not an
# early stop) trained at each epochs:seed of --runs, two at a time (one thread each);
# prints each run's best dev frame accuracy. Compare with the members of the same seeds
# in exp/ensemble/accuracy.yaml (member i has seed i+1). Run after stage 13 of
# recipes/synth/run.sh; writes exp/epoch_sweep/ under the work dir.
#   recipes/synth/local/epoch_sweep.sh [--work-dir exp/synth] [--preset small]
#       [--runs "8:1 7:1 8:2 7:2 8:3 7:3 8:4 7:4"]
set -euo pipefail

work_dir=exp/synth
preset=small
runs="8:1 7:1 8:2 7:2 8:3 7:3 8:4 7:4"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

frames=$work_dir/frames
sweep=$work_dir/exp/epoch_sweep
conf=$recipe_dir/conf/dnn_$preset.yaml
train_one() {  # EPOCHS:SEED
  local epochs=${1%%:*} seed=${1##*:}
  local dir=$sweep/e${epochs}_s$seed
  asr-distill train-dnn --config "$conf" --no-progress --epochs "$epochs" --seed "$seed" \
    "$frames/train" "$frames/dev" "$dir" 2> /dev/null
}
# shellcheck disable=SC2086  # runs is a list
run_parallel 2 train_one $runs
for run in $runs; do
  dir=$sweep/e${run%%:*}_s${run##*:}
  echo "epochs ${run%%:*} seed ${run##*:}: dev $(grep -o 'best dev frame accuracy [0-9.]*%' \
    "$dir/log/train.log" | tail -1 | awk '{print $5}')"
done
