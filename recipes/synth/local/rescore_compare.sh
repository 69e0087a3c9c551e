#!/usr/bin/env bash
# First pass and LM rescoring (issue 16, item 3): the baseline DNN decodes dev and test
# into lattices with --graph (an HCLG whose G is --first-lm's), the LM weight and penalty
# chosen on dev; then each ARPA of --rescore-lms rescores both (lm-rescore), dev chooses
# again, and test is scored at dev's choice. Prints dev WER (setting), test WER and the
# dev lattice oracle of each. Run after stage 12 of recipes/synth/run.sh; writes --out
# (remove it to rerun with other options: its finished steps refuse other settings).
#   recipes/synth/local/rescore_compare.sh [--work-dir exp/synth] [--am tri3b]
#       [--graph exp/synth/exp/tri3b/graph] [--first-lm exp/synth/lm/lm.arpa]
#       [--rescore-lms "lm_full/lm.arpa ..."] [--lmwts "6 9 12 15 18"] [--beam 10]
#       [--max-active 2000] [--out exp/synth/exp/rescore] [--nj 2]
set -euo pipefail

work_dir=exp/synth
am=tri3b
graph=
first_lm=
rescore_lms=
lmwts="6 9 12 15 18"
beam=10
max_active=2000
out=
nj=2
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"

data=$work_dir/data
exp=$work_dir/exp
graph=${graph:-$exp/$am/graph}
first_lm=${first_lm:-$work_dir/lm/lm.arpa}
out=${out:-$exp/rescore}
[ -n "$rescore_lms" ] || { echo "$0: give --rescore-lms" >&2; exit 1; }
mkdir -p "$out"

row='%-44s %-18s %8s %14s\n'
wer_of() { awk '{n = split($NF, p, "/"); sub(/^wer\./, "", p[n]); print $2, "(" p[n] ")"}' "$1/best_wer"; }
oracle_of() { awk '{print $2}' "$1/oracle_wer"; }
report() {  # NAME DIR_PREFIX
  # shellcheck disable=SC2059  # row is the table's format
  printf "$row" "$1" "$(wer_of "$2_dev")" "$(awk '{print $2}' "$2_test/best_wer")" \
    "$(oracle_of "$2_dev")"
}

# shellcheck disable=SC2059
printf "$row" "LM" "dev WER (setting)" "test WER" "dev oracle WER"
for s in dev test; do
  # test is decoded at every setting too (the lattice makes them free), so that a
  # rescored dev's choice is there to apply
  asr-distill decode --nj "$nj" --lmwts "$lmwts" --beam "$beam" --max-active "$max_active" \
    --dnn "$exp/dnn/final" "$graph" "$exp/$am" "$work_dir/frames/$s" "$out/first_$s" \
    2> "$out/decode_$s.log" || { echo "$0: decode failed (see $out/decode_$s.log)" >&2; exit 1; }
done
asr-distill score "$out/first_dev" "$data/dev" > /dev/null 2>&1
asr-distill score --lmwt-from "$out/first_dev" "$out/first_test" "$data/test" > /dev/null 2>&1
report "first pass: $first_lm" "$out/first"
i=0
for lm in $rescore_lms; do
  i=$((i + 1))
  for s in dev test; do
    asr-distill lm-rescore --nj "$nj" "$first_lm" "$lm" "$out/first_$s" "$out/rescore${i}_$s" \
      2> "$out/rescore${i}_$s.log" ||
      { echo "$0: lm-rescore failed (see $out/rescore${i}_$s.log)" >&2; exit 1; }
  done
  asr-distill score "$out/rescore${i}_dev" "$data/dev" > /dev/null 2>&1
  asr-distill score --lmwt-from "$out/rescore${i}_dev" "$out/rescore${i}_test" "$data/test" \
    > /dev/null 2>&1
  report "rescored: $lm" "$out/rescore$i"
done
