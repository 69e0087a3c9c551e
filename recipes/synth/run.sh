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
corpus_hours=$(yaml_get "$conf" corpus_hours)
corpus_seed=$(yaml_get "$conf" corpus_seed)
lm_order=$(yaml_get "$conf" lm_order)
mono_iters=$(yaml_get "$conf" mono_iters)
mono_gauss=$(yaml_get "$conf" mono_gauss)
tri1_leaves=$(yaml_get "$conf" tri1_leaves)
tri1_gauss=$(yaml_get "$conf" tri1_gauss)
tri1_iters=$(yaml_get "$conf" tri1_iters)
lmwts=$(yaml_get "$conf" lmwts)

corpus=$work_dir/corpus
data=$work_dir/data
splits="train dev test"
mkdir -p "$work_dir"
log "preset $preset ($conf), work dir $work_dir, nj $nj"

if run_stage 0; then
  log "Stage 0: synthesise the corpus ($corpus_hours h, seed $corpus_seed)"
  asr-distill make-synth-corpus --out "$corpus" --hours "$corpus_hours" \
    --seed "$corpus_seed" --nj "$nj"
fi

if run_stage 1; then
  log "Stage 1: Kaldi data dirs from the LibriSpeech layout"
  for s in $splits; do
    asr-distill prepare-librispeech --corpus-dir "$corpus" --subset "$s" --out "$data/$s"
  done
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
  log "Stage 3: dict (CMUdict, vocabulary = train transcripts + LM text) and lang dir"
  asr-distill prepare-dict --source cmudict --extra-text "$corpus/lm_text.txt" \
    "$data/train" "$data/local/dict"
  asr-distill prepare-lang "$data/local/dict" "$data/lang"
fi

if run_stage 4; then
  log "Stage 4: ${lm_order}-gram LM (perplexity and OOV rate on dev) and G.fst"
  asr-distill train-lm --order "$lm_order" --vocab "$data/lang/words.txt" --unk "<UNK>" \
    --dev-text "$data/dev" "$corpus/lm_text.txt" "$data/train" "$work_dir/lm"
  asr-distill make-g "$work_dir/lm/lm.arpa" "$data/lang" "$data/lang_test"
fi

exp=$work_dir/exp

if run_stage 5; then
  log "Stage 5: monophone GMM-HMM (flat start, $mono_iters iterations, $mono_gauss Gaussians)"
  asr-distill train-mono --nj "$nj" --num-iters "$mono_iters" --tot-gauss "$mono_gauss" \
    "$data/train_mfcc" "$data/lang" "$exp/mono"
  asr-distill align --nj "$nj" "$data/train_mfcc" "$data/lang" "$exp/mono" "$exp/mono_ali"
fi

if run_stage 6; then
  log "Stage 6: decision tree and triphone GMM-HMM tri1 ($tri1_leaves leaves, $tri1_gauss Gaussians)"
  asr-distill train-tri --nj "$nj" --num-leaves "$tri1_leaves" --tot-gauss "$tri1_gauss" \
    --num-iters "$tri1_iters" "$data/train_mfcc" "$data/lang" "$exp/mono_ali" "$exp/tri1"
fi

if run_stage 7; then
  log "Stage 7: tri1 alignments of train/dev/test (the DNN targets); mono vs tri1 on dev"
  for s in $splits; do
    asr-distill align --nj "$nj" "$data/${s}_mfcc" "$data/lang" "$exp/tri1" "$exp/tri1_ali_$s"
  done
  asr-distill align --nj "$nj" "$data/dev_mfcc" "$data/lang" "$exp/mono" "$exp/mono_ali_dev"
fi

if run_stage 8; then
  log "Stage 8: decoding graphs (HCLG) for mono and tri1"
  for m in mono tri1; do
    asr-distill mkgraph "$data/lang_test" "$exp/$m" "$exp/$m/graph"
  done
fi

if run_stage 9; then
  log "Stage 9: decode dev and test with mono and tri1; LM weight chosen on dev"
  for m in mono tri1; do
    for s in dev test; do
      asr-distill decode --nj "$nj" --lmwts "$lmwts" "$exp/$m/graph" "$exp/$m" \
        "$data/${s}_mfcc" "$exp/$m/decode_$s"
    done
    asr-distill score "$exp/$m/decode_dev" "$data/dev"
    asr-distill score --lmwt-from "$exp/$m/decode_dev" "$exp/$m/decode_test" "$data/test"
  done
fi

if run_stage 10; then
  log "Stage 10: DNN frame stores: fbank + per-speaker CMN, tri1 pdf targets"
  for s in $splits; do
    skip=()
    [ "$s" = train ] && skip=(--skip-bad)  # utterances that failed to align are listed
    asr-distill make-frame-store "${skip[@]}" --targets "$exp/tri1_ali_$s/pdf.ark" \
      --num-pdfs "$(cat "$exp/tri1_ali_train/num_pdfs")" \
      --cmvn-scp "$data/${s}_fbank/cmvn.scp" --utt2spk "$data/${s}_fbank/utt2spk" \
      "$data/${s}_fbank/feats.scp" "$work_dir/frames/$s"
  done
fi

if run_stage 11; then
  log "Stage 11: baseline hybrid DNN (conf/dnn_$preset.yaml)"
  asr-distill train-dnn --config "$recipe_dir/conf/dnn_$preset.yaml" --no-progress \
    "$work_dir/frames/train" "$work_dir/frames/dev" "$exp/dnn"
  asr-distill frame-accuracy --dnn "$exp/dnn/final" "$work_dir/frames/dev" \
    "$work_dir/frames/test" | tee "$exp/dnn/frame_accuracy.txt"
fi

if run_stage 12; then
  log "Stage 12: decode dev and test with the DNN (tri1 tree and graph)"
  for s in dev test; do
    asr-distill decode --nj "$nj" --lmwts "$lmwts" --dnn "$exp/dnn/final" "$exp/tri1/graph" \
      "$exp/tri1" "$work_dir/frames/$s" "$exp/dnn/decode_$s"
  done
  asr-distill score "$exp/dnn/decode_dev" "$data/dev"
  asr-distill score --lmwt-from "$exp/dnn/decode_dev" "$exp/dnn/decode_test" "$data/test"
fi

log "done (stages $stage..$stop_stage)"
