#!/usr/bin/env bash
# train-dnn and distill end to end through the CLI on random frame stores, on whatever
# device the trainer picks (a GPU when there is one): the trainer's own epoch times,
# on-device splicing, NaN checks and dev evaluation, not a copy of its step.
#   bash bench/gpu_trainer_check.sh WORK_DIR [DNN_CONF] [TRAIN_FRAMES] [extra train-dnn options]
set -euo pipefail
work=$1; conf=${2:-recipes/synth/conf/dnn_paper.yaml}; frames=${3:-1000000}; shift 3 || true
mkdir -p "$work"
python3 - "$work" "$frames" <<'PY'
import sys
from pathlib import Path
import numpy as np
from asr_distill.features.framestore import build_frame_store
work, n = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
for name, frames in (("train", n), ("dev", max(n // 20, 2000))):
    feats = {f"{name}{i:06d}": rng.standard_normal((500, 40)).astype(np.float32)
             for i in range(frames // 500)}
    # Learnable targets: the pdf is a function of the frame's features.
    targets = {u: (np.abs(x[:, :4]).argmax(1) * 50 + (x[:, 4] > 0) * 7).astype(np.int32)
               for u, x in feats.items()}
    build_frame_store(work / name, feats, targets=targets, num_pdfs=14000)
PY
python3 -m asr_distill train-dnn --config "$conf" --epochs 2 --no-progress "$@" \
  "$work/train" "$work/dev" "$work/dnn"
cat "$work/dnn/train_curve.csv"
python3 -m asr_distill distill --config "$conf" --epochs 1 --no-progress "$@" \
  --teacher "$work/dnn/final" --teacher "$work/dnn/last" --temperature 2 \
  "$work/train" "$work/dev" "$work/student"
cat "$work/student/train_curve.csv"
