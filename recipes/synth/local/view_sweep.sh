#!/usr/bin/env bash
# Issue 13, item 3: which view should the teachers label? Students of the training
# frames at the preset's student settings (T, hard weight, lr, schedule, epochs), with
# soft targets from a cache of the clean frames, or from the teachers run online on a
# fresh perturbation each step (mixup, frequency masks), or from a cache of V masked
# views of every frame (make-soft-targets --views V, bands as wide as the dnn conf's
# freq_mask; the student's epoch e sees view e mod V). Prints each run's best dev
# frame accuracy, its epoch and the training seconds (the sum of train_curve.csv's
# epochs; each run's time beside the others, --jobs at once). Run after stages 0-15 of
# recipes/synth/run.sh; settings are judged on dev only.
#   recipes/synth/local/view_sweep.sh [--work-dir exp/synth] [--preset cpu] [--jobs 2]
#                                     [--runs "cached cached_fmask0 views3 mixup0.4 fmask8 ..."]
set -euo pipefail

work_dir=exp/synth
preset=cpu
jobs=2   # runs at once, threads shared
runs="cached online mixup0.4 fmask8 mixup0.4_fmask8"
epochs=""  # default: the preset's student_epochs
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

exp=$work_dir/exp
frames=$work_dir/frames
sweep=$work_dir/view_sweep
conf=$recipe_dir/conf/dnn_$preset.yaml
vars=$(yaml_vars "$recipe_dir/conf/$preset.yaml" hard_weight distill_lr student_schedule \
  student_epochs soft_top_k)
eval "$vars"
t=2  # the presets' student temperature
epochs=${epochs:-$student_epochs}
load_teachers "$exp"
mkdir -p "$sweep"
cache=$exp/soft_targets_T$t
asr-distill make-soft-targets "${teachers[@]}" --temperature "$t" --top-k "$soft_top_k" \
  --no-progress "$frames/train" "$cache"
view_mask=$(yaml_get "$conf" freq_mask)
for name in $runs; do  # the masked-view caches the runs ask for, before they start
  for part in ${name//_/ }; do
    case $part in
      views*) asr-distill make-soft-targets "${teachers[@]}" --temperature "$t" \
        --top-k "$soft_top_k" --views "${part#views}" --freq-mask "$view_mask" --no-progress \
        "$frames/train" "${cache}_$part" ;;
    esac
  done
done

one() {
  # NAME: parts joined by "_": "cached" (soft targets from the cache of the clean frames)
  # or online teachers otherwise; mixupA, fmaskN set --mixup-alpha, --freq-mask (the
  # dnn conf's freq_mask applies where no fmaskN is given; fmask0 turns it off); viewsV:
  # the cache of V masked views, the student's windows under its bands (no masks of its own).
  local name=$1 source=("${teachers[@]}") opts=() part
  for part in ${name//_/ }; do
    case $part in
      cached) source=(--soft-targets "$cache") ;;
      online) ;;
      views*) source=(--soft-targets "${cache}_$part") opts+=(--freq-mask 0) ;;
      mixup*) opts+=(--mixup-alpha "${part#mixup}") ;;
      fmask*) opts+=(--freq-mask "${part#fmask}") ;;
      *) echo "view_sweep: unknown run part '$part'" >&2; return 1 ;;
    esac
  done
  sweep_run "$sweep/$name" "$frames/train" "$frames/dev" "$conf" distill "${source[@]}" "${opts[@]}" \
    --temperature "$t" --hard-weight "$hard_weight" --lr "$distill_lr" \
    --schedule "$student_schedule" --epochs "$epochs"
}

# shellcheck disable=SC2086  # runs is a list
OMP_NUM_THREADS=$(nproc) run_parallel "$jobs" one $runs
dirs=()
for name in $runs; do dirs+=("$sweep/$name"); done
asr-distill curve-summary "${dirs[@]}"
