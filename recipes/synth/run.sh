#!/usr/bin/env bash
# Offline recipe on the synthetic corpus (LibriSpeech layout, made locally).
#   recipes/synth/run.sh [--stage N] [--stop-stage M] [--nj J] [--preset tiny|cpu|paper]
#                        [--work-dir DIR]
# Each stage is one or two asr-distill calls; each step leaves a done marker, so a
# re-run skips what finished and resumes what was killed.
set -euo pipefail

# ---- configuration (override with --name value) ----
stage=0
stop_stage=100
nj=2
preset=cpu
work_dir=exp/synth   # everything this recipe writes goes under here
# ----------------------------------------------------

. "$(dirname "${BASH_SOURCE[0]}")/../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

conf="$recipe_dir/conf/$preset.yaml"
[ -f "$conf" ] || { echo "$0: no preset '$preset' ($conf)" >&2; exit 1; }
vars=$(yaml_vars "$conf" corpus_hours corpus_seed transfer_hours lm_max_sentences \
  frequent_words lm_prune lm_order rescore_lm_order mono_iters mono_gauss tri1_leaves tri1_gauss tri1_iters \
  gmm_targets tri2b_leaves tri2b_gauss tri3b_leaves tri3b_gauss)
eval "$vars"

corpus=$work_dir/corpus
data=$work_dir/data
splits="train dev test"
# Unlabelled audio for the transfer set (stage 16): the corpus's transfer/ split, extra
# audio of the training voices with sentences of no other split.
transfer_sets=""
if awk -v h="$transfer_hours" 'BEGIN { exit !(h > 0) }'; then
  transfer_sets="transfer_audio"
fi
mkdir -p "$work_dir"
log "preset $preset ($conf), work dir $work_dir, nj $nj"

if run_stage 0; then
  log "Stage 0: synthesise the corpus ($corpus_hours h + $transfer_hours h transfer audio," \
    "seed $corpus_seed)"
  asr-distill make-synth-corpus --out "$corpus" --hours "$corpus_hours" \
    --seed "$corpus_seed" --nj "$nj" --lm-max-sentences "$lm_max_sentences" \
    --transfer-hours "$transfer_hours"
fi

if run_stage 1; then
  log "Stage 1: Kaldi data dirs from the LibriSpeech layout"
  for s in $splits; do
    asr-distill prepare-librispeech --corpus-dir "$corpus" --subset "$s" --out "$data/$s"
  done
  if [ -n "$transfer_sets" ]; then  # transcripts kept in the data dir, never used
    asr-distill prepare-librispeech --corpus-dir "$corpus" --subset transfer \
      --out "$data/transfer_audio"
  fi
fi

if run_stage 2; then
  log "Stage 2: features (40-dim fbank for the DNNs, 13-dim MFCC for the GMMs) + CMVN"
  for s in $splits; do
    asr-distill compute-feats --kind fbank --nj "$nj" "$data/$s" "$data/${s}_fbank"
    asr-distill compute-feats --kind mfcc --nj "$nj" "$data/$s" "$data/${s}_mfcc"
    asr-distill validate-data-dir "$data/${s}_fbank"
  done
fi

if run_stage 3; then
  log "Stage 3: dict (CMUdict; vocabulary: train transcripts, LM text and the" \
    "$frequent_words most frequent English words) and lang dir"
  asr-distill prepare-dict --source cmudict --extra-text "$corpus/lm_text.txt" \
    --frequent-words "$frequent_words" "$data/train" "$data/local/dict"
  asr-distill prepare-lang "$data/local/dict" "$data/lang"
fi

if run_stage 4; then
  log "Stage 4: ${lm_order}-gram LM (perplexity and OOV rate on dev) and G.fst"
  prune=()
  [ -n "$lm_prune" ] && prune=(--prune "$lm_prune")
  asr-distill train-lm --order "$lm_order" "${prune[@]}" --vocab "$data/lang/words.txt" \
    --unk-symbol "<UNK>" --dev-text "$data/dev" "$corpus/lm_text.txt" "$data/train" "$work_dir/lm"
  asr-distill make-g "$work_dir/lm/lm.arpa" "$data/lang" "$data/lang_test"
  if [ -n "$rescore_lm_order" ]; then
    log "Stage 4: ${rescore_lm_order}-gram LM, unpruned, for lattice rescoring"
    asr-distill train-lm --order "$rescore_lm_order" --vocab "$data/lang/words.txt" \
      --unk-symbol "<UNK>" --dev-text "$data/dev" "$corpus/lm_text.txt" "$data/train" \
      "$work_dir/lm_rescore"
  fi
fi

# The DNNs' lattices are rescored with this LM (decode_dnn in hybrid_stages.sh)
first_pass_lm=$work_dir/lm/lm.arpa
rescore_lm=
[ -n "$rescore_lm_order" ] && rescore_lm=$work_dir/lm_rescore/lm.arpa

exp=$work_dir/exp

. "$recipe_dir/../shared/gmm_stages.sh"

dnn_conf=$recipe_dir/conf/dnn_$preset.yaml
report_title="asr-distill: synthetic corpus, preset $preset"
. "$recipe_dir/../shared/hybrid_stages.sh"

log "done (stages $stage..$stop_stage)"
