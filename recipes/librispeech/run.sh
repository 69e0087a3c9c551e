#!/usr/bin/env bash
# LibriSpeech recipe: download (checksummed, resumable) -> data dirs -> features ->
# lexicon/lang (LibriSpeech lexicon) -> G.fst (OpenSLR 3-gram) -> mono -> tri1 ->
# then the stages shared with recipes/synth (recipes/shared/gmm_stages.sh, 5-6, and
# hybrid_stages.sh, 7-20):
# alignments, graphs, GMM decoding, DNN baseline, ensemble, distillation, Table 5, report.
# As Kaldi's s5: the graph's LM is tgsmall (lm_file), and the DNNs' lattices are
# rescored with rescore_lm_file (tgmed by default; "" for none): decode_{dev,test} and
# decode_{dev,test}_rescored, like Kaldi's decode_tgsmall_* and decode_tgmed_*.
#   recipes/librispeech/run.sh [--stage N] [--stop-stage M] [--nj J] [--mini true]
#                              [--corpus-dir DIR] [--work-dir DIR] [--url-base URL]
#                              [--conf FILE] [--dnn-conf FILE]
#                              [--train-set S --dev-set S --test-set S]
# --mini true trains on train-clean-5 and uses dev-clean-2 as dev and test.
# A corpus already under --corpus-dir (LibriSpeech/<subset> or <subset>) is not
# downloaded again; --download false skips downloads altogether (the lexicon and
# LM must then already be in --lm-dir).
set -euo pipefail

# ---- configuration (override with --name value) ----
stage=0
stop_stage=100
nj=2
mini=false
download=true
corpus_dir=corpora/librispeech
lm_dir=corpora/librispeech/lm
work_dir=exp/librispeech
url_base=https://www.openslr.org/resources
conf=""        # default: conf/default.yaml (conf/mini.yaml with --mini true)
dnn_conf=""    # default: conf/dnn_default.yaml (conf/dnn_mini.yaml with --mini true)
train_set=""   # default: train-clean-100 (train-clean-5 with --mini true)
dev_set=""     # default: dev-clean (dev-clean-2)
test_set=""    # default: test-clean (dev-clean-2)
# ----------------------------------------------------

. "$(dirname "${BASH_SOURCE[0]}")/../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ "$mini" = true ]; then
  : "${conf:=$recipe_dir/conf/mini.yaml}" "${dnn_conf:=$recipe_dir/conf/dnn_mini.yaml}"
  : "${train_set:=train-clean-5}" "${dev_set:=dev-clean-2}" "${test_set:=dev-clean-2}"
else
  : "${conf:=$recipe_dir/conf/default.yaml}" "${dnn_conf:=$recipe_dir/conf/dnn_default.yaml}"
  : "${train_set:=train-clean-100}" "${dev_set:=dev-clean}" "${test_set:=test-clean}"
fi
for f in "$conf" "$dnn_conf"; do [ -f "$f" ] || { echo "$0: no config $f" >&2; exit 1; }; done
vars=$(yaml_vars "$conf" lm_file rescore_lm_file mono_shortest mono_iters mono_gauss tri1_leaves \
  tri1_gauss tri1_iters gmm_targets tri2b_leaves tri2b_gauss tri3b_leaves tri3b_gauss)
eval "$vars"

data=$work_dir/data
exp=$work_dir/exp
splits="train dev test"
transfer_sets=""   # data dirs (under $data) of unlabelled audio for the transfer set
dl=()
[ "$download" = true ] && dl=(--download --url-base "$url_base")
mkdir -p "$work_dir"
log "config $conf, DNN config $dnn_conf, work dir $work_dir, nj $nj"

if run_stage 0; then
  log "Stage 0: LibriSpeech $train_set / $dev_set / $test_set -> Kaldi data dirs"
  # split name:subset pairs; dev and test may be the same subset (--mini).
  for pair in "train:$train_set" "dev:$dev_set" "test:$test_set"; do
    asr-distill prepare-librispeech "${dl[@]}" --corpus-dir "$corpus_dir" \
      --subset "${pair#*:}" --out "$data/${pair%%:*}"
  done
fi

if run_stage 1; then
  log "Stage 1: LibriSpeech lexicon, $lm_file and ${rescore_lm_file:-no rescoring LM} (OpenSLR 11, checksummed)"
  lm_files=(librispeech-lexicon.txt "$lm_file")
  [ -n "$rescore_lm_file" ] && lm_files+=("$rescore_lm_file")
  if [ "$download" = true ]; then
    asr-distill download-librispeech-lm --dir "$lm_dir" --url-base "$url_base" \
      --files "${lm_files[@]}"
  fi
  for f in "${lm_files[@]}"; do
    [ -f "$lm_dir/$f" ] || { echo "$0: no $lm_dir/$f (run with --download true)" >&2; exit 1; }
  done
fi

if run_stage 2; then
  log "Stage 2: features (fbank for DNNs, MFCC for GMMs) + CMVN"
  for s in train dev test; do
    asr-distill compute-feats --kind fbank --nj "$nj" "$data/$s" "$data/${s}_fbank"
    asr-distill compute-feats --kind mfcc --nj "$nj" "$data/$s" "$data/${s}_mfcc"
  done
fi

if run_stage 3; then
  log "Stage 3: dict from the LibriSpeech lexicon and lang dir"
  asr-distill prepare-dict --source lexicon --lexicon "$lm_dir/librispeech-lexicon.txt" \
    --extra-words "$lm_dir/librispeech-lexicon.txt" "$data/train" "$data/local/dict"
  asr-distill prepare-lang "$data/local/dict" "$data/lang"
fi

if run_stage 4; then
  log "Stage 4: dev perplexity of $lm_file and G.fst"
  asr-distill lm-perplexity "$lm_dir/$lm_file" "$data/dev" | tee "$work_dir/dev_perplexity.txt"
  asr-distill make-g "$lm_dir/$lm_file" "$data/lang" "$data/lang_test"
fi

. "$recipe_dir/../shared/gmm_stages.sh"

# the DNNs' lattices (stage 12 on) are rescored from the graph's LM to rescore_lm_file
first_pass_lm=$lm_dir/$lm_file
rescore_lm=
[ -n "$rescore_lm_file" ] && rescore_lm=$lm_dir/$rescore_lm_file

report_title="asr-distill: LibriSpeech $train_set -> $dev_set / $test_set"
. "$recipe_dir/../shared/hybrid_stages.sh"

log "done (stages $stage..$stop_stage)"
