#!/usr/bin/env bash
# Choose the distillation settings of a preset on DEV: re-run after stages 0-15 of
# recipes/synth/run.sh (it reads the baseline, the ensemble members and the soft-target
# caches of --work-dir) and prints each run's best dev frame accuracy (last epoch's
# for the soft 3 % runs, which have no early stopping). The cpu preset's distill_lr,
# hard_weight and small_* values come from this sweep; see the README.
#   recipes/synth/local/dev_sweep.sh [--work-dir exp/synth] [--preset cpu] [--jobs 2]
set -euo pipefail

work_dir=exp/synth
preset=cpu
jobs=2   # runs at once, one thread each
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

exp=$work_dir/exp
frames=$work_dir/frames
sweep=$work_dir/dev_sweep
conf=$recipe_dir/conf/dnn_$preset.yaml
frac=$(yaml_get "$recipe_dir/conf/$preset.yaml" small_fraction)
load_teachers "$exp"
mkdir -p "$sweep"

# name|options. Full-data students learn from the ensemble's top-k cache (T=2 was the
# recipe's choice on dev); newbob ends them before 16 epochs. The 3 % runs are stage
# 16's, with the baseline (or the ensemble's cache) as the teacher.
runs=(
  "full_lr0.008_hw0.5|distill --soft-targets $exp/soft_targets_T2 --temperature 2 --hard-weight 0.5 --lr 0.008 --epochs 16"
  "full_lr0.008_hw0|distill --soft-targets $exp/soft_targets_T2 --temperature 2 --hard-weight 0 --lr 0.008 --epochs 16"
  "full_lr0.02_hw0.5|distill --soft-targets $exp/soft_targets_T2 --temperature 2 --hard-weight 0.5 --lr 0.02 --epochs 16"
  "full_lr0.02_hw0.2|distill --soft-targets $exp/soft_targets_T2 --temperature 2 --hard-weight 0.2 --lr 0.02 --epochs 16"
  "full_lr0.02_hw0.5_T5|distill --soft-targets $exp/soft_targets_T5 --temperature 5 --hard-weight 0.5 --lr 0.02 --epochs 16"
  "full_lr0.02_hw0.5_cosine10|distill --soft-targets $exp/soft_targets_T2 --temperature 2 --hard-weight 0.5 --lr 0.02 --schedule cosine --epochs 10"
  "small_hard_lr0.008|train-dnn --data-fraction $frac --epochs 60 --schedule constant --early-stopping 3 --lr 0.008"
  "small_hard_lr0.03|train-dnn --data-fraction $frac --epochs 60 --schedule constant --early-stopping 3 --lr 0.03"
  "small_soft_T2_hw0.5_lr0.008_e30|distill --teacher $exp/dnn/final --data-fraction $frac --epochs 30 --schedule constant --temperature 2 --hard-weight 0.5 --lr 0.008 --epochs 16"
  "small_soft_T2_hw0_lr0.008_e60|distill --teacher $exp/dnn/final --data-fraction $frac --epochs 60 --schedule constant --temperature 2 --hard-weight 0 --lr 0.008"
  "small_soft_ensemble_T2_hw0_lr0.008_e60|distill --soft-targets $exp/soft_targets_T2 --data-fraction $frac --epochs 60 --schedule constant --temperature 2 --hard-weight 0 --lr 0.008"
  "small_soft_T2_hw0_lr0.03_e120|distill --teacher $exp/dnn/final --data-fraction $frac --epochs 120 --schedule constant --temperature 2 --hard-weight 0 --lr 0.03"
  "small_soft_T5_hw0_lr0.03_e120|distill --teacher $exp/dnn/final --data-fraction $frac --epochs 120 --schedule constant --temperature 5 --hard-weight 0 --lr 0.03"
  "small_soft_T10_hw0_lr0.03_e120|distill --teacher $exp/dnn/final --data-fraction $frac --epochs 120 --schedule constant --temperature 10 --hard-weight 0 --lr 0.03"
)

one() {
  local name=${1%%|*} opts=${1#*|}
  # shellcheck disable=SC2086  # opts is a step and its options
  OMP_NUM_THREADS=1 sweep_run "$sweep/$name" "$frames/train" "$frames/dev" "$conf" $opts
}

for r in "${runs[@]}"; do
  wait_for_slot "$jobs"
  one "$r" &
done
wait

# The soft 3 % runs have no early stopping: their last epoch is the result.
full=(); small=()
for r in "${runs[@]}"; do
  name=${r%%|*}
  if [[ $name == small_soft* ]]; then small+=("$sweep/$name"); else full+=("$sweep/$name"); fi
done
asr-distill curve-summary "${full[@]}"
asr-distill curve-summary --last "${small[@]}"
