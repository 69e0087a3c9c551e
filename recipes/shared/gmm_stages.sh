# Stages 5-6 of every recipe, the GMM-HMM chain up to the DNNs' targets, as Kaldi's:
# monophone (flat start) and its alignments, the decision tree and triphone tri1 on
# MFCC + deltas, then (as far as $gmm_targets asks) tri2b on LDA+MLLT features and tri3b,
# speaker-adaptive training with fMLLR. Sourced by recipes/<corpus>/run.sh after stages
# 0-4, with: stage, stop_stage, nj, data, exp, mono_iters, mono_gauss, tri1_leaves,
# tri1_gauss, tri1_iters, gmm_targets (tri1, tri2b or tri3b: the model whose alignments
# are the DNNs' targets and whose tree and graph they decode with), tri2b_leaves,
# tri2b_gauss, tri3b_leaves, tri3b_gauss, and mono_shortest (train mono on that many
# shortest utterances, as Kaldi's LibriSpeech recipe; 0 = all). Sets $gmms, the GMM
# systems trained (stages 8-9 build their graphs and decode with them).

case "$gmm_targets" in
  tri1) gmms="mono tri1" ;;
  tri2b) gmms="mono tri1 tri2b" ;;
  tri3b) gmms="mono tri1 tri2b tri3b" ;;
  *) echo "$0: gmm_targets must be tri1, tri2b or tri3b, not '$gmm_targets'" >&2; exit 1 ;;
esac

if run_stage 5; then
  log "Stage 5: monophone GMM-HMM (flat start, $mono_iters iterations, $mono_gauss" \
    "Gaussians; shortest utterances: ${mono_shortest:-0}, 0 = all)"
  asr-distill train-mono --nj "$nj" --num-shortest "${mono_shortest:-0}" \
    --num-iters "$mono_iters" --tot-gauss "$mono_gauss" \
    "$data/train_mfcc" "$data/lang" "$exp/mono"
  asr-distill align --nj "$nj" "$data/train_mfcc" "$data/lang" "$exp/mono" "$exp/mono_ali"
fi

if run_stage 6; then
  log "Stage 6: triphones: tri1 on deltas ($tri1_leaves leaves, $tri1_gauss Gaussians)," \
    "up to $gmm_targets"
  asr-distill train-tri --nj "$nj" --num-leaves "$tri1_leaves" --tot-gauss "$tri1_gauss" \
    --num-iters "$tri1_iters" "$data/train_mfcc" "$data/lang" "$exp/mono_ali" "$exp/tri1"
  prev=tri1
  for m in tri2b tri3b; do
    case " $gmms " in *" $m "*) ;; *) break ;; esac
    asr-distill align --nj "$nj" "$data/train_mfcc" "$data/lang" "$exp/$prev" \
      "$exp/${prev}_ali_train"
    if [ "$m" = tri2b ]; then
      log "Stage 6: tri2b on LDA+MLLT ($tri2b_leaves leaves, $tri2b_gauss Gaussians)"
      asr-distill train-lda-mllt --nj "$nj" --num-leaves "$tri2b_leaves" \
        --tot-gauss "$tri2b_gauss" --num-iters "$tri1_iters" "$data/train_mfcc" \
        "$data/lang" "$exp/tri1_ali_train" "$exp/tri2b"
    else
      log "Stage 6: tri3b, SAT with fMLLR ($tri3b_leaves leaves, $tri3b_gauss Gaussians)"
      asr-distill train-sat --nj "$nj" --num-leaves "$tri3b_leaves" \
        --tot-gauss "$tri3b_gauss" --num-iters "$tri1_iters" "$data/train_mfcc" \
        "$data/lang" "$exp/tri2b_ali_train" "$exp/tri3b"
    fi
    prev=$m
  done
fi
