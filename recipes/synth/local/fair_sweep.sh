#!/usr/bin/env bash
# The same dev-set search budget for every model of Table 1: six runs each for the
# baseline (whose settings the ensemble members share), the students of the training
# data, the students of the transfer set and their hard pseudo-label control. Run it
# after stages 0-17 of recipes/synth/run.sh; it prints each run's best dev frame
# accuracy. Settings are chosen on dev only; the presets' values come from this sweep
# (see the README).
#   recipes/synth/local/fair_sweep.sh [--work-dir exp/synth] [--preset small] [--jobs 2]
#                                     [--groups "baseline students transfer pseudo"]
set -euo pipefail

work_dir=exp/synth
preset=small
jobs=2   # runs at once, one thread each
groups="baseline students transfer pseudo"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

exp=$work_dir/exp
frames=$work_dir/frames
sweep=$work_dir/fair_sweep
conf=$recipe_dir/conf/dnn_$preset.yaml
transfer_epochs=$(yaml_get "$recipe_dir/conf/$preset.yaml" transfer_epochs)
student_epochs=$(yaml_get "$recipe_dir/conf/$preset.yaml" student_epochs)
load_teachers "$exp"
mkdir -p "$sweep"

# group|name|store|options (over the preset's dnn_<preset>.yaml, whose model they keep;
# newbob is the schedule the presets started from, 8 epochs at most)
runs=()
newbob="--schedule newbob --epochs 8"
for lr in 0.008 0.02; do
  runs+=("baseline|lr${lr}|train|train-dnn --lr $lr $newbob")
  runs+=("baseline|lr${lr}_dropout0.2|train|train-dnn --lr $lr --dropout 0.2 $newbob")
done
runs+=("baseline|lr0.008_wd1e-4|train|train-dnn --lr 0.008 --weight-decay 1e-4 $newbob")
runs+=("baseline|lr0.02_cosine10|train|train-dnn --lr 0.02 --schedule cosine --epochs 10")
for spec in "students|train|soft_targets_T" "transfer|transfer|soft_targets_transfer_T" \
            "pseudo|transfer|soft_targets_transfer_T"; do
  IFS="|" read -r group store cache <<< "$spec"
  how="--schedule newbob --epochs $student_epochs"
  [ "$store" = transfer ] && how="--schedule newbob --epochs $transfer_epochs"
  [ "$group" = pseudo ] && how+=" --pseudo-labels"
  for s in "2 0.5 0.02" "2 0.5 0.008" "2 0.2 0.02" "1 0.5 0.02" "5 0.5 0.02" "2 0.5 0.02 d"; do
    read -r t hw lr drop <<< "$s"
    extra=""; name="T${t}_hw${hw}_lr${lr}"
    [ -n "${drop:-}" ] && { extra="--dropout 0.2"; name+="_dropout0.2"; }
    [ "$group" = pseudo ] && [ "$t" != 2 ] && continue  # the argmax does not depend on T
    runs+=("$group|$name|$store|distill $how --soft-targets $exp/$cache$t --temperature $t \
--hard-weight $hw --lr $lr $extra")
  done
done
[ "$groups" = "baseline students transfer pseudo" ] || {
  kept=(); for r in "${runs[@]}"; do [[ " $groups " == *" ${r%%|*} "* ]] && kept+=("$r"); done
  runs=("${kept[@]}")
}

# The ensemble's caches at T = 1, 2, 5 of the train and transfer stores (those of stages
# 15 and 17 are reused).
top_k=$(yaml_get "$recipe_dir/conf/$preset.yaml" soft_top_k)
for t in 1 2 5; do
  for spec in "students|train|soft_targets_T" "transfer pseudo|transfer|soft_targets_transfer_T"; do
    IFS="|" read -r users store cache <<< "$spec"
    for g in $users; do
      [[ " $groups " == *" $g "* ]] || continue
      asr-distill make-soft-targets "${teachers[@]}" --temperature "$t" --top-k "$top_k" \
        --no-progress "$frames/$store" "$exp/$cache$t"
      break
    done
  done
done

one() {
  IFS="|" read -r group name store opts <<< "$1"
  # shellcheck disable=SC2086  # opts is a step and its options
  OMP_NUM_THREADS=1 sweep_run "$sweep/${group}_$name" "$frames/$store" "$frames/dev" "$conf" \
    $opts
}

for r in "${runs[@]}"; do
  wait_for_slot "$jobs"
  one "$r" &
done
wait

dirs=()
for r in "${runs[@]}"; do
  IFS="|" read -r group name _ _ <<< "$r"
  dirs+=("$sweep/${group}_$name")
done
asr-distill curve-summary --label-from "$sweep" "${dirs[@]}"
