#!/usr/bin/env bash
# Vocabulary and first-pass LM (issue 16, item 4): for each FREQ:PRUNE:MAXSENT of
# --runs, a dict with the FREQ most frequent English words (prepare-dict
# --frequent-words; 0: none), the first MAXSENT sentences of the corpus's LM text (0: all),
# a --order-gram LM pruned with PRUNE (train-lm --prune; empty: none), G and HCLG with
# the tree of --am, and the baseline DNN's decode of dev at --lmwts. Prints per run the
# vocabulary, dev OOV rate and perplexity, G and HCLG sizes, mkgraph and decode seconds
# and the best dev WER. Run after stage 12 of recipes/synth/run.sh; writes
# exp/lm_sweep/ under the work dir (remove it to rerun with other --order, --am or decode
# options: its finished steps refuse other settings). "0::8000" is the small preset's setting until
# 2026-12-07 (its LM text was the first 8000 sentences).
# The decode options are the small preset's (dnn_lmwts, dnn_beam, dnn_max_active).
#   recipes/synth/local/lm_sweep.sh [--work-dir exp/synth] [--am tri3b] [--order 3]
#       [--lmwts "6 9 12 15 18"] [--beam 10] [--max-active 2000] [--nj 2]
#       [--runs "0::8000 30000:0,1,1:0"]
set -euo pipefail

work_dir=exp/synth
am=tri3b
order=3
lmwts="6 9 12 15 18"
beam=10
max_active=2000
runs="0::8000 30000:0,1,1:0"
nj=2
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"

data=$work_dir/data
exp=$work_dir/exp
sweep=$exp/lm_sweep
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1e6 }'; }
# timed LOG CMD...: run CMD with its output in LOG; print its seconds, or fail naming LOG
timed() {
  local t=$SECONDS log=$1; shift
  "$@" > "$log" 2>&1 || { echo "$0: failed: $* (see $log)" >&2; return 1; }
  echo $((SECONDS - t))
}

row='%-22s %7s %6s %6s %7s %8s %8s %8s %s\n'
# shellcheck disable=SC2059  # row is the table's format
printf "$row" run words oov% ppl G_MB HCLG_MB mkgraph decode "best dev WER"
for run in $runs; do
  IFS=: read -r freq prune maxsent <<< "$run"
  [[ $run == *:*:* && $freq =~ ^[0-9]+$ && $maxsent =~ ^[0-9]+$ ]] ||
    { echo "$0: a run is FREQ:PRUNE:MAXSENT (e.g. 30000:0,1,1:0), got '$run'" >&2; exit 1; }
  dir=$sweep/f${freq}_p${prune//,/-}_s${maxsent}
  mkdir -p "$dir"
  text=$work_dir/corpus/lm_text.txt
  if [ "$maxsent" != 0 ]; then
    head -n "$maxsent" "$text" > "$dir/lm_text.txt"
    text=$dir/lm_text.txt
  fi
  pr=()
  [ -n "$prune" ] && pr=(--prune "$prune")
  # chained with &&: set -e does not act inside a block whose status || tests
  {
    asr-distill prepare-dict --source cmudict --extra-text "$text" --frequent-words "$freq" \
      "$data/train" "$dir/dict" &&
    asr-distill prepare-lang "$dir/dict" "$dir/lang" &&
    asr-distill train-lm --order "$order" "${pr[@]}" --vocab "$dir/lang/words.txt" \
      --unk-symbol "<UNK>" --dev-text "$data/dev" "$text" "$data/train" "$dir/lm" &&
    asr-distill make-g "$dir/lm/lm.arpa" "$dir/lang" "$dir/lang_test"
  } 2> "$dir/prepare.log" || { echo "$0: $run failed (see $dir/prepare.log)" >&2; exit 1; }
  t_graph=$(timed "$dir/mkgraph.log" asr-distill mkgraph "$dir/lang_test" "$exp/$am" "$dir/graph")
  t_decode=$(timed "$dir/decode.log" asr-distill decode --nj "$nj" --lmwts "$lmwts" \
    --beam "$beam" --max-active "$max_active" --dnn "$exp/dnn/final" "$dir/graph" "$exp/$am" \
    "$work_dir/frames/dev" "$dir/decode_dev")
  timed "$dir/score.log" asr-distill score "$dir/decode_dev" "$data/dev" > /dev/null
  # shellcheck disable=SC2059
  printf "$row" "$run" \
    "$(grep -cv '^[<#]' "$dir/lang/words.txt")" \
    "$(grep -o 'OOV rate [0-9.]*' "$dir/lm/perplexity.txt" | awk '{print $3}')" \
    "$(grep -o ' ppl= [0-9.]*' "$dir/lm/perplexity.txt" | awk '{print $2}')" \
    "$(mb "$dir/lang_test/G.fst")" "$(mb "$dir/graph/HCLG.fst")" "$t_graph" "$t_decode" \
    "$(awk '{n = split($NF, p, "/"); print $2, "(" p[n] ")"}' "$dir/decode_dev/best_wer")"
done
