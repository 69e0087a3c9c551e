#!/usr/bin/env bash
# Issue 19: the dev search of the specialists' settings (the paper's section 5) on a
# recipe's baseline (exp/dnn/final) as the generalist: M senone sets (--num-sets), the
# specialists' epochs and learning rates (--lrs; default the DNN config's), and n, the
# generalist's top senones that pick the active specialists. Every (M, epochs, lr)
# clusters and trains (soft-target weight: the preset's specialist_soft_weight); every n
# is scored on dev by specialist-accuracy.
# The setting with the best dev frame accuracy is then scored on test, once. Run after
# stage 12 of recipes/synth/run.sh; writes exp/sweep_specialists/ under the work dir and
# prints one line per setting, then the choice.
#   recipes/synth/local/specialist_sweep.sh [--work-dir exp/synth] [--preset cpu]
#       [--num-sets "5 10 20 40"] [--epochs "1 3"] [--lrs "0.02 0.005"] [--top-n "1 2 3"]
set -euo pipefail

work_dir=exp/synth
preset=cpu
num_sets="5 10 20 40"
epochs="1 3"
lrs=""   # empty: the DNN config's learning rate
top_n="1 2 3"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

data=$work_dir/data
exp=$work_dir/exp
frames=$work_dir/frames
conf=$recipe_dir/conf/dnn_$preset.yaml
vars=$(yaml_vars "$recipe_dir/conf/$preset.yaml" gmm_targets specialist_soft_weight)
eval "$vars"
sweep=$exp/sweep_specialists
generalist=$exp/dnn/final

# dev_accuracy FILE: the combined dev frame accuracy of a specialist-accuracy YAML
dev_accuracy() {
  python3 - "$1" <<'PY'
import sys, yaml
r = yaml.safe_load(open(sys.argv[1]))
(dev,) = [v for k, v in r["stores"].items() if k.rstrip("/").endswith("dev")]
print(f"{dev['with_specialists']:.3f} {dev['generalist']:.3f}")
PY
}

best="" best_acc=-1
for m in $num_sets; do
  asr-distill cluster-senones --num-sets "$m" --gmm-dir "$exp/$gmm_targets" \
    --phones "$data/lang/phones.txt" "$generalist" "$frames/train" "$sweep/sets_$m"
  for e in $epochs; do
    for lr in ${lrs:--}; do
      dir=$sweep/spec_m${m}_e$e lr_opt=()
      [ "$lr" = - ] || { dir=${dir}_lr$lr; lr_opt=(--lr "$lr"); }
      asr-distill train-specialists --config "$conf" --no-progress --epochs "$e" "${lr_opt[@]}" \
        --soft-weight "$specialist_soft_weight" "$generalist" "$sweep/sets_$m/sets.txt" \
        "$frames/train" "$frames/dev" "$dir"
      for n in $top_n; do
        out=$dir/accuracy_dev_n$n.yaml
        [ -f "$out" ] || asr-distill specialist-accuracy --top-n "$n" --out "$out" \
          "$generalist" "$dir" "$frames/dev" > /dev/null
        read -r acc gen <<< "$(dev_accuracy "$out")"
        echo "M=$m epochs=$e lr=$lr n=$n: dev frame accuracy $acc (generalist $gen)"
        if python3 -c "import sys; sys.exit(not float('$acc') > float('$best_acc'))"; then
          best="$dir $n" best_acc=$acc
        fi
      done
    done
  done
done
read -r dir n <<< "$best"
echo "chosen on dev: $dir, n=$n ($best_acc)"
asr-distill specialist-accuracy --top-n "$n" --out "$sweep/chosen_test.yaml" "$generalist" \
  "$dir" "$frames/test"
