#!/usr/bin/env bash
# Issue 17: does a better GMM give better DNN targets? The baseline DNN (the preset's
# dnn_<preset>.yaml, seed 0) trained on the alignments of each GMM in --targets, each
# decoded with its own GMM's tree and graph (dev at the preset's DNN LM weights, test at
# dev's choice). Frame accuracies are not comparable across alignment sources; WERs are.
# Run after stages 0-9 of recipes/synth/run.sh (every GMM in --targets trained, its
# graph built); writes frames_<gmm>/ and exp/dnn_<gmm>/ under the work dir and prints
# one line per GMM.
#   recipes/synth/local/targets_compare.sh [--work-dir exp/synth] [--preset cpu]
#                                          [--targets "tri1 tri3b"] [--nj 2]
set -euo pipefail

work_dir=exp/synth
preset=cpu
targets="tri1 tri3b"
nj=2
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

data=$work_dir/data
exp=$work_dir/exp
conf=$recipe_dir/conf/dnn_$preset.yaml
vars=$(yaml_vars "$recipe_dir/conf/$preset.yaml" dnn_lmwts dnn_beam dnn_max_active)
eval "$vars"

for g in $targets; do
  frames=$work_dir/frames_$g
  for s in train dev test; do
    asr-distill align --nj "$nj" "$data/${s}_mfcc" "$data/lang" "$exp/$g" "$exp/${g}_ali_$s"
    bad=(--keep-unaligned)
    [ "$s" = train ] && bad=(--skip-bad)
    asr-distill make-frame-store "${bad[@]}" --targets "$exp/${g}_ali_$s/pdf.ark" \
      --num-pdfs "$(cat "$exp/${g}_ali_train/num_pdfs")" \
      --cmvn-scp "$data/${s}_fbank/cmvn.scp" --utt2spk "$data/${s}_fbank/utt2spk" \
      "$data/${s}_fbank/feats.scp" "$frames/$s"
  done
  dnn=$exp/dnn_$g
  asr-distill train-dnn --config "$conf" --no-progress "$frames/train" "$frames/dev" "$dnn"
  asr-distill frame-accuracy --dnn "$dnn/final" --out "$dnn/frame_accuracy.yaml" \
    "$frames/dev" "$frames/test"
  for s in dev test; do
    weights=(--lmwts "$dnn_lmwts")
    [ "$s" = test ] && weights=(--lmwt-from "$dnn/decode_dev")
    asr-distill decode --nj "$nj" "${weights[@]}" --beam "$dnn_beam" \
      --max-active "$dnn_max_active" --dnn "$dnn/final" "$exp/$g/graph" "$exp/$g" \
      "$frames/$s" "$dnn/decode_$s"
    if [ "$s" = dev ]; then asr-distill score "$dnn/decode_dev" "$data/dev"; fi
  done
  asr-distill score --lmwt-from "$dnn/decode_dev" "$dnn/decode_test" "$data/test"
done
for g in $targets; do
  echo "$g targets: $(cat "$exp/$g/decode_dev/best_wer" | cut -d' ' -f1-2) (GMM dev)," \
    "DNN dev $(cut -d' ' -f1-2 "$exp/dnn_$g/decode_dev/best_wer"), DNN test" \
    "$(cut -d' ' -f1-2 "$exp/dnn_$g/decode_test/best_wer")"
done
