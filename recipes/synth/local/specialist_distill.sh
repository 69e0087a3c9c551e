#!/usr/bin/env bash
# Issue 19, item 5 (beyond the paper): distil a generalist with its specialists into one
# network through the ordinary distill, and the control: the same student distilled from
# the generalist alone. Both get the same search (seed 0 at each T of --temperatures, T
# chosen on dev frame accuracy), then more seeds at their chosen T, and the preset's
# student settings (hard_weight, distill_lr, student_schedule, student_epochs, the DNN
# config's shape). The teachers' soft targets are dense caches of the training frames:
# the generalist's softmax(z / T), and its combination q with the specialists (top-n
# activation, as specialist-accuracy) as softmax(log q / T).
# Run after specialist_sweep.sh (or stage 19) on a recipe's baseline exp/dnn/final;
# writes exp/specialist_distill/ under the work dir and prints dev and test frame
# accuracy, mean ± std over the seeds, per teacher.
#   recipes/synth/local/specialist_distill.sh --specialists DIR [--work-dir exp/synth]
#       [--preset cpu] [--top-n 2] [--temperatures "2 5"] [--seeds 3] [--parallel 2]
set -euo pipefail

work_dir=exp/synth
preset=cpu
specialists=""
top_n=2
temperatures="2 5"
seeds=3
parallel=2
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -n "$specialists" ] || { echo "$0: --specialists DIR (train-specialists' output) is needed" >&2; exit 2; }

exp=$work_dir/exp
frames=$work_dir/frames
conf=$recipe_dir/conf/dnn_$preset.yaml
vars=$(yaml_vars "$recipe_dir/conf/$preset.yaml" hard_weight distill_lr student_schedule \
  student_epochs)
eval "$vars"
out=$exp/specialist_distill
generalist=$exp/dnn/final

cache() {  # "KIND T": the dense soft targets of the generalist (gen) or with specialists (spec)
  local kind t spec=()
  read -r kind t <<< "$1"
  [ "$kind" = spec ] && spec=(--specialists "$specialists" --specialist-top-n "$top_n")
  asr-distill make-soft-targets --teacher "$generalist" "${spec[@]}" --temperature "$t" \
    --top-k 0 --no-progress "$frames/train" "$out/soft_${kind}_T$t"
}
student() {  # "KIND T SEED": a student of cache KIND at T, scored on dev and test
  local kind t seed dir
  read -r kind t seed <<< "$1"
  dir=$out/$kind/distill_T$t; [ "$seed" = 0 ] || dir=${dir}_seed$seed
  asr-distill distill --config "$conf" --no-progress --soft-targets "$out/soft_${kind}_T$t" \
    --temperature "$t" --hard-weight "$hard_weight" --lr "$distill_lr" \
    --schedule "$student_schedule" --epochs "$student_epochs" --seed "$seed" \
    "$frames/train" "$frames/dev" "$dir" > "$dir.log" 2>&1 || { echo "failed: see $dir.log" >&2; return 1; }
  [ -f "$dir/frame_accuracy.yaml" ] || asr-distill frame-accuracy --dnn "$dir/final" \
    --out "$dir/frame_accuracy.yaml" "$frames/dev" "$frames/test" > /dev/null
}

mkdir -p "$out/gen" "$out/spec"
jobs=() runs=()
for t in $temperatures; do jobs+=("gen $t" "spec $t"); runs+=("gen $t 0" "spec $t 0"); done
run_parallel "$parallel" cache "${jobs[@]}"
run_parallel "$parallel" student "${runs[@]}"
runs=()
for kind in gen spec; do
  # shellcheck disable=SC2086  # temperatures is a list
  best=$(best_dev_temperature "$out/$kind" $temperatures)
  echo "$kind: T=$best chosen on dev"
  eval "best_$kind=$best"
  for ((s = 1; s < seeds; s++)); do runs+=("$kind $best $s"); done
done
run_parallel "$parallel" student "${runs[@]}"

python3 - "$out" "$best_gen" "$best_spec" "$seeds" $temperatures <<'PY'
import statistics, sys, yaml
from pathlib import Path
out, best = Path(sys.argv[1]), {"gen": sys.argv[2], "spec": sys.argv[3]}
seeds, temps = int(sys.argv[4]), sys.argv[5:]
def acc(d):
    s = yaml.safe_load((d / "frame_accuracy.yaml").read_text())["stores"]
    return {Path(k).name: v["frame_accuracy"] for k, v in s.items()}
names = {"gen": "the generalist alone", "spec": "generalist + specialists"}
print("# teacher                    T    seed 0 dev at each T")
for kind in ("gen", "spec"):
    row = "  ".join(f"T={t}: {acc(out / kind / f'distill_T{t}')['dev']:.3f}" for t in temps)
    print(f"# {names[kind]:26s} {best[kind]:4s} {row}")
print(f"# student of                 dev frame acc %         test frame acc %  ({seeds} seeds)")
for kind in ("gen", "spec"):
    dirs = [out / kind / (f"distill_T{best[kind]}" + (f"_seed{s}" if s else "")) for s in range(seeds)]
    r = [acc(d) for d in dirs]
    line = []
    for split in ("dev", "test"):
        v = [x[split] for x in r]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        line.append(f"{statistics.mean(v):.3f} ± {sd:.3f}")
    print(f"{names[kind]:28s} {line[0]:22s}  {line[1]}   seeds: " +
          ", ".join(f"{x['dev']:.3f}/{x['test']:.3f}" for x in r))
PY
