# Stages 5-6 of every recipe, the GMM-HMM chain up to the DNNs' targets: monophone
# (flat start) and its alignments, then the decision tree and triphone tri1. Sourced
# by recipes/<corpus>/run.sh after stages 0-4, with: stage, stop_stage, nj, data, exp,
# mono_iters, mono_gauss, tri1_leaves, tri1_gauss, tri1_iters, and mono_shortest (train
# mono on that many shortest utterances, as Kaldi's LibriSpeech recipe; 0 = all).

if run_stage 5; then
  log "Stage 5: monophone GMM-HMM (flat start, $mono_iters iterations, $mono_gauss" \
    "Gaussians; shortest utterances: ${mono_shortest:-0}, 0 = all)"
  asr-distill train-mono --nj "$nj" --num-shortest "${mono_shortest:-0}" \
    --num-iters "$mono_iters" --tot-gauss "$mono_gauss" \
    "$data/train_mfcc" "$data/lang" "$exp/mono"
  asr-distill align --nj "$nj" "$data/train_mfcc" "$data/lang" "$exp/mono" "$exp/mono_ali"
fi

if run_stage 6; then
  log "Stage 6: decision tree and triphone GMM-HMM tri1 ($tri1_leaves leaves," \
    "$tri1_gauss Gaussians)"
  asr-distill train-tri --nj "$nj" --num-leaves "$tri1_leaves" --tot-gauss "$tri1_gauss" \
    --num-iters "$tri1_iters" "$data/train_mfcc" "$data/lang" "$exp/mono_ali" "$exp/tri1"
fi
