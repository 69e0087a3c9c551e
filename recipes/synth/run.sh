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
lm_max_sentences=$(yaml_get "$conf" lm_max_sentences)
lm_order=$(yaml_get "$conf" lm_order)
mono_iters=$(yaml_get "$conf" mono_iters)
mono_gauss=$(yaml_get "$conf" mono_gauss)
tri1_leaves=$(yaml_get "$conf" tri1_leaves)
tri1_gauss=$(yaml_get "$conf" tri1_gauss)
tri1_iters=$(yaml_get "$conf" tri1_iters)
lmwts=$(yaml_get "$conf" lmwts)
gmm_beam=$(yaml_get "$conf" gmm_beam)
gmm_max_active=$(yaml_get "$conf" gmm_max_active)
dnn_lmwts=$(yaml_get "$conf" dnn_lmwts)
dnn_beam=$(yaml_get "$conf" dnn_beam)
dnn_max_active=$(yaml_get "$conf" dnn_max_active)
ensemble_parallel=$(yaml_get "$conf" ensemble_parallel)
ensemble_members=$(yaml_get "$conf" ensemble_members)
temperatures=$(yaml_get "$conf" temperatures)
soft_top_k=$(yaml_get "$conf" soft_top_k)
hard_weight=$(yaml_get "$conf" hard_weight)
small_fraction=$(yaml_get "$conf" small_fraction)
small_epochs=$(yaml_get "$conf" small_epochs)
small_temperature=$(yaml_get "$conf" small_temperature)

corpus=$work_dir/corpus
data=$work_dir/data
splits="train dev test"
mkdir -p "$work_dir"
log "preset $preset ($conf), work dir $work_dir, nj $nj"

if run_stage 0; then
  log "Stage 0: synthesise the corpus ($corpus_hours h, seed $corpus_seed)"
  asr-distill make-synth-corpus --out "$corpus" --hours "$corpus_hours" \
    --seed "$corpus_seed" --nj "$nj" --lm-max-sentences "$lm_max_sentences"
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
      asr-distill decode --nj "$nj" --lmwts "$lmwts" --beam "$gmm_beam" \
        --max-active "$gmm_max_active" "$exp/$m/graph" "$exp/$m" \
        "$data/${s}_mfcc" "$exp/$m/decode_$s"
    done
    asr-distill score "$exp/$m/decode_dev" "$data/dev"
    asr-distill score --lmwt-from "$exp/$m/decode_dev" "$exp/$m/decode_test" "$data/test"
  done
fi

if run_stage 10; then
  log "Stage 10: DNN frame stores: fbank + per-speaker CMN, tri1 pdf targets"
  for s in $splits; do
    # Utterances that failed to align are listed: dropped from train; kept unlabelled in
    # dev/test, which are decoded whole.
    bad=(--keep-unaligned)
    [ "$s" = train ] && bad=(--skip-bad)
    asr-distill make-frame-store "${bad[@]}" --targets "$exp/tri1_ali_$s/pdf.ark" \
      --num-pdfs "$(cat "$exp/tri1_ali_train/num_pdfs")" \
      --cmvn-scp "$data/${s}_fbank/cmvn.scp" --utt2spk "$data/${s}_fbank/utt2spk" \
      "$data/${s}_fbank/feats.scp" "$work_dir/frames/$s"
  done
fi

if run_stage 11; then
  log "Stage 11: baseline hybrid DNN (conf/dnn_$preset.yaml)"
  asr-distill train-dnn --config "$recipe_dir/conf/dnn_$preset.yaml" --no-progress \
    "$work_dir/frames/train" "$work_dir/frames/dev" "$exp/dnn"
  asr-distill frame-accuracy --dnn "$exp/dnn/final" --out "$exp/dnn/frame_accuracy.yaml" \
    "$work_dir/frames/train" "$work_dir/frames/dev" "$work_dir/frames/test"
fi

if run_stage 12; then
  log "Stage 12: decode dev and test with the DNN (tri1 tree and graph)"
  for s in dev test; do
    asr-distill decode --nj "$nj" --lmwts "$dnn_lmwts" --beam "$dnn_beam" \
      --max-active "$dnn_max_active" --dnn "$exp/dnn/final" "$exp/tri1/graph" \
      "$exp/tri1" "$work_dir/frames/$s" "$exp/dnn/decode_$s"
  done
  asr-distill score "$exp/dnn/decode_dev" "$data/dev"
  asr-distill score --lmwt-from "$exp/dnn/decode_dev" "$exp/dnn/decode_test" "$data/test"
