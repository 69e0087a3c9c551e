#!/usr/bin/env bash
# Issue 18: does a larger minibatch (the trainer's FLOP/s grows with it on a CPU,
# bench/train_throughput.py) keep the baseline's dev frame accuracy? The baseline
# (the preset's dnn_<preset>.yaml, everything else as it is) trained at each
# batch:lr:seed of --runs; prints each run's best dev frame accuracy and its wall time.
# Run after stage 10 of recipes/synth/run.sh; writes exp/batch_sweep/ under the work dir.
#   recipes/synth/local/batch_sweep.sh [--work-dir exp/synth] [--preset cpu]
#       [--runs "256:0.02:0 512:0.04:0 1024:0.08:0 1024:0.04:0"]
set -euo pipefail

work_dir=exp/synth
preset=cpu
runs="256:0.02:0 512:0.04:0 1024:0.08:0 1024:0.04:0"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

frames=$work_dir/frames
sweep=$work_dir/exp/batch_sweep
conf=$recipe_dir/conf/dnn_$preset.yaml
for run in $runs; do
  IFS=: read -r batch lr seed <<< "$run"
  dir=$sweep/b${batch}_lr${lr}_s$seed
  start=$(date +%s)
  asr-distill train-dnn --config "$conf" --no-progress --batch-size "$batch" --lr "$lr" \
    --seed "$seed" "$frames/train" "$frames/dev" "$dir"
  echo "batch $batch lr $lr seed $seed: dev $(grep -o 'best dev frame accuracy [0-9.]*%' \
    "$dir/log/train.log" | tail -1 | awk '{print $5}'), $(( $(date +%s) - start )) s"
done
