#!/usr/bin/env bash
# Issue 13: how long should students train, and how much unlabelled audio should the
# transfer set have? The same epoch budget for the baseline (whose settings the members
# share) and the students, all with a cosine schedule:
#   baseline   train-dnn, the preset's model and lr, E epochs for E in --epochs;
#   students   distill on the training frames at T in --temperatures, E epochs each;
#   transfer   for H in --transfer-hours: the recipe's transfer set (speed-perturbed
#              train) with H hours of unlabelled audio in place of the preset's, then the
#              soft-target student (T=transfer_temperature) and the hard pseudo-label
#              control, E epochs for E in --transfer-epochs.
# Run after stages 0-17 of recipes/synth/run.sh (the members, the caches and
# data/train_sp). A transfer set of H hours is synthesised with the preset's corpus seed;
# the step refuses it unless its train, dev and test audio equal the recipe's. Prints
# each run's best dev frame accuracy, its epoch and training seconds. Dev only.
#   recipes/synth/local/patience_sweep.sh [--work-dir exp/synth] [--preset small]
#       [--jobs 2] [--epochs "10 20 40"] [--temperatures "5"] [--transfer-hours "2.0"]
#       [--transfer-epochs "4 8"] [--groups "baseline students transfer"]
set -euo pipefail

work_dir=exp/synth
preset=small
jobs=2   # runs at once, one thread each
epochs="10 20 40"
temperatures="5"
transfer_hours="2.0"   # lists: hours of unlabelled audio, epochs over the transfer set
transfer_epochs="4 8"
groups="baseline students transfer"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

exp=$work_dir/exp
frames=$work_dir/frames
data=$work_dir/data
sweep=$work_dir/patience_sweep
conf=$recipe_dir/conf/dnn_$preset.yaml
vars=$(yaml_vars "$recipe_dir/conf/$preset.yaml" corpus_hours corpus_seed lm_max_sentences \
  gmm_targets hard_weight distill_lr soft_top_k transfer_temperature transfer_hard_weight transfer_lr \
  pseudo_lr student_freq_mask)
eval "$vars"
load_teachers "$exp"
mkdir -p "$sweep"
cosine="--schedule cosine"

runs=()
has() { [[ " $groups " == *" $1 "* ]]; }
for e in $epochs; do
  has baseline && runs+=("baseline_cos$e|$frames/train|train-dnn $cosine --epochs $e")
  for t in $temperatures; do
    has students || continue
    asr-distill make-soft-targets "${teachers[@]}" --temperature "$t" --top-k "$soft_top_k" \
      --no-progress "$frames/train" "$exp/soft_targets_T$t"
    runs+=("students_T${t}_cos$e|$frames/train|distill $cosine --epochs $e --soft-targets \
$exp/soft_targets_T$t --temperature $t --hard-weight $hard_weight --lr $distill_lr \
--freq-mask $student_freq_mask")
  done
done

# A transfer set with H hours of unlabelled audio: a corpus of the same seed and size,
# whose transfer/ split is all that is used (its other splits must equal the recipe's).
transfer_store() {
  local h=$1 dir=$sweep/transfer_h$1
  asr-distill make-synth-corpus --out "$dir/corpus" --hours "$corpus_hours" \
    --seed "$corpus_seed" --nj 2 --lm-max-sentences "$lm_max_sentences" \
    --transfer-hours "$h" > "$dir.log" 2>&1
  local s
  for s in train dev test; do
    cmp -s <(grep -P "^[^\t]*\t$s\t" "$dir/corpus/utterances.tsv" | sort) \
      <(grep -P "^[^\t]*\t$s\t" "$work_dir/corpus/utterances.tsv" | sort) || {
      echo "patience_sweep: $dir/corpus: $s differs from $work_dir/corpus" >&2; return 1; }
  done
  asr-distill prepare-librispeech --corpus-dir "$dir/corpus" --subset transfer \
    --out "$dir/data/transfer_audio"
  asr-distill combine-data-dirs --disjoint-from "$data/dev" --disjoint-from "$data/test" \
    "$dir/data/transfer" "$data/train_sp" "$dir/data/transfer_audio"
  asr-distill compute-feats --kind fbank --nj 2 "$dir/data/transfer" "$dir/data/transfer_fbank"
  asr-distill make-frame-store --keep-unaligned \
    --targets "$exp/${gmm_targets}_ali_train_sp/pdf.ark" \
    --num-pdfs "$(cat "$exp/${gmm_targets}_ali_train/num_pdfs")" \
    --cmvn-scp "$dir/data/transfer_fbank/cmvn.scp" \
    --utt2spk "$dir/data/transfer_fbank/utt2spk" \
    "$dir/data/transfer_fbank/feats.scp" "$dir/frames"
  asr-distill make-soft-targets "${teachers[@]}" --temperature "$transfer_temperature" \
    --top-k "$soft_top_k" --no-progress "$dir/frames" "$dir/soft_targets"
}
if has transfer; then
  for h in $transfer_hours; do
    transfer_store "$h"
    d=$sweep/transfer_h$h
    for e in $transfer_epochs; do
      soft="distill $cosine --epochs $e --soft-targets $d/soft_targets \
--temperature $transfer_temperature --hard-weight $transfer_hard_weight"
      runs+=("transfer_h${h}_soft_cos$e|$d/frames|$soft --lr $transfer_lr")
      runs+=("transfer_h${h}_pseudo_cos$e|$d/frames|$soft --lr $pseudo_lr --pseudo-labels")
    done
  done
fi

one() {
  IFS="|" read -r name store opts <<< "$1"
  # shellcheck disable=SC2086  # opts is a step and its options
  OMP_NUM_THREADS=1 sweep_run "$sweep/$name" "$store" "$frames/dev" "$conf" $opts
}
for r in "${runs[@]}"; do
  wait_for_slot "$jobs"
  one "$r" &
done
wait

dirs=()
for r in "${runs[@]}"; do dirs+=("$sweep/${r%%|*}"); done
asr-distill curve-summary --label-from "$sweep" "${dirs[@]}"