fi

frames=$work_dir/frames
dnn_conf=$recipe_dir/conf/dnn_$preset.yaml

# decode_dnn NAME MODEL...: decode dev and test with the DNN(s), LM weight chosen on dev.
decode_dnn() {
  local name=$1; shift
  local models=()
  for m in "$@"; do models+=(--dnn "$m"); done
  for s in dev test; do
    asr-distill decode --nj "$nj" --lmwts "$dnn_lmwts" --beam "$dnn_beam" \
      --max-active "$dnn_max_active" "${models[@]}" "$exp/tri1/graph" \
      "$exp/tri1" "$frames/$s" "$exp/$name/decode_$s"
  done
  asr-distill score "$exp/$name/decode_dev" "$data/dev"
  asr-distill score --lmwt-from "$exp/$name/decode_dev" "$exp/$name/decode_test" "$data/test"
}

if run_stage 13; then
  log "Stage 13: teacher ensemble of $ensemble_members DNNs (seeds 1..$ensemble_members)"
  asr-distill train-ensemble --members "$ensemble_members" --parallel "$ensemble_parallel" \
    --config "$dnn_conf" --no-progress \
    "$frames/train" "$frames/dev" "$exp/ensemble"
  mapfile -t members < "$exp/ensemble/members.txt"
  teachers=(); for m in "${members[@]}"; do teachers+=(--teacher "$m"); done
  asr-distill ensemble-accuracy "${teachers[@]}" "$exp/ensemble/accuracy.yaml" \
    "$frames/dev" "$frames/test"
fi

if run_stage 14; then
  log "Stage 14: decode with the ensemble (posteriors averaged)"
  mapfile -t members < "$exp/ensemble/members.txt"
  decode_dnn ensemble "${members[@]}"
fi

if run_stage 15; then
  log "Stage 15: distillation from the ensemble at T in {$temperatures} (top-$soft_top_k cache)"
  mapfile -t members < "$exp/ensemble/members.txt"
  teachers=(); for m in "${members[@]}"; do teachers+=(--teacher "$m"); done
  for t in $temperatures; do
    asr-distill make-soft-targets "${teachers[@]}" --temperature "$t" --top-k "$soft_top_k" \
      --no-progress "$frames/train" "$exp/soft_targets_T$t"
    asr-distill distill --config "$dnn_conf" --no-progress --soft-targets \
      "$exp/soft_targets_T$t" "${teachers[@]}" --temperature "$t" --hard-weight "$hard_weight" \
      "$frames/train" "$frames/dev" "$exp/distill_T$t"
    asr-distill frame-accuracy --dnn "$exp/distill_T$t/final" \
      --out "$exp/distill_T$t/frame_accuracy.yaml" "$frames/dev" "$frames/test"
    decode_dnn "distill_T$t" "$exp/distill_T$t/final"
  done
fi

if run_stage 16; then
  log "Stage 16: Table 5, $small_fraction of the training utterances: hard vs soft targets"
  # Hard targets, early stopping on dev (the paper's setting); soft targets at
  # T=$small_temperature from the baseline trained on all the data, no early stopping.
  asr-distill train-dnn --config "$dnn_conf" --no-progress --data-fraction "$small_fraction" \
    --epochs "$small_epochs" --schedule constant --early-stopping 3 \
    "$frames/train" "$frames/dev" "$exp/small_hard"
  asr-distill distill --config "$dnn_conf" --no-progress --data-fraction "$small_fraction" \
    --epochs "$small_epochs" --schedule constant --teacher "$exp/dnn/final" \
    --temperature "$small_temperature" --hard-weight "$hard_weight" \
    "$frames/train" "$frames/dev" "$exp/small_soft"
  for run in small_hard:final small_soft:last; do
    asr-distill frame-accuracy --dnn "$exp/${run%%:*}/${run#*:}" \
      --out "$exp/${run%%:*}/frame_accuracy.yaml" --subset "$frames/train" \
      --data-fraction "$small_fraction" --seed 0 "$frames/test"
  done
fi

if run_stage 17; then
  log "Stage 17: report (Table 1, temperature sweep, Table 5)"
  asr-distill report --temperatures "$temperatures" --title "asr-distill: synthetic corpus, preset $preset" \
    --context "$(date -u +%F), $(nproc) CPU cores, preset $preset, $ensemble_members-model ensemble" \
    "$exp" "$work_dir/report"
fi

log "done (stages $stage..$stop_stage)"
