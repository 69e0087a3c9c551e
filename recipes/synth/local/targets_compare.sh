#!/usr/bin/env bash
# Issue 17: does a better GMM give better DNN targets? The baseline DNN (the preset's
# dnn_<preset>.yaml) trained on the alignments of each GMM in --targets, each decoded
# with its own GMM's tree and graph (dev at the preset's DNN LM weights, test at dev's
# choice). An entry SRC:TREE takes SRC's alignments onto TREE's tree (convert-ali: SRC's
# boundaries, TREE's pdfs) and decodes with TREE's graph, which separates the two things
# a GMM gives the DNN. Frame accuracies are not comparable across pdf sets; WERs are.
# Run after stages 0-9 of recipes/synth/run.sh (every GMM in --targets trained, its
# graph built); writes frames_<entry>/ and exp/dnn_<entry>[_s<seed>]/ under the work dir
# and prints one line per entry and seed.
#   recipes/synth/local/targets_compare.sh [--work-dir exp/synth] [--preset cpu]
#                                          [--targets "tri1 tri3b tri3b:tri1"] [--seeds 0]
#                                          [--nj 2]
set -euo pipefail

work_dir=exp/synth
preset=cpu
targets="tri1 tri3b"
seeds=0
nj=2
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../shared/parse_options.sh"
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

data=$work_dir/data
exp=$work_dir/exp
conf=$recipe_dir/conf/dnn_$preset.yaml
vars=$(yaml_vars "$recipe_dir/conf/$preset.yaml" dnn_lmwts dnn_beam dnn_max_active)
eval "$vars"
# dnn_dir ENTRY SEED: the model dir of an entry's DNN at a seed (seed 0 without suffix)
dnn_dir() { local d=$exp/dnn_${1/:/_on_}; [ "$2" = 0 ] || d=${d}_s$2; echo "$d"; }

for entry in $targets; do
  src=${entry%%:*}
  g=${entry##*:}  # the GMM whose tree, pdfs and graph the DNN uses
  name=${entry/:/_on_}
  frames=$work_dir/frames_$name
  for s in train dev test; do
    asr-distill align --nj "$nj" "$data/${s}_mfcc" "$data/lang" "$exp/$src" "$exp/${src}_ali_$s"
    ali=$exp/${src}_ali_$s
    if [ "$src" != "$g" ]; then
      asr-distill convert-ali "$data/lang" "$exp/$g" "$ali" "$exp/${name}_ali_$s"
      ali=$exp/${name}_ali_$s
    fi
    bad=(--keep-unaligned)
    [ "$s" = train ] && bad=(--skip-bad) && train_ali=$ali
    asr-distill make-frame-store "${bad[@]}" --targets "$ali/pdf.ark" \
      --num-pdfs "$(cat "$train_ali/num_pdfs")" \
      --cmvn-scp "$data/${s}_fbank/cmvn.scp" --utt2spk "$data/${s}_fbank/utt2spk" \
      "$data/${s}_fbank/feats.scp" "$frames/$s"
  done
  for seed in $seeds; do
    dnn=$(dnn_dir "$entry" "$seed")
    asr-distill train-dnn --config "$conf" --seed "$seed" --no-progress "$frames/train" \
      "$frames/dev" "$dnn"
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
done
for entry in $targets; do
  g=${entry##*:}
  for seed in $seeds; do
    dnn=$(dnn_dir "$entry" "$seed")
    echo "$entry seed $seed: GMM $g dev $(cut -d' ' -f1-2 "$exp/$g/decode_dev/best_wer")," \
      "DNN dev $(cut -d' ' -f1-2 "$dnn/decode_dev/best_wer"), DNN test" \
      "$(cut -d' ' -f1-2 "$dnn/decode_test/best_wer")"
  done
done
