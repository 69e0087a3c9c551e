# Shared shell helpers for recipes: logging in the same format as the Python logs,
# stage selection, done markers, and reading options from the recipe's YAML config.

log() {
  # Same format as asr_distill.logging_setup: "YYYY-MM-DD HH:MM:SS LEVEL (who) message"
  printf '%s INFO (%s) %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$(basename "${BASH_SOURCE[1]:-$0}")" "$*" >&2
}

# run_stage N: true if stage N is inside [stage, stop_stage].
run_stage() {
  local n=$1
  [ "$n" -ge "$stage" ] && [ "$n" -le "$stop_stage" ]
}

# yaml_get FILE KEY: print a top-level value of a YAML config (error if absent).
yaml_get() {
  yaml_vars "$1" "$2" | sed "s/^[^=]*=//; s/^'//; s/'\$//"
}

# yaml_vars FILE KEY...: shell assignments KEY='value' for top-level keys of a YAML config,
# in one Python process (error naming the file and key if one is absent). Use as
#   vars=$(yaml_vars "$conf" a b c); eval "$vars"
# (an assignment, so that set -e stops at a missing key).
yaml_vars() {
  python3 - "$@" <<'PY'
import shlex, sys, yaml
path, keys = sys.argv[1], sys.argv[2:]
with open(path, encoding="utf-8") as f:
    conf = yaml.safe_load(f) or {}
missing = [k for k in keys if k not in conf]
if missing:
    sys.exit(f"{path}: no option {missing[0]!r}")
for k in keys:
    print(f"{k}={shlex.quote(str(conf[k]))}")
PY
}

# load_teachers EXP: the ensemble's members (EXP/ensemble/members.txt) as the arrays
# members=(path...) and teachers=(--teacher path ...).
load_teachers() {
  mapfile -t members < "$1/ensemble/members.txt"
  teachers=()
  for m in "${members[@]}"; do teachers+=(--teacher "$m"); done
}

# wait_for_slot N: wait until fewer than N background jobs of this shell are running.
wait_for_slot() {
  while [ "$(jobs -rp | wc -l)" -ge "$1" ]; do wait -n; done
}

# run_parallel N FUNC ARG...: run "FUNC ARG" for each ARG, N at a time in the background,
# each with an equal share of the threads (OMP_NUM_THREADS, default nproc) when N > 1;
# fails (after all have ended) if any failed.
run_parallel() {
  local n=$1 fn=$2 pids=() failed=0 threads
  shift 2
  [ "$#" -lt "$n" ] && n=$#  # fewer jobs than slots: each job gets more threads
  [ "$n" -ge 1 ] || return 0
  threads=$(( ${OMP_NUM_THREADS:-$(nproc)} / n ))
  [ "$threads" -ge 1 ] || threads=1
  for arg in "$@"; do
    if [ "$n" -le 1 ]; then
      "$fn" "$arg"  # not under ||, so set -e still stops at a failing step inside
      continue
    fi
    wait_for_slot "$n"
    ( export OMP_NUM_THREADS=$threads; "$fn" "$arg" ) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  return "$failed"
}

# best_dev_temperature EXP T...: the T whose student EXP/distill_T<T> has the best dev
# frame accuracy (its frame_accuracy.yaml), as the report chooses Table 1's distilled row.
best_dev_temperature() {
  python3 - "$@" <<'PY'
import sys, yaml
from pathlib import Path
exp, temps = Path(sys.argv[1]), sys.argv[2:]
def dev_acc(t):
    stores = yaml.safe_load((exp / f"distill_T{t}" / "frame_accuracy.yaml").read_text())["stores"]
    return next(v["frame_accuracy"] for k, v in stores.items() if Path(k).name == "dev")
print(max(temps, key=dev_acc))
PY
}

# sweep_run OUT TRAIN_STORE DEV_STORE CONF STEP OPTION...: one run of a dev-set sweep,
# `asr-distill STEP --config CONF OPTION... TRAIN_STORE DEV_STORE OUT`, its output in
# OUT.log (a failure names it). A run that reads a soft-target cache also gets the
# ensemble's teachers (the array teachers, from load_teachers). Print the sweep's table
# with `asr-distill curve-summary OUT...`.
sweep_run() {
  local out=$1 train=$2 dev=$3 conf=$4 step=$5 extra=()
  shift 5
  [[ " $* " == *" --soft-targets "* ]] && extra=("${teachers[@]}")
  asr-distill "$step" --config "$conf" --no-progress "$@" "${extra[@]}" "$train" "$dev" \
    "$out" > "$out.log" 2>&1 || { echo "sweep: $out failed, see $out.log" >&2; return 1; }
}
